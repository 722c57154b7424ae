// Chart helpers shared by the job page and the compare page: EMA smoothing, traces, layout.
(function () {
  "use strict";

  // TensorBoard-style EMA with debiasing, so the first points are not pulled towards zero.
  function ema(values, weight) {
    if (!weight) return values;
    const out = new Array(values.length);
    let last = 0;
    let n = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (!Number.isFinite(v)) { out[i] = v; continue; }
      last = last * weight + (1 - weight) * v;
      n += 1;
      out[i] = last / (1 - Math.pow(weight, n));
    }
    return out;
  }

  // points: [[step, value, t], ...] sorted by step. Returns plotly traces (raw faded + smoothed).
  function traces(name, points, opts) {
    const byTime = opts.xAxis === "time";
    const x = points.map((p) => (byTime ? new Date(p[2] * 1000) : p[0]));
    const y = points.map((p) => p[1]);
    const steps = points.map((p) => p[0]);
    const label = opts.label || name;
    const hover = (what) => "<b>" + what + "</b>: %{y:.8g}<br>step %{customdata}<extra></extra>";
    // A sparse series (validation every N steps) gets markers, or a single point would not show.
    const mode = points.length < 30 ? "lines+markers" : "lines";
    const base = { x, y, customdata: steps, type: "scatter", mode, name: label, hovertemplate: hover(label) };
    if (opts.color) base.line = { color: opts.color };
    if (opts.dash) base.line = { ...(base.line || {}), dash: opts.dash };
    if (!opts.smoothing) return [base];
    // Smoothed and raw both answer a hover (the unified hover box lists the two values).
    const smoothed = {
      ...base, y: ema(y, opts.smoothing), name: label + " (smoothed)", legendgroup: label,
      hovertemplate: hover(label + " (smoothed)"),
    };
    const raw = { ...base, y, opacity: 0.25, showlegend: false, legendgroup: label, hovertemplate: hover(label + " (raw)") };
    return [raw, smoothed];
  }

  function layout(title, opts) {
    return {
      // At the left, clear of the mode bar at the top right (it covered centred titles).
      title: { text: title, x: 0, xref: "paper", xanchor: "left", y: 0.98, yref: "container", yanchor: "top" },
      margin: { t: 40, r: 10, b: 70, l: 60 },
      xaxis: { title: { text: opts.xAxis === "time" ? "wall time" : "step" }, type: opts.xAxis === "time" ? "date" : "linear" },
      yaxis: { type: opts.logScale ? "log" : "linear", exponentformat: "e" },
      hovermode: "x unified",
      showlegend: true,
      // Under the plot, never over the curves (nor under the mode bar at the top right).
      legend: { orientation: "h", x: 0, xanchor: "left", y: -0.22, yanchor: "top" },
      uirevision: title + opts.xAxis + opts.logScale,
    };
  }

  // The selection tools do nothing on these charts: without them the mode bar is half as wide.
  const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d"] };
  window.T4DMCharts = { ema, traces, layout, CONFIG };
})();
