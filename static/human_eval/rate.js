// The rating page: one item at a time from the evaluator API, keyboard first, autosaved drafts.
(function () {
  "use strict";
  const root = document.getElementById("rate");
  const taskId = root.dataset.task;
  const pairwise = root.dataset.mode === "pairwise";
  const api = "/api/v1/human-eval";
  const $ = (id) => document.getElementById(id);
  const guidesNode = document.getElementById("rate-guides");
  const guides = guidesNode ? JSON.parse(guidesNode.textContent) : {};
  let state = null; // {item, criteria, progress}
  let scores = {};
  let active = 0;
  let saveTimer = null;
  let busy = false;

  const csrf = window.t4dm.csrf;

  async function call(method, path, body) {
    const response = await fetch(api + path, {
      method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
      body: body ? JSON.stringify(body) : undefined,
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    return data;
  }

  function showError(message) {
    $("rate-error").textContent = message;
    $("rate-error").hidden = !message;
  }

  function renderProgress(progress) {
    const fraction = progress.total ? progress.done / progress.total : 0;
    $("rate-bar-fill").style.width = (100 * fraction).toFixed(1) + "%";
    $("rate-bar").setAttribute("aria-valuenow", String(progress.done));
    $("rate-bar").setAttribute("aria-valuemax", String(progress.total));
    $("rate-progress-text").textContent = progress.done + " of " + progress.total + " rated";
  }

  function choicesFor() {
    return pairwise ? [["a", "A better"], ["tie", "Tie"], ["b", "B better"]] : [1, 2, 3, 4, 5].map((n) => [n, String(n)]);
  }

  function renderCriteria() {
    const box = $("rate-criteria");
    box.textContent = "";
    state.criteria.forEach((criterion, index) => {
      const fieldset = document.createElement("fieldset");
      fieldset.className = "criterion" + (index === active ? " active" : "");
      fieldset.dataset.criterion = criterion;
      const legend = document.createElement("legend");
      legend.textContent = criterion;
      fieldset.appendChild(legend);
      const guide = guides[criterion] || {};
      if (guide.description) {
        const about = document.createElement("p");
        about.className = "guide";
        about.textContent = guide.description;
        fieldset.appendChild(about);
      }
      choicesFor().forEach(([value, label]) => {
        const id = "c-" + index + "-" + value;
        const input = document.createElement("input");
        Object.assign(input, { type: "radio", name: "c-" + index, id, value: String(value) });
        input.checked = scores[criterion] === value;
        input.addEventListener("change", () => { active = index; choose(value); });
        const tag = document.createElement("label");
        tag.htmlFor = id;
        tag.className = "choice";
        tag.textContent = label;
        fieldset.append(input, tag);
      });
      if (guide.low || guide.high) {
        const anchors = document.createElement("p");
        anchors.className = "anchors";
        const low = document.createElement("span");
        low.textContent = guide.low ? (pairwise ? "A: " : "1 = ") + guide.low : "";
        const high = document.createElement("span");
        high.textContent = guide.high ? (pairwise ? "B: " : "5 = ") + guide.high : "";
        anchors.append(low, high);
        fieldset.appendChild(anchors);
      }
      fieldset.addEventListener("click", () => { if (active !== index) { active = index; markActive(); } });
      box.appendChild(fieldset);
    });
  }

  function markActive() {
    document.querySelectorAll("#rate-criteria .criterion").forEach((el, i) => el.classList.toggle("active", i === active));
  }

  function render() {
    renderProgress(state.progress);
    const item = state.item;
    $("rate-item").hidden = !item;
    $("rate-done").hidden = !!item;
    if (!item) return;
    // prompt_html and outputs[].html are rendered and sanitised on the server (Markdown + nh3).
    $("rate-prompt").innerHTML = item.prompt_html;
    const outputs = $("rate-outputs");
    outputs.textContent = "";
    outputs.classList.toggle("two", item.outputs.length === 2);
    item.outputs.forEach((output) => {
      const box = document.createElement("article");
      box.className = "output";
      const head = document.createElement("h2");
      head.className = "small";
      head.textContent = output.label;
      const body = document.createElement("div");
      body.className = "md";
      body.innerHTML = output.html;
      box.append(head, body);
      outputs.appendChild(box);
    });
    scores = Object.assign({}, (item.draft && item.draft.scores) || {});
    $("rate-comment").value = (item.draft && item.draft.comment) || "";
    active = state.criteria.findIndex((c) => !(c in scores));
    if (active < 0) active = 0;
    renderCriteria();
    $("rate-save").textContent = Object.keys(scores).length ? "draft restored" : "";
  }

  async function load() {
    try {
      state = await call("GET", "/queue/" + encodeURIComponent(taskId) + "/next");
      showError("");
      render();
      root.dataset.assignment = state.item ? String(state.item.assignment_id) : "";
    } catch (e) { showError(e.message); }
  }

  function scheduleSave() {
    clearTimeout(saveTimer);
    $("rate-save").textContent = "saving…";
    saveTimer = setTimeout(saveDraft, 250);
  }

  async function saveDraft() {
    saveTimer = null;
    if (!state || !state.item) return;
    try {
      await call("POST", "/assignments/" + encodeURIComponent(state.item.assignment_id) + "/draft", { scores, comment: $("rate-comment").value });
      $("rate-save").textContent = "saved";
    } catch (e) { $("rate-save").textContent = "not saved: " + e.message; }
  }

  function choose(value) {
    scores[state.criteria[active]] = value;
    if (active < state.criteria.length - 1) active += 1;
    renderCriteria();
    scheduleSave();
  }

  async function next() {
    if (busy || !state || !state.item) return;
    const missing = state.criteria.filter((c) => !(c in scores));
    if (missing.length) { showError("Rate " + missing.join(", ") + " first."); return; }
    busy = true;
    clearTimeout(saveTimer);
    try {
      await call("POST", "/assignments/" + encodeURIComponent(state.item.assignment_id) + "/rating", { scores, comment: $("rate-comment").value });
      await load();
    } catch (e) { showError(e.message); } finally { busy = false; }
  }

  async function skip() {
    if (busy || !state || !state.item) return;
    busy = true;
    try {
      await saveDraft();
      await call("POST", "/assignments/" + encodeURIComponent(state.item.assignment_id) + "/skip");
      await load();
    } catch (e) { showError(e.message); } finally { busy = false; }
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !state || !state.item) return;
    const typing = event.target.tagName === "TEXTAREA";
    if (typing) { if (event.key === "Escape") event.target.blur(); return; }
    const key = event.key.toLowerCase();
    if (!pairwise && /^[1-5]$/.test(key)) choose(Number(key));
    else if (pairwise && (key === "a" || key === "b" || key === "t")) choose(key === "t" ? "tie" : key);
    else if (key === "n" || key === "enter") next();
    else if (key === "s") skip();
    else if (key === "arrowdown") active = Math.min(active + 1, state.criteria.length - 1);
    else if (key === "arrowup") active = Math.max(active - 1, 0);
    else if (key === "c") { $("rate-comment").focus(); }
    else return;
    event.preventDefault();
    markActive();
  });
  $("rate-form").addEventListener("submit", (event) => { event.preventDefault(); next(); });
  $("rate-skip").addEventListener("click", skip);
  $("rate-comment").addEventListener("input", scheduleSave);
  load();
})();
