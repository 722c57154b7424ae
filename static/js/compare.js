// Compare page: overlaid curves of 2–10 runs (one chart per metric, one trace per run).
(function () {
  "use strict";
  const C = window.T4DMCharts;
  const { runs } = JSON.parse(document.getElementById("compare-data").textContent);
  const KEYS = [["loss", "Training loss"], ["val_loss", "Validation loss"], ["learning_rate", "Learning rate"], ["grad_norm", "Gradient norm"]];
  const COLORS = ["#3b5bdb", "#e8590c", "#2f9e44", "#ae3ec9", "#1098ad", "#f59f00", "#e64980", "#495057", "#74b816", "#7048e8"];
  const data = {}; // key -> {run: points}
  const opts = { smoothing: 0, logScale: false, xAxis: "step" };

  async function load() {
    for (const [key] of KEYS) {
      data[key] = {};
      await Promise.all(runs.map(async (run) => {
        const r = await fetch("/api/v1/jobs/" + run + "/metrics?key=" + key + "&max_points=2000", { credentials: "same-origin" });
        if (r.ok) data[key][run] = (await r.json()).series[key] || [];
      }));
    }
    render();
  }

  function render() {
    const container = document.getElementById("compare-charts");
    const shown = KEYS.filter(([key]) => Object.values(data[key] || {}).some((p) => p.length));
    // Every card first, then the charts: a chart drawn before its neighbour exists would take the
    // full row's width and overflow once the grid puts two cards side by side.
    for (const [key, title] of shown) {
      if (!document.getElementById("compare-chart-" + key)) {
        const card = document.createElement("div");
        card.className = "card chart-card";
        const div = document.createElement("div");
        div.id = "compare-chart-" + key;
        div.className = "chart";
        div.setAttribute("role", "img");
        div.setAttribute("aria-label", title + " of the compared runs");
        card.append(div);
        container.append(card);
      }
    }
    for (const [key, title] of shown) {
      const byRun = data[key];
      const div = document.getElementById("compare-chart-" + key);
      const traces = [];
      runs.forEach((run, i) => {
        const points = byRun[run];
        if (points && points.length) traces.push(...C.traces(run, points, { ...opts, color: COLORS[i % COLORS.length] }));
      });
      div.dataset.traces = String(runs.filter((r) => (byRun[r] || []).length).length);
      Plotly.react(div, traces, C.layout(title, opts), C.CONFIG);
    }
  }

  const smoothing = document.getElementById("smoothing");
  smoothing.addEventListener("input", () => {
    opts.smoothing = Number(smoothing.value);
    document.getElementById("smoothing-value").textContent = opts.smoothing.toFixed(2);
    render();
  });
  document.getElementById("log-scale").addEventListener("change", (e) => { opts.logScale = e.target.checked; render(); });
  document.getElementById("only-diff").addEventListener("change", (e) => {
    document.querySelectorAll("#compare-params tr.same").forEach((tr) => { tr.hidden = e.target.checked; });
  });
  load();
})();
