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
  function payload() {
    return {
      dataset_id: form.elements.dataset_id.value,
      model_base: form.elements.model_base.value.trim(),
      approach: form.elements.approach.value,
      template: form.elements.template.value || null,
      hyperparams: hyperparams(),
    };
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
    document.getElementById("est-basis").textContent = data.estimate.basis || "";
  }
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
