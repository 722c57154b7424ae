// The workflow page: renders each step's output and the seed-shaped result, live from the websocket
// /ws/workflows/<id>/ (the server sends the workflow whenever a step changes); if the socket cannot be
// opened or drops, it polls GET /api/v1/workflows/<id> every second instead.
(function () {
  "use strict";
  const initial = JSON.parse(document.getElementById("workflow-data").textContent);
  const id = initial.workflow_id;
  const POLL_MS = 1000;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === "") continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  const link = (href, text) => el("a", { href }, text);
  const num = (v, digits = 4) => (typeof v === "number" ? Number(v.toPrecision(digits)).toString() : v ?? "—");
  const line = (...parts) => el("div", {}, ...parts);

  function metricsLine(metrics, vsBase) {
    return Object.entries(metrics || {}).map(([k, v]) => {
      const delta = (vsBase || {})[`${k}_delta`];
      return line(`${k}: ${num(v)}`, delta ? ` (${delta} vs base)` : "");
    });
  }

  // "blocked": the deployment gate refused the promotion; a person acts (sign-off, evaluation), then retries.
  const label = (status) => (status === "blocked" ? "blocked by gate" : status);
  const ended = (status) => (status === "blocked" ? "waiting: blocked by gate" : `finished: ${status}`);

  function stepBody(step) {
    const o = step.output || {};
    const parts = [];
    if (step.status === "skipped") parts.push(line(o.reason || "skipped"));
    switch (step.name) {
      case "prepare":
        if (o.dataset_id) {
          parts.push(line(link(o.url, `${o.dataset_id} v${o.version}`)));
          parts.push(line(`${o.samples} samples`));
          if (o.split) parts.push(line(`split ${o.split.train}/${o.split.validation}/${o.split.test}`));
        }
        break;
      case "validate":
        if (o.status) parts.push(line(`validation: ${o.status}`));
        if (o.issues && Object.keys(o.issues).length)
          parts.push(line(Object.entries(o.issues).map(([k, v]) => `${v} ${k}`).join(", ")));
        break;
      case "configure":
        if (o.config_id) {
          parts.push(line(o.config_id, ` · ${o.model_base} · ${o.approach}`));
          if (o.estimate && o.estimate.training_time) parts.push(line(`est. ${o.estimate.training_time}`));
        }
        break;
      case "train":
        if (o.job_id) parts.push(line(link(o.url, o.job_id), o.config_id ? ` (config ${o.config_id})` : ""));
        if (o.final_loss !== undefined) parts.push(line(`final loss ${num(o.final_loss)}`));
        if (o.best_checkpoint) parts.push(line(`best checkpoint: step ${o.best_checkpoint.step}`));
        break;
      case "evaluate":
        if (o.evaluation_id) parts.push(line(link(o.url, o.evaluation_id)));
        if (o.metrics) parts.push(...metricsLine(o.metrics, o.comparison_to_base));
        break;
      case "version":
        if (o.ref) parts.push(line(link(o.url, o.ref)));
        break;
      case "promote":
        if (o.stage) parts.push(line(`stage: ${o.stage}`));
        break;
    }
    if (step.duration_seconds !== null && step.status !== "skipped")
      parts.push(el("div", { class: "muted" }, `${num(step.duration_seconds, 3)} s`, step.attempts > 1 ? ` · attempt ${step.attempts}` : ""));
    return parts;
  }

  function renderSteps(data) {
    for (const step of data.steps) {
      const li = document.querySelector(`#pipeline li[data-step="${step.name}"]`);
      if (!li) continue;
      li.className = step.status;
      li.dataset.status = step.status;
      const badge = li.querySelector('[data-role="status"]');
      badge.className = `badge ${step.status}`;
      badge.textContent = label(step.status);
      li.querySelector('[data-role="body"]').replaceChildren(...stepBody(step));
      li.querySelector('[data-role="error"]').textContent = step.error || "";
    }
    const status = document.getElementById("workflow-status");
    status.className = `badge ${data.status}`;
    status.textContent = label(data.status);
    const error = document.getElementById("workflow-error");
    error.hidden = !data.error;
    error.textContent = data.error || "";
    error.className = data.status === "blocked" ? "blocked-reason" : "error";
    document.getElementById("retry-form").hidden = data.status !== "failed" && data.status !== "blocked";
    document.getElementById("retry-workflow").textContent =
      data.status === "blocked" ? "Check the gate again and promote" : "Retry from the failed step";
    const gateLink = document.getElementById("gate-link");
    const version = data.steps.find((s) => s.name === "version");
    gateLink.hidden = data.status !== "blocked" || !(version && version.output && version.output.url);
    if (!gateLink.hidden) gateLink.href = version.output.url;
  }

  function renderResult(summary) {
    const items = [];
    const d = summary.dataset;
    if (d) {
      const rows = [el("dt", {}, "Dataset"), el("dd", {}, link(`/datasets/${d.dataset_id}/`, `${d.dataset_id} v${d.version}`))];
      rows.push(el("dt", {}, "Samples"), el("dd", { id: "result-samples" }, d.samples ?? "—"));
      if (d.from_knowledge) {
        const k = Object.entries(d.from_knowledge).map(([key, v]) => `${key}: ${v}`).join(", ");
        rows.push(el("dt", {}, "From the knowledge base"), el("dd", {}, k));
      }
      if (d.split) rows.push(el("dt", {}, "Split"), el("dd", { id: "result-split" }, `${d.split.train}/${d.split.validation}/${d.split.test} (${d.split_text || ""})`));
      rows.push(el("dt", {}, "Validation"), el("dd", {}, d.validation || "—"));
      items.push(el("li", {}, el("strong", {}, "Prepare dataset"), el("dl", {}, rows)));
    }
    const c = summary.config;
    if (c) {
      items.push(el("li", {}, el("strong", {}, "Configure training"), el("dl", { id: "result-config" },
        el("dt", {}, "Config"), el("dd", {}, c.config_id),
        el("dt", {}, "Base"), el("dd", {}, c.base),
        el("dt", {}, "Approach"), el("dd", {}, c.approach),
        el("dt", {}, "Epochs"), el("dd", {}, `${c.epochs}${c.max_steps ? ` (at most ${c.max_steps} steps)` : ""}`),
        el("dt", {}, "Learning rate"), el("dd", {}, c.learning_rate),
        el("dt", {}, "Est. time"), el("dd", {}, c.estimated_time || "—"))));
    }
    const t = summary.training;
    if (t && t.final_loss !== undefined && t.final_loss !== null) {
      items.push(el("li", {}, el("strong", {}, "Train"), el("dl", {},
        el("dt", {}, "Job"), el("dd", {}, link(`/jobs/${t.job_id}/`, t.job_id)),
        el("dt", {}, "Final loss"), el("dd", { id: "result-final-loss" }, num(t.final_loss)),
        el("dt", {}, "Best checkpoint"), el("dd", { id: "result-best-checkpoint" },
          t.best_checkpoint_step !== null && t.best_checkpoint_step !== undefined ? `step ${t.best_checkpoint_step} (${t.best_checkpoint_chosen_by})` : "—"))));
    }
    const e = summary.evaluation;
    if (e) {
      items.push(el("li", {}, el("strong", {}, "Evaluate"), el("dl", { id: "result-evaluation" },
        el("dt", {}, "Evaluation"), el("dd", {}, link(`/evaluations/${e.evaluation_id}/`, e.evaluation_id)),
        Object.entries(e.metrics || {}).map(([k, v]) => [
          el("dt", {}, k),
          el("dd", {}, num(v), e.base_metrics && e.base_metrics[k] !== undefined ? ` (base ${num(e.base_metrics[k])}, ${(e.vs_base || {})[`${k}_delta`] || ""} vs base)` : ""),
        ]))));
    }
    const v = summary.version;
    if (v) {
      items.push(el("li", {}, el("strong", {}, "Version"), el("dl", {},
        el("dt", {}, "Model ID"), el("dd", { id: "result-model-id" }, v.model_id),
        el("dt", {}, "Version"), el("dd", { id: "result-version" }, link(`/models/${v.model_id}/${v.version}/`, v.version)),
        el("dt", {}, "Stage"), el("dd", {}, v.stage || "none"))));
    }
    const body = document.getElementById("result-body");
    if (items.length) body.replaceChildren(el("ol", {}, items));
  }

  function render(data) {
    renderSteps(data);
    renderResult(data.summary);
  }

  const state = document.getElementById("live-state");
  const finished = (data) => ["succeeded", "failed", "blocked"].includes(data.status);
  let polling = false;

  function show(data, transport) {
    render(data);
    state.dataset.transport = transport;
    state.textContent = finished(data) ? ended(data.status) : `live (${transport})`;
  }

  async function poll() {
    try {
      const response = await fetch(`/api/v1/workflows/${id}`, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        const data = await response.json();
        show(data, "polling");
        if (finished(data)) return;
      } else {
        state.textContent = `reconnecting (HTTP ${response.status})`;
      }
    } catch (err) {
      state.textContent = "reconnecting";
    }
    setTimeout(poll, POLL_MS);
  }

  function startPolling() {
    if (polling) return;
    polling = true;
    setTimeout(poll, POLL_MS);
  }

  function connect() {
    let ws;
    try {
      ws = new WebSocket(window.t4dm.wsURL(`/ws/workflows/${id}/`));
    } catch (err) {
      startPolling();
      return;
    }
    let last = initial;
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "workflow") {
        last = message.workflow;
        show(last, "websocket");
      }
    };
    ws.onclose = () => {
      if (!finished(last)) startPolling();
    };
  }

  render(initial);
  if (finished(initial)) state.textContent = ended(initial.status);
  else connect();
})();
