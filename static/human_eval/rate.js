// The rating page: one item at a time from the evaluator API, keyboard first, autosaved drafts.
// A multi-turn question shows each turn under its role; a reference answer, when the question has one,
// is shown under it. "Previous" goes back through the items this evaluator rated (in the order they
// rated them); a changed rating is saved with PUT (the one rating is updated, never duplicated).
(function () {
  "use strict";
  const root = document.getElementById("rate");
  const taskId = root.dataset.task;
  const pairwise = root.dataset.mode === "pairwise";
  const api = "/api/v1/human-eval";
  const $ = (id) => document.getElementById(id);
  const guidesNode = document.getElementById("rate-guides");
  const guides = guidesNode ? JSON.parse(guidesNode.textContent) : {};
  const ROLES = { system: "System", user: "User", assistant: "Assistant" };
  // The scale's ends when the task's owner gave none (rating mode).
  const DEFAULT_ANCHORS = { low: "very poor", high: "excellent" };
  let state = null; // {item, criteria, progress, rating, previous, next}
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

  const rated = () => !!(state && state.rating); // looking back at an item already rated

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
      const scale = document.createElement("div");
      scale.className = "scale";
      const low = guide.low || (pairwise ? "" : DEFAULT_ANCHORS.low);
      const high = guide.high || (pairwise ? "" : DEFAULT_ANCHORS.high);
      if (low) {
        const anchor = document.createElement("span");
        anchor.className = "anchor low";
        anchor.textContent = (pairwise ? "A: " : "1 = ") + low;
        scale.appendChild(anchor);
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
        scale.append(input, tag);
      });
      if (high) {
        const anchor = document.createElement("span");
        anchor.className = "anchor high";
        anchor.textContent = (pairwise ? "B: " : "5 = ") + high;
        scale.appendChild(anchor);
      }
      fieldset.appendChild(scale);
      fieldset.addEventListener("click", () => { if (active !== index) { active = index; markActive(); } });
      box.appendChild(fieldset);
    });
  }

  function markActive() {
    document.querySelectorAll("#rate-criteria .criterion").forEach((el, i) => el.classList.toggle("active", i === active));
  }

  // prompt_html, turns[].html, reference_html and outputs[].html are rendered and sanitised on the
  // server (Markdown + nh3).
  function renderQuestion(item) {
    const box = $("rate-prompt");
    box.textContent = "";
    box.classList.toggle("conversation", item.turns.length > 0);
    if (!item.turns.length) { box.innerHTML = item.prompt_html; return; }
    item.turns.forEach((turn) => {
      const row = document.createElement("div");
      const role = ROLES[turn.role] ? turn.role : "other";
      row.className = "turn role-" + role;
      row.dataset.role = turn.role;
      const label = document.createElement("span");
      label.className = "role";
      label.textContent = ROLES[turn.role] || turn.role;
      const body = document.createElement("div");
      body.className = "md";
      body.innerHTML = turn.html;
      row.append(label, body);
      box.appendChild(row);
    });
  }

  function render() {
    renderProgress(state.progress);
    const item = state.item;
    $("rate-item").hidden = !item;
    $("rate-done").hidden = !!item;
    $("rate-done-previous").hidden = !state.previous;
    $("rate-previous").disabled = !state.previous;
    root.dataset.assignment = item ? String(item.assignment_id) : "";
    root.dataset.rated = rated() ? "yes" : "";
    if (!item) return;
    renderQuestion(item);
    $("rate-reference").hidden = !item.reference_html;
    $("rate-reference-body").innerHTML = item.reference_html || "";
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
    const saved = rated() ? state.rating : (item.draft || {});
    scores = Object.assign({}, saved.scores || {});
    $("rate-comment").value = saved.comment || "";
    active = state.criteria.findIndex((c) => !(c in scores));
    if (active < 0) active = 0;
    renderCriteria();
    $("rate-next").firstChild.textContent = rated() ? "Save change " : "Next ";
    $("rate-skip").hidden = rated();
    $("rate-revisit").hidden = !rated();
    $("rate-save").textContent = rated() ? "" : Object.keys(scores).length ? "draft restored" : "";
  }

  async function show(loader) {
    try {
      state = await loader();
      showError("");
      render();
    } catch (e) { showError(e.message); }
  }

  const load = () => show(() => call("GET", "/queue/" + encodeURIComponent(taskId) + "/next"));
  const open = (id) => show(() => call("GET", "/assignments/" + encodeURIComponent(id)));

  function scheduleSave() {
    if (rated()) return; // a rated item is saved with "Save change", not as a draft
    clearTimeout(saveTimer);
    $("rate-save").textContent = "saving…";
    saveTimer = setTimeout(saveDraft, 250);
  }

  async function saveDraft() {
    saveTimer = null;
    if (!state || !state.item || rated()) return;
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
    const path = "/assignments/" + encodeURIComponent(state.item.assignment_id) + "/rating";
    const body = { scores, comment: $("rate-comment").value };
    try {
      if (rated()) {
        await call("PUT", path, body);
        const after = state.next;
        if (after) await open(after); else await load();
      } else {
        await call("POST", path, body);
        await load();
      }
    } catch (e) { showError(e.message); } finally { busy = false; }
  }

  async function previous() {
    if (busy || !state || !state.previous) return;
    busy = true;
    try {
      if (!rated()) { clearTimeout(saveTimer); if (state.item) await saveDraft(); }
      await open(state.previous);
    } finally { busy = false; }
  }

  async function skip() {
    if (busy || !state || !state.item || rated()) return;
    busy = true;
    try {
      await saveDraft();
      await call("POST", "/assignments/" + encodeURIComponent(state.item.assignment_id) + "/skip");
      await load();
    } catch (e) { showError(e.message); } finally { busy = false; }
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !state) return;
    const typing = event.target.tagName === "TEXTAREA";
    if (typing) { if (event.key === "Escape") event.target.blur(); return; }
    const key = event.key.toLowerCase();
    if (key === "p") { event.preventDefault(); previous(); return; }
    if (!state.item) return;
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
  $("rate-previous").addEventListener("click", previous);
  $("rate-done-previous").addEventListener("click", previous);
  $("rate-back-to-queue").addEventListener("click", load);
  $("rate-comment").addEventListener("input", scheduleSave);
  load();
})();
