// Evaluation page: live progress while queued/running, the confusion matrix or score histogram
// (plotly), the per-example browser (worst first, filters) and comparison tables.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("eval-data").textContent);
  const api = "/api/v1/evaluations/" + data.evaluation_id;
  const LOWER = new Set(data.lower_is_better);
  const PAGE = 25;
  let offset = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
    return node;
  }
  const fmt = (v) => (typeof v === "number" ? (Math.abs(v) >= 100 ? v.toFixed(1) : v.toFixed(4)) : "—");

  // --- progress while the worker runs it -------------------------------------------------------
  // Live over /ws/evaluations/<id>/ (the evaluation's outbox, read by id: experiments/evaluation/
  // consumers.py); a dropped socket reconnects with ?after=<last id> and gets exactly what it missed.
  // HTTP polling only when the socket cannot open at all.
  const FINISHED = new Set(["succeeded", "failed"]);
  function show(body) {
    const bar = document.getElementById("eval-progress");
    if (bar) bar.value = body.progress;
    const text = document.getElementById("eval-progress-text");
    if (text) text.textContent = body.progress_message || body.status;
    const badge = document.getElementById("eval-status");
    if (badge) { badge.textContent = body.status; badge.className = "badge " + body.status; }
    if (FINISHED.has(body.status)) { window.location.reload(); return true; }
    return false;
  }
  async function poll() {
    try {
      const r = await fetch(api, { credentials: "same-origin" });
      if (!r.ok || show(await r.json())) return;  // gone or not ours any more: stop
    } catch (err) { /* the server is restarting: try again */ }
    setTimeout(poll, 1000);
  }
  let lastId = null;
  let retries = 0;
  function connect() {
    const after = lastId === null ? "" : "?after=" + lastId;
    let socket;
    try {
      socket = new WebSocket(window.t4dm.wsURL("/ws/evaluations/" + data.evaluation_id + "/" + after));
    } catch (err) { poll(); return; }
    let opened = false;
    let done = false;
    socket.onopen = () => { opened = true; retries = 0; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "evaluation") return;
      lastId = message.id;
      if (show(message.evaluation)) { done = true; socket.close(); }
    };
    socket.onclose = () => {
      if (done) return;
      if (!opened || retries >= 5) { poll(); return; }  // no socket here (or it keeps failing): poll
      retries += 1;
      setTimeout(connect, 1000 * retries);
    };
  }
  if (data.status === "queued" || data.status === "running") connect();

  // --- plots ----------------------------------------------------------------------------------
  function chart() {
    const div = document.getElementById("eval-chart");
    if (!div || !window.Plotly) return;
    const layout = { margin: { l: 90, r: 20, t: 40, b: 70 }, height: 400 };
    const cm = data.details && data.details.confusion_matrix;
    if (cm) {
      Plotly.newPlot(div, [{
        type: "heatmap", z: cm.matrix, x: cm.labels, y: cm.labels, showscale: true,
        colorscale: [[0, "#f8f9fa"], [1, "#3b5bdb"]],
        text: cm.matrix.map((row) => row.map(String)), texttemplate: "%{text}", hovertemplate: "true %{y} → predicted %{x}: %{z}<extra></extra>",
      }], { ...layout, title: { text: "Confusion matrix (rows: reference, columns: predicted)" },
            xaxis: { title: { text: "predicted" } }, yaxis: { title: { text: "reference" }, autorange: "reversed" } },
      { displaylogo: false, responsive: true });
      return;
    }
    const h = data.histogram;
    if (!h || !h.key) { document.getElementById("eval-chart-card").hidden = true; return; }
    const log = LOWER.has(h.key);
    const values = (xs) => (log ? xs.map((v) => Math.log10(v)) : xs);
    Plotly.newPlot(div, [
      { type: "histogram", x: values(h.model), name: "model", opacity: 0.7, marker: { color: "#3b5bdb" } },
      { type: "histogram", x: values(h.base), name: "base", opacity: 0.5, marker: { color: "#adb5bd" } },
    ], { ...layout, barmode: "overlay", title: { text: "Per-example " + h.key + (log ? " (log10)" : "") },
         xaxis: { title: { text: (log ? "log10 " : "") + h.key } }, yaxis: { title: { text: "examples" } } },
    { displaylogo: false, responsive: true });
  }

  // --- per-example browser --------------------------------------------------------------------
  function scoreCell(example) {
    const cell = el("td", { class: "small scores" });
    for (const [key, value] of Object.entries(example.scores || {})) {
      const base = (example.base_scores || {})[key];
      let cls = "";
      if (typeof base === "number" && base !== value) {
        cls = (LOWER.has(key) ? value < base : value > base) ? "better" : "worse";
      }
      cell.append(el("span", { class: "score" }, key + ": ", el("span", { class: cls }, fmt(value)),
        typeof base === "number" ? " / " + fmt(base) : ""));
    }
    if (typeof example.confidence === "number") cell.append(el("span", { class: "score muted" }, "confidence " + fmt(example.confidence)));
    return cell;
  }

  async function loadExamples(append) {
    const table = document.querySelector("#examples tbody");
    if (!table) return;
    if (!append) offset = 0;
    const params = new URLSearchParams({
      order: document.getElementById("ex-order").value,
      only: document.getElementById("ex-only").value,
      q: document.getElementById("ex-q").value,
      offset: String(offset), limit: String(PAGE),
    });
    const sort = document.getElementById("ex-sort").value;
    if (sort) params.set("sort", sort);
    const r = await fetch(api + "/examples?" + params, { credentials: "same-origin" });
    const body = await r.json();
    if (!r.ok) { document.getElementById("ex-count").textContent = body.error ? body.error.message : "error"; return; }
    if (!append) table.replaceChildren();
    for (const e of body.examples) {
      const correct = e.scores && "correct" in e.scores ? (e.scores.correct ? "right" : "wrong") : "";
      table.append(el("tr", { class: correct, "data-index": String(e.index) },
        el("td", {}, String(e.index + 1)),
        el("td", { class: "pre" }, e.prompt || ""),
        el("td", { class: "pre" }, e.reference || ""),
        el("td", { class: "pre" }, e.generated ?? "—"),
        el("td", { class: "pre muted" }, e.base_generated ?? "—"),
        scoreCell(e)));
    }
    offset += body.examples.length;
    document.getElementById("ex-count").textContent =
      `${Math.min(offset, body.total)} of ${body.total} examples · ${body.order === "worst" ? "worst first" : body.order} by ${body.sort || "index"}`;
    document.getElementById("ex-more").hidden = offset >= body.total;
  }

  function browser() {
    if (!document.getElementById("examples")) return;
    for (const id of ["ex-sort", "ex-order", "ex-only"]) document.getElementById(id).addEventListener("change", () => loadExamples(false));
    let timer = null;
    document.getElementById("ex-q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => loadExamples(false), 250); });
    document.getElementById("ex-more").addEventListener("click", () => loadExamples(true));
    loadExamples(false);
  }

  // --- comparisons ----------------------------------------------------------------------------
  function comparison() {
    const target = document.getElementById("comparison-body");
    const c = data.comparison;
    if (!target || !c) return;
    if (data.kind === "compare_versions") {
      const rows = Object.entries(c.metrics).map(([key, m]) => el("tr", {},
        el("td", {}, key), el("td", {}, fmt(m.a)), el("td", {}, fmt(m.b)),
        el("td", {}, el("span", { class: "eval-delta " + (m.better === "b" ? "better" : m.better === "a" ? "worse" : "") }, m.delta)),
        el("td", {}, m.ci_low !== undefined ? `[${fmt(m.ci_low)}, ${fmt(m.ci_high)}]` : "—")));
      target.append(el("p", { class: "muted" }, `A = ${c.version_a}, B = ${c.version_b}; ${c.num_examples} examples; paired bootstrap.`),
        el("table", { class: "table", id: "versions-table" },
          el("thead", {}, el("tr", {}, el("th", {}, "Metric"), el("th", {}, "A"), el("th", {}, "B"), el("th", {}, "Δ (B − A)"), el("th", {}, "95% CI"))),
          el("tbody", {}, ...rows)));
      const wins = Object.entries(c.per_example).map(([key, w]) => el("tr", {},
        el("td", {}, key), el("td", {}, String(w.wins)), el("td", {}, String(w.losses)), el("td", {}, String(w.ties))));
      target.append(el("h3", {}, "Per example (B against A)"), el("table", { class: "table", id: "wins-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Score"), el("th", {}, "B wins"), el("th", {}, "B loses"), el("th", {}, "Ties"))),
        el("tbody", {}, ...wins)));
      return;
    }
    const keys = Object.keys(Object.values(c.aggregates)[0] || {});
    target.append(el("table", { class: "table", id: "models-table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Model"), ...keys.map((k) => el("th", {}, k)))),
      el("tbody", {}, ...Object.entries(c.aggregates).map(([model, m], i) => el("tr", {},
        el("td", { class: "mono" }, c.models[i] || model), ...keys.map((k) => el("td", {}, fmt(m[k]))))))));
    target.append(el("h3", {}, "Cases"), el("table", { class: "table" },
      el("thead", {}, el("tr", {}, el("th", {}, "Prompt"), el("th", {}, "Reference"), ...c.models.map((m) => el("th", { class: "mono" }, m)))),
      el("tbody", {}, ...c.cases.map((row) => el("tr", {},
        el("td", { class: "pre" }, row.prompt), el("td", { class: "pre" }, row.reference),
        ...row.outputs.map((o) => el("td", { class: "pre" }, o.generated ?? "—"))))),
    ));
  }

  chart();
  browser();
  comparison();
})();
