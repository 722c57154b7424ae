// Training config form: defaults from the server, inline validation, a live estimate, and a start
// button that creates the config and the job through the API.
(function () {
  "use strict";
  const form = document.getElementById("config-form");
  const { defaults, templates } = JSON.parse(document.getElementById("form-data").textContent);
  const HP = ["learning_rate", "epochs", "batch_size", "gradient_accumulation", "warmup_ratio", "max_seq_length", "lora_r", "lora_alpha", "lora_dropout", "seed"];
  const errorBox = document.getElementById("form-error");

  function fill(values) { for (const name of HP) if (values[name] !== undefined) form.elements[name].value = values[name]; }
  fill(defaults);
  form.elements.template.addEventListener("change", () => fill({ ...defaults, ...(templates[form.elements.template.value] || {}) }));

  const csrf = window.t4dm.csrf;
  function hyperparams() {
    const out = {};
    for (const name of HP) {
      const input = form.elements[name];
      if (input.value !== "") out[name] = Number(input.value);
    }
    return out;
  }
  // Advanced options: sent only when set, so the server's defaults apply otherwise.
  function advanced(out) {
    const el = form.elements;
    const modules = el.target_modules.value.split(",").map((t) => t.trim()).filter(Boolean);
    if (modules.length) out.target_modules = modules;
    if (el.max_steps.value !== "") out.max_steps = Number(el.max_steps.value);
    if (el.logging_steps.value !== "" && Number(el.logging_steps.value) !== 1) out.logging_steps = Number(el.logging_steps.value);
    if (el.gradient_checkpointing.checked) out.gradient_checkpointing = true;
    if (el.weight_decay.value !== "") out.weight_decay = Number(el.weight_decay.value);
    if (el.lr_scheduler.value !== "linear") out.lr_scheduler = el.lr_scheduler.value;
    if (el.eval_steps.value !== "") out.eval_steps = Number(el.eval_steps.value);
    return out;
  }
  function payload() {
    const el = form.elements;
    const body = {
      dataset_id: el.dataset_id.value,
      dataset_version: el.dataset_version.value ? Number(el.dataset_version.value) : null,
      model_base: el.model_base.value.trim(),
      approach: el.approach.value,
      template: el.template.value || null,
      hyperparams: advanced(hyperparams()),
    };
    const checkpointing = {};
    if (el.save_steps.value !== "") checkpointing.save_steps = Number(el.save_steps.value);
    if (el.save_total_limit.value !== "") checkpointing.save_total_limit = Number(el.save_total_limit.value);
    if (Object.keys(checkpointing).length) body.checkpointing = checkpointing;
    if (el.early_stopping.checked) {
      body.early_stopping = {
        metric: el.early_stopping_metric.value,
        patience: Number(el.early_stopping_patience.value),
        min_delta: Number(el.early_stopping_min_delta.value),
      };
    }
    return body;
  }
  function showError(message) { errorBox.textContent = message || ""; errorBox.hidden = !message; }
  function validate() {
    let first = null;
    for (const input of form.querySelectorAll("input, select")) {
      input.setAttribute("aria-invalid", input.checkValidity() ? "false" : "true");
      if (!first && !input.checkValidity()) first = input;
    }
    if (first) showError((first.labels[0] ? first.labels[0].textContent.trim() : first.name) + ": " + first.validationMessage);
    return first;
  }

  // "0.000202B params" reads as "202k params"; "7.24B params" stays.
  function readableParams(text) {
    return text.replace(/(\d+(?:\.\d+)?(?:e[-+]?\d+)?)B params/, (match, n) => {
      const v = Number(n) * 1e9;
      const [d, unit] = v >= 1e9 ? [1e9, "B"] : v >= 1e6 ? [1e6, "M"] : v >= 1e3 ? [1e3, "k"] : [1, ""];
      return Number((v / d).toPrecision(3)) + unit + " params";
    });
  }

  let timer = null;
  let sequence = 0;
  async function estimate() {
    if (validate()) return;
    const mine = ++sequence;
    const response = await fetch("/configs/estimate/", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() }, body: JSON.stringify(payload()),
    });
    if (mine !== sequence) return; // a newer request is on its way
    const data = await response.json();
    if (!response.ok) { showError(data.error.message); return; }
    showError("");
    // training_device: where the time applies (a GPU, or "cpu"); time_source: a worker's measured
    // tokens/s for this model size and approach, or the assumed MFU.
    for (const field of ["gpu_memory", "training_time", "estimated_cost", "recommended_gpu", "training_device", "time_source"]) {
      document.getElementById("est-" + field).textContent = data.estimate[field] ?? "—";
    }
    document.getElementById("est-basis").textContent = readableParams(data.estimate.basis || "");
    // A configuration no known GPU holds is said in words, next to the Start button.
    const warning = document.getElementById("est-warning");
    const plan = data.estimate.plan;
    warning.hidden = !(plan && plan.fits === false);
    warning.textContent = warning.hidden ? "" :
      "No known GPU can hold this configuration (" + data.estimate.gpu_memory + " needed): lower the batch size or the sequence length, or turn on gradient checkpointing.";
  }
  // The chosen dataset's versions, newest first (GET /api/v1/datasets/{id}/versions); the latest is selected.
  const versionSelect = form.elements.dataset_version;
  // Only the newest request's answer fills the picker, and a change event that keeps the same dataset
  // keeps the picker (and the version the user chose) as it is.
  let versionsFor = null, versionsRequest = 0;
  async function loadVersions() {
    const datasetId = form.elements.dataset_id.value;
    if (datasetId === versionsFor) return;
    versionsFor = datasetId;
    const mine = ++versionsRequest;
    // The previous dataset's version numbers must not reach an estimate of this one: none (the latest)
    // until this dataset's versions are here, then the estimate again for the one selected.
    versionSelect.replaceChildren();
    if (!datasetId) return;
    const response = await fetch("/api/v1/datasets/" + encodeURIComponent(datasetId) + "/versions", { credentials: "same-origin" });
    if (!response.ok || mine !== versionsRequest) {
      if (mine === versionsRequest) versionsFor = null;  // a failed load is tried again on the next change
      return;
    }
    const versions = (await response.json()).sort((a, b) => b.version - a.version);
    if (mine !== versionsRequest) return;
    versionSelect.replaceChildren(...versions.map((v, i) => {
      const parts = i === 0 ? ["latest"] : [];
      if (v.origin) parts.push(v.origin);
      if (v.statistics && v.statistics.total_samples != null) parts.push(v.statistics.total_samples + " rows");
      const label = "v" + v.version + (parts.length ? " (" + parts.join(", ") + ")" : "");
      return new Option(label, String(v.version), i === 0, i === 0);
    }));
    clearTimeout(timer);
    timer = setTimeout(estimate, 0);
  }
  form.elements.dataset_id.addEventListener("change", loadVersions);
  loadVersions();
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(estimate, 300); });
  form.addEventListener("change", () => { clearTimeout(timer); timer = setTimeout(estimate, 100); });
  estimate();

  // The experiment the run joins: an existing one, or a new one made first (with its name and tags).
  // Returns its id, null for the server's default new experiment, or undefined after an error.
  const choice = document.getElementById("experiment-choice");
  const syncExperiment = () => { document.getElementById("new-experiment").hidden = choice.value !== ""; };
  choice.addEventListener("change", syncExperiment);
  syncExperiment();
  async function experimentId() {
    if (choice.value) return choice.value;
    const name = form.elements.experiment_name.value.trim();
    const tags = form.elements.experiment_tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    if (!name && !tags.length) return null;
    // A name you already use joins that experiment instead of making a second one of the same name.
    const same = [...choice.options].find((o) => o.value && (o.dataset.name || "").trim().toLowerCase() === name.toLowerCase());
    if (name && same) return same.value;
    const dataset = form.elements.dataset_id.selectedOptions[0];
    const fallback = form.elements.model_base.value.trim() + " on " + (dataset ? dataset.textContent.split(" · ")[1].split(" (")[0] : "data");
    const response = await window.t4dm.request("POST", "/api/v1/experiments", { name: name || fallback, tags });
    const data = await response.json();
    if (!response.ok) { showError(data.error.message); return undefined; }
    return data.experiment_id;
  }

  // The run's own name and tags, sent with POST /api/v1/jobs.
  function runFields(configId) {
    const tags = form.elements.run_tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    return { config_id: configId, name: form.elements.run_name.value.trim(), tags };
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (validate()) return;
    const button = document.getElementById("start-training");
    button.disabled = true;
    const headers = { "Content-Type": "application/json", "X-CSRFToken": csrf() };
    try {
      const body = payload();
      body.experiment_id = await experimentId();
      if (body.experiment_id === undefined) return;
      const config = await fetch("/api/v1/configs", { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(body) });
      const configData = await config.json();
      if (!config.ok) { showError(configData.error.message); return; }
      const job = await fetch("/api/v1/jobs", { method: "POST", credentials: "same-origin", headers, body: JSON.stringify(runFields(configData.config_id)) });
      const jobData = await job.json();
      if (!job.ok) { showError(jobData.error.message); return; }
      location.href = "/jobs/" + jobData.job_id + "/";
    } finally {
      button.disabled = false;
    }
  });
})();
