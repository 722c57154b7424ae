// Live job page: a websocket that sends a snapshot then live points; reconnects by itself and asks
// for what it may have missed (static/js/live_points.js keeps the points by (key, step) and the cursor),
// so neither a dropped connection nor batches arriving out of id order leave a gap.
// Long series arrive downsampled (min/max per bucket); zooming a chart fetches the visible range at
// higher resolution from GET /api/v1/jobs/<id>/metrics?key=&start=&end=.
(function () {
  "use strict";
  const C = window.T4DMCharts;
  const job = JSON.parse(document.getElementById("job-data").textContent);
  const CHARTS = {
    loss: { title: "Loss", keys: ["loss", "val_loss"] },
    // A schedule, not a noisy measurement: smoothing would only shift it.
    learning_rate: { title: "Learning rate", keys: ["learning_rate"], smooth: false },
    grad_norm: { title: "Gradient norm", keys: ["grad_norm"] },
    gpu_memory: {
      title: "GPU memory (MB)", keys: ["gpu_mem_allocated_mb", "gpu_mem_reserved_mb"], tickformat: ",.0f",
      empty: "No GPU memory reported: a CPU worker has none", hideWhenFinishedEmpty: true,
    },
    // "8.2k" rather than "0.8e+4"
    tokens_per_sec: { title: "Tokens / s", keys: ["tokens_per_sec"], tickformat: "~s" },
  };
  const NOT_CHARTED = new Set(["eta_seconds", "epoch"]);
  const ZOOM_POINTS = 2000;
  const live = new window.T4DMLivePoints(); // key -> step -> [value, t], and the reconnect cursor
  // A resumed job's parent's points up to the step it resumed from: key -> [[step, value, t]]
  const parentSeries = new Map();
  const detail = new Map(); // chart name -> {start, end, byKey: {key: [[step, value, t]]}}
  const downsampledKeys = new Set();
  const opts = { smoothing: 0, logScale: false, xAxis: "step" };
  let dirty = false;
  let retry = 500;
  let socket = null;
  let current = job;
  const FINISHED = ["succeeded", "failed", "cancelled"];
  const RESUMABLE = ["failed", "cancelled"];

  function chartFor(key) {
    for (const [name, chart] of Object.entries(CHARTS)) if (chart.keys.includes(key)) return name;
    if (NOT_CHARTED.has(key)) return null;
    // A metric no chart knows (an eval metric, say) gets its own chart.
    const name = "extra_" + key.replace(/[^A-Za-z0-9_]/g, "_");
    CHARTS[name] = { title: key, keys: [key] };
    const card = document.createElement("div");
    card.className = "card chart-card";
    const div = document.createElement("div");
    div.id = "chart-" + name;
    div.className = "chart";
    div.dataset.points = "0";
    div.setAttribute("role", "img");
    div.setAttribute("aria-label", key);
    card.append(div);
    document.getElementById("charts").append(card);
    return name;
  }

  function sortedPoints(key) {
    return live.sorted(key);
  }

  function withDetail(name, key, points) {
    const zoom = detail.get(name);
    if (!zoom || !zoom.byKey[key]) return points;
    const before = points.filter((p) => p[0] < zoom.start);
    const after = points.filter((p) => p[0] > zoom.end);
    return before.concat(zoom.byKey[key], after);
  }

  let firstDraw = false;
  function render(force) {
    if (!dirty && !force) return;
    dirty = false;
    const colors = ["#3b5bdb", "#e8590c", "#2f9e44", "#ae3ec9"];
    for (const [name, chart] of Object.entries(CHARTS)) {
      const div = document.getElementById("chart-" + name);
      if (!div) continue;
      const traces = [];
      let count = 0;
      const chartOpts = { ...opts, smoothing: chart.smooth === false ? 0 : opts.smoothing };
      chart.keys.forEach((key, i) => {
        const color = colors[i % colors.length];
        const before = parentSeries.get(key);
        if (before && before.length) {
          count += before.length;
          const label = key + " · " + job.parent.job_id;
          traces.push(...C.traces(key, before, { ...chartOpts, color, dash: "dot", label }));
        }
        const points = sortedPoints(key);
        if (!points) return;
        count += points.length;
        const shown = withDetail(name, key, points);
        traces.push(...C.traces(key, shown, { ...chartOpts, color }));
      });
      div.dataset.points = String(count);
      const layout = C.layout(chart.title, opts);
      if (chart.tickformat && !opts.logScale) layout.yaxis.tickformat = chart.tickformat;
      const card = div.closest(".chart-card");
      if (card) card.hidden = Boolean(chart.hideWhenFinishedEmpty && !traces.length && FINISHED.includes(current.status));
      if (!traces.length) {
        const text = chart.empty || "No " + chart.title.toLowerCase() + " reported yet";
        layout.annotations = [{ text, showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }];
        layout.xaxis.visible = false;
        layout.yaxis.visible = false;
      }
      const drawn = Plotly.react(div, traces, layout, C.CONFIG);
      if (!div.dataset.zoomBound) {
        div.dataset.zoomBound = "1";
        div.on("plotly_relayout", (ev) => { onZoom(name, ev); shareZoom(div, ev); });
        div.on("plotly_hover", (ev) => shareHover(div, ev));
        div.on("plotly_unhover", () => shareUnhover(div));
      }
      if (!firstDraw && name === "loss" && count > 0) {
        firstDraw = true;
        Promise.resolve(drawn).then(() => { window.t4dmFirstDraw = performance.now(); });
      }
    }
  }
  setInterval(render, 250);
  render(true); // empty panels say what they wait for, before any snapshot arrives

  // --- one x axis for every panel: a zoom or a hover on one chart applies to the others ------------
  let sharing = false;
  function otherCharts(div) {
    return [...document.querySelectorAll("#charts .chart")].filter(
      (d) => d !== div && d.layout && !d.closest(".chart-card").hidden && Number(d.dataset.points) > 0 && d.dataset.shared !== "no");
  }
  function shareZoom(div, ev) {
    if (sharing) return;
    let update = null;
    if (ev["xaxis.autorange"]) update = { "xaxis.autorange": true };
    else if (ev["xaxis.range"]) update = { "xaxis.range": ev["xaxis.range"].slice() };
    else if (ev["xaxis.range[0]"] !== undefined) update = { "xaxis.range": [ev["xaxis.range[0]"], ev["xaxis.range[1]"]] };
    if (!update) return;
    sharing = true;
    Promise.all(otherCharts(div).map((d) => Plotly.relayout(d, update))).finally(() => { sharing = false; });
  }
  // Only a person's hover is shared (the hovers it causes on the other panels are not passed on), and
  // after plotly has drawn the first panel's own hover box.
  function shareHover(div, ev) {
    if (!ev.points || !ev.points.length || !(ev.event instanceof MouseEvent)) return;
    const xval = ev.points[0].x;
    setTimeout(() => { for (const d of otherCharts(div)) Plotly.Fx.hover(d, { xval }, "xy"); }, 0);
  }
  function shareUnhover(div) {
    setTimeout(() => { for (const d of otherCharts(div)) Plotly.Fx.unhover(d); }, 0);
  }

  // --- a resumed job starts where its parent stopped: the parent's curve up to that step ----------
  async function loadParent() {
    if (!job.parent) return;
    const response = await fetch("/api/v1/jobs/" + job.parent.job_id + "/metrics", { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    for (const [key, points] of Object.entries(data.series || {})) {
      const kept = points.filter((p) => p[0] <= job.parent.step);
      if (!kept.length || NOT_CHARTED.has(key)) continue;
      parentSeries.set(key, kept);
      chartFor(key);
    }
    render(true);
  }
  loadParent();

  // --- the job's evaluations: their metrics as bars, one group per metric -------------------------
  function renderEvaluations() {
    const div = document.getElementById("chart-evaluations");
    if (!div) return;
    const evaluations = job.evaluations || [];
    div.closest(".chart-card").hidden = !evaluations.length;
    if (!evaluations.length) return;
    const traces = evaluations.map((e) => ({
      type: "bar", name: e.label, x: Object.keys(e.metrics), y: Object.values(e.metrics),
      hovertemplate: "<b>%{x}</b>: %{y:.4g}<extra>" + e.label + "</extra>",
    }));
    const layout = C.layout("Evaluation metrics", opts);
    layout.xaxis = { title: { text: "metric" }, type: "category" };
    layout.yaxis = { type: "linear" };
    layout.hovermode = "closest";
    layout.barmode = "group";
    Plotly.react(div, traces, layout, C.CONFIG);
  }
  renderEvaluations();

  // --- zoom: fetch the visible range at higher resolution ------------------------------------------
  function toStep(x, key) {
    if (opts.xAxis === "step") return Number(x);
    const ms = new Date(x).getTime() / 1000;
    const points = sortedPoints(key) || [];
    let best = points.length ? points[0][0] : 0;
    for (const p of points) { if (p[2] <= ms) best = p[0]; else break; }
    return best;
  }

  async function onZoom(name, ev) {
    const zoomState = document.getElementById("zoom-state");
    if (ev["xaxis.autorange"]) {
      if (detail.delete(name)) render(true);
      zoomState.textContent = "";
      return;
    }
    const range = ev["xaxis.range"] || [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
    if (range[0] === undefined) return;
    const keys = CHARTS[name].keys.filter((k) => downsampledKeys.has(k));
    if (!keys.length) return;
    const start = Math.floor(toStep(range[0], keys[0]));
    const end = Math.ceil(toStep(range[1], keys[0]));
    zoomState.textContent = "loading steps " + start + "–" + end + "…";
    const byKey = {};
    for (const key of keys) {
      const url = "/api/v1/jobs/" + job.job_id + "/metrics?key=" + encodeURIComponent(key) +
        "&start=" + Math.max(0, start) + "&end=" + end + "&max_points=" + ZOOM_POINTS;
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) { zoomState.textContent = "zoom fetch failed (" + response.status + ")"; return; }
      const data = await response.json();
      byKey[key] = data.series[key] || [];
    }
    detail.set(name, { start, end, byKey });
    const shown = Object.values(byKey).reduce((n, p) => n + p.length, 0);
    zoomState.textContent = "zoomed: " + shown + " points for steps " + start + "–" + end;
    render(true);
  }

  // --- status, progress, ETA, log -------------------------------------------------------------------
  function formatDuration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }

  function eta(j) {
    if (FINISHED.includes(j.status)) return "";
    const etaSeries = sortedPoints("eta_seconds");
    if (etaSeries && etaSeries.length) return "ETA " + formatDuration(etaSeries[etaSeries.length - 1][1]);
    const { step, total_steps: total } = j.progress;
    if (j.status !== "running" || !j.started_at || !step || !total || step >= total) return "";
    const elapsed = (Date.now() - new Date(j.started_at).getTime()) / 1000;
    return "ETA " + formatDuration((elapsed / step) * (total - step));
  }

  // When the job finishes while the page is open, the server-rendered parts that depend on the end
  // (duration, final metrics, the model version behind Promote/Chat) are fetched again from the page
  // itself and swapped in; the model version may be registered just after the status, so a succeeded
  // job without one is asked again a few times.
  async function refreshFinished(status, attempt) {
    let doc;
    try {
      const response = await fetch(location.pathname, { credentials: "same-origin" });
      if (!response.ok) return;
      doc = new DOMParser().parseFromString(await response.text(), "text/html");
    } catch (e) { return; }
    for (const id of ["job-overview", "checkpoints-box", "no-checkpoints"]) {
      const fresh = doc.getElementById(id);
      const old = document.getElementById(id);
      if (fresh && old) old.replaceWith(document.importNode(fresh, true));
    }
    const hasVersion = doc.querySelector("#job-overview a[href^='/models/']");
    if (status === "succeeded" && !hasVersion && attempt < 5) {
      setTimeout(() => refreshFinished(status, attempt + 1), 1000 * (attempt + 1));
    }
  }

  function setStatus(j) {
    if (current && !FINISHED.includes(current.status) && FINISHED.includes(j.status)) refreshFinished(j.status, 0);
    current = j;
    const badge = document.getElementById("job-status");
    badge.textContent = j.status;
    badge.className = "badge " + j.status;
    const bar = document.getElementById("job-progress");
    bar.max = j.progress.total_steps || 1;
    bar.value = j.progress.step;
    document.getElementById("job-progress-text").textContent =
      "step " + j.progress.step + " / " + (j.progress.total_steps || "?") + " · epoch " + Number(j.progress.epoch).toFixed(2);
    document.getElementById("job-eta").textContent = eta(j);
    const err = document.getElementById("job-error");
    err.hidden = !j.error;
    err.textContent = j.error || "";
    document.getElementById("cancel-job").disabled = FINISHED.includes(j.status);
    // Resume continues a stopped run from its newest checkpoint: a succeeded job has nothing to resume.
    const resume = document.getElementById("resume-job");
    const checkpoints = document.querySelectorAll("#checkpoints tbody tr").length > 0;
    resume.disabled = !(RESUMABLE.includes(j.status) && checkpoints);
    resume.title = resume.disabled
      ? (j.status === "succeeded" ? "The job finished: nothing to resume" : "Resume needs a failed or cancelled job with a checkpoint")
      : "Start a new job from this job's latest checkpoint";
    showConnection();
  }

  // "live" only while the job can still change; a finished job's page says so instead.
  function showConnection() {
    const state = document.getElementById("ws-state");
    if (current && FINISHED.includes(current.status)) {
      state.textContent = "finished";
      state.classList.remove("live");
    } else if (socket && socket.readyState === WebSocket.OPEN) {
      state.textContent = "live";
      state.classList.add("live");
    }
  }
  setInterval(() => { document.getElementById("job-eta").textContent = eta(current); }, 1000);

  function addLog(event) {
    const li = document.createElement("li");
    li.className = event.level;
    const time = document.createElement("time");
    time.textContent = new Date(event.t).toTimeString().slice(0, 8);
    li.append(time, " " + event.message);
    const log = document.getElementById("job-log");
    log.append(li);
    while (log.children.length > 500) log.firstElementChild.remove();
    log.scrollTop = log.scrollHeight;
  }

  // A checkpoint saved while the page is open gets its row (or refreshes it, if the worker re-sent it).
  function addCheckpoint(c) {
    const body = document.querySelector("#checkpoints tbody");
    let row = body.querySelector('tr[data-step="' + c.step + '"]');
    const number = (v) => (typeof v === "number" ? v.toFixed(4) : "—");
    if (!row) {
      row = document.createElement("tr");
      row.dataset.step = String(c.step);
      for (let i = 0; i < 5; i++) row.appendChild(document.createElement("td"));
      row.cells[4].className = "row";
      const evaluate = document.createElement("button");
      evaluate.className = "ckpt-evaluate";
      evaluate.dataset.modelPath = c.model_path;
      evaluate.title = "evaluate this checkpoint on the test split, against the base";
      evaluate.textContent = "Evaluate";
      row.cells[4].appendChild(evaluate);
      for (const label of ["Promote", "Chat"]) {
        const button = document.createElement("button");
        button.disabled = true;
        button.title = "the job becomes a model version when it succeeds";
        button.textContent = label;
        row.cells[4].appendChild(button);
      }
      const later = [...body.rows].find((r) => Number(r.dataset.step) > c.step);
      body.insertBefore(row, later || null);
    }
    row.cells[0].textContent = String(c.step);
    row.cells[1].textContent = number(c.loss);
    row.cells[2].textContent = number(c.val_loss);
    document.getElementById("checkpoints-box").hidden = false;
    document.getElementById("no-checkpoints").hidden = true;
  }

  function connect() {
    socket = new WebSocket(window.t4dm.wsURL("/ws/jobs/" + job.job_id + "/?" + live.query()));
    const state = document.getElementById("ws-state");
    socket.onopen = () => { retry = 500; showConnection(); };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") {
        if (data.downsampled) for (const key of Object.keys(data.series)) downsampledKeys.add(key);
        live.snapshot(data, chartFor);
        dirty = true;
        setStatus(data.job);
        render(true); // draw now rather than at the next tick: this is the page's first paint of data
      } else if (data.type === "points") {
        live.points(data, chartFor); // in whatever order the batches come
        dirty = true;
        window.t4dmLastReceipt = Date.now();
      } else if (data.type === "status") {
        setStatus(data.job);
      } else if (data.type === "log") {
        addLog(data.event);
      } else if (data.type === "checkpoint") {
        addCheckpoint(data.checkpoint);
      }
    };
    socket.onclose = () => {
      if (!(current && FINISHED.includes(current.status))) state.textContent = "reconnecting…";
      state.classList.remove("live");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  }
  connect();
  window.t4dmJobSocket = () => socket; // lets a browser test drop the connection on purpose

  // --- controls -------------------------------------------------------------------------------------
  const smoothing = document.getElementById("smoothing");
  smoothing.addEventListener("input", () => {
    opts.smoothing = Number(smoothing.value);
    document.getElementById("smoothing-value").textContent = opts.smoothing.toFixed(2);
    render(true);
  });
  document.getElementById("log-scale").addEventListener("change", (e) => { opts.logScale = e.target.checked; render(true); });
  document.getElementById("x-axis").addEventListener("change", (e) => { opts.xAxis = e.target.value; detail.clear(); render(true); });

  const csrf = window.t4dm.csrf;
  async function showError(response) {
    let message = "request failed (" + response.status + ")";
    try { message = (await response.json()).error.message; } catch (e) { /* keep the generic text */ }
    const box = document.getElementById("job-action-error");
    box.textContent = message;
    box.hidden = false;
  }

  document.getElementById("cancel-job").addEventListener("click", async () => {
    const response = await fetch("/api/v1/jobs/" + job.job_id + "/cancel", {
      method: "POST", headers: { "X-CSRFToken": csrf() }, credentials: "same-origin",
    });
    if (response.ok) setStatus(await response.json()); else showError(response);
  });

  document.getElementById("resume-job").addEventListener("click", async () => {
    const response = await fetch("/api/v1/jobs", {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(), "Content-Type": "application/json" },
      body: JSON.stringify({ config_id: job.config_id, resume_from: job.job_id }),
    });
    if (response.ok) location.href = "/jobs/" + (await response.json()).job_id + "/";
    else showError(response);
  });

  // Checkpoint actions: evaluate one checkpoint, then open its evaluation page (rows added live too).
  document.getElementById("checkpoints").addEventListener("click", async (event) => {
    const button = event.target.closest(".ckpt-evaluate");
    if (!button) return;
    button.disabled = true;
    const response = await fetch("/api/v1/evaluations", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify({ model_path: button.dataset.modelPath }),
    });
    const body = await response.json();
    if (response.ok) {
      location.href = "/evaluations/" + body.evaluation_id + "/";
    } else {
      button.disabled = false;
      button.title = (body.error && body.error.message) || "evaluation could not start";
      alert(button.title);
    }
  });
})();
