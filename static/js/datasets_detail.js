// Dataset page charts: token-length histograms (input/output) and the label distribution.
(function () {
  const charts = JSON.parse(document.getElementById("dataset-charts").textContent);
  const layout = (title, x) => ({
    title: { text: title }, margin: { t: 40, r: 10, b: 40, l: 50 }, height: 300,
    xaxis: { title: { text: x } }, yaxis: { title: { text: "rows" } }, barmode: "overlay",
  });
  const config = { displayModeBar: false, responsive: true };
  const trace = (h, name) => {
    const mids = h.counts.map((_, i) => (h.edges[i] + h.edges[i + 1]) / 2);
    return { type: "bar", x: mids, y: h.counts, name: name, opacity: 0.6 };
  };
  const tokens = charts.tokens || {};
  const traces = [];
  if (tokens.input && tokens.input.counts.length) traces.push(trace(tokens.input, "input"));
  if (tokens.output && tokens.output.counts.length) traces.push(trace(tokens.output, "output"));
  const tokenDiv = document.getElementById("chart-tokens");
  if (tokenDiv && window.Plotly) {
    Plotly.newPlot(tokenDiv, traces, layout("Token lengths", "tokens"), config);
    tokenDiv.dataset.ready = "1";
  }
  const labelDiv = document.getElementById("chart-labels");
  if (labelDiv && window.Plotly) {
    const labels = Object.keys(charts.labels);
    Plotly.newPlot(labelDiv, [{ type: "bar", x: labels, y: labels.map((k) => charts.labels[k]) }],
      layout("Labels", "label"), config);
  }
})();
