// Live job page: a websocket that sends a snapshot then live points; reconnects by itself and asks
// for everything after the last point id it has, so a dropped connection leaves no gap.
(function () {
  "use strict";
  const job = JSON.parse(document.getElementById("job-data").textContent);
  const CHARTS = {
    loss: { title: "Loss", keys: ["loss", "val_loss"] },
    learning_rate: { title: "Learning rate", keys: ["learning_rate"] },
    grad_norm: { title: "Gradient norm", keys: ["grad_norm"] },
    tokens_per_sec: { title: "Tokens / s", keys: ["tokens_per_sec"] },
  };
  const series = new Map(); // key -> Map(step -> value)
  let lastId = 0;
  let dirty = false;
  let retry = 500;
  let socket = null;
  let finished = ["succeeded", "failed", "cancelled"].includes(job.status);

  function addPoint(key, step, value) {
    if (!series.has(key)) series.set(key, new Map());
    series.get(key).set(step, value);
    dirty = true;
  }

  function render() {
    if (!dirty) return;
    dirty = false;
    for (const [name, chart] of Object.entries(CHARTS)) {
      const div = document.getElementById("chart-" + name);
      if (!div) continue;
      const traces = [];
      let count = 0;
      for (const key of chart.keys) {
        const points = series.get(key);
        if (!points) continue;
        const steps = [...points.keys()].sort((a, b) => a - b);
        count += steps.length;
        traces.push({ x: steps, y: steps.map((s) => points.get(s)), name: key, mode: "lines", type: "scatter" });
      }
      div.dataset.points = String(count);
      Plotly.react(div, traces, {
        title: { text: chart.title }, margin: { t: 40, r: 10, b: 40, l: 60 },
        xaxis: { title: { text: "step" } }, showlegend: chart.keys.length > 1, uirevision: name,
      }, { responsive: true, displaylogo: false });
    }
  }
  setInterval(render, 250);

  function setStatus(j) {
    const badge = document.getElementById("job-status");
    badge.textContent = j.status;
    badge.className = "badge " + j.status;
    const bar = document.getElementById("job-progress");
    bar.max = j.progress.total_steps || 1;
    bar.value = j.progress.step;
    document.getElementById("job-progress-text").textContent =
      "step " + j.progress.step + " / " + (j.progress.total_steps || "?") + " · epoch " + Number(j.progress.epoch).toFixed(2);
    const err = document.getElementById("job-error");
    err.hidden = !j.error;
    err.textContent = j.error || "";
    finished = ["succeeded", "failed", "cancelled"].includes(j.status);
    document.getElementById("cancel-job").disabled = finished;
  }

  function addLog(event) {
    const li = document.createElement("li");
    li.className = event.level;
    const time = document.createElement("time");
    time.textContent = new Date(event.t).toTimeString().slice(0, 8);
    li.append(time, " " + event.message);
    const log = document.getElementById("job-log");
    log.append(li);
    log.scrollTop = log.scrollHeight;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws/jobs/" + job.job_id + "/?after=" + lastId);
    const state = document.getElementById("ws-state");
    socket.onopen = () => { state.textContent = "live"; retry = 500; };
    socket.onmessage = (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") {
        for (const [key, points] of Object.entries(data.series)) for (const [step, value] of points) addPoint(key, step, value);
        lastId = Math.max(lastId, data.last_id);
        setStatus(data.job);
      } else if (data.type === "points") {
        for (const p of data.points) addPoint(p.key, p.step, p.value);
        lastId = Math.max(lastId, data.last_id);
      } else if (data.type === "status") {
        setStatus(data.job);
      } else if (data.type === "log") {
        addLog(data.event);
      }
    };
    socket.onclose = () => {
      state.textContent = "reconnecting…";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  }
  connect();
  window.t4dmJobSocket = () => socket; // lets a browser test drop the connection on purpose

  document.getElementById("cancel-job").addEventListener("click", async () => {
    const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
    const response = await fetch("/api/v1/jobs/" + job.job_id + "/cancel", {
      method: "POST", headers: { "X-CSRFToken": csrf ? csrf.split("=")[1] : "" }, credentials: "same-origin",
    });
    if (response.ok) setStatus(await response.json());
  });
})();
