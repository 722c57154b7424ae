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

// New versions from this one: Clean (answers at once) and Augment (a task on the datasets worker,
// followed live over its websocket until it has made its version). Both open the new version when it exists.
(function () {
  const box = document.getElementById("dataset-actions");
  if (!box) return;
  const dataset = box.dataset.dataset;
  const version = Number(box.dataset.version);
  const progress = document.getElementById("action-progress");
  const message = document.getElementById("action-message");
  const error = document.getElementById("action-error");
  const buttons = box.querySelectorAll("button");
  const csrf = window.t4dm.csrf;
  const busy = (on) => buttons.forEach((b) => { b.disabled = on; });
  const fail = (text) => { error.textContent = text; error.hidden = false; progress.hidden = true; busy(false); };
  const open = (number) => { location.href = location.pathname + "?version=" + number; };
  async function post(path, body) {
    const response = await fetch("/api/v1/datasets/" + dataset + path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body),
    });
    let data = {};
    try { data = await response.json(); } catch (e) { /* an empty or non-JSON answer */ }
    if (!response.ok) {
      const failure = new Error((data.error && data.error.message) || "request failed (" + response.status + ")");
      failure.code = data.error && data.error.code;
      throw failure;
    }
    return data;
  }

  document.getElementById("clean-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    error.hidden = true; busy(true); message.textContent = "cleaning v" + version + "…";
    try {
      const result = await post("/clean", {
        version: version,
        remove_duplicates: form.remove_duplicates.checked,
        near_duplicates: form.near_duplicates.checked,
        fix_formatting: form.fix_formatting.checked,
      });
      open(result.version);
    } catch (e) {
      if (e.code === "nothing_to_clean") {  // not a failure: the data is already clean (a notice, not red)
        busy(false); progress.hidden = true; message.textContent = e.message;
        return;
      }
      fail(e.message); message.textContent = "";
    }
  });

  document.getElementById("augment-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const methods = [...form.querySelectorAll("input[name=methods]:checked")].map((i) => i.value);
    error.hidden = true; busy(true);
    let task;
    try {
      task = await post("/augment", { version: version, methods: methods, options: { copies_per_row: Number(form.copies_per_row.value) } });
    } catch (e) { fail(e.message); return; }
    progress.hidden = false;
    // Shows the task; true once it has ended.
    const show = (current) => {
      task = current;
      progress.value = task.progress;
      message.textContent = task.task_id + ": " + task.status + (task.message ? " · " + task.message : "");
      if (task.status === "succeeded" && task.result_version) { open(task.result_version); return true; }
      if (task.status === "failed") { fail(task.error || "augmentation failed"); return true; }
      return false;
    };
    // Live over /ws/dataset-tasks/<id>/ (static/js/dataset_task_live.js): no polling; a dropped
    // socket reconnects with ?after=<last id>, with one fetch of the task before it.
    window.t4dmDatasetTask.follow(task.task_id, show, fail);
  });
})();
