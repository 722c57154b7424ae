// Sort links keep the filters and flip direction on a second click.
(function () {
  const params = new URLSearchParams(location.search);
  const current = params.get("sort") || "-created";
  document.querySelectorAll("#runs a[data-sort]").forEach((a) => {
    const field = a.dataset.sort;
    const next = new URLSearchParams(location.search);
    next.set("sort", current === "-" + field ? field : "-" + field);
    a.href = "?" + next.toString();
    if (current.replace("-", "") === field) {
      a.setAttribute("aria-sort", current.startsWith("-") ? "descending" : "ascending");
      a.textContent += current.startsWith("-") ? " ▼" : " ▲";
    }
  });
})();

// Saved views: a name for the current filters, columns, sort and grouping (the query string), kept per
// account in this browser's localStorage; choosing one opens it.
(function () {
  const box = document.getElementById("saved-views");
  if (!box) return;
  const storageKey = "t4dm.runs.views." + box.dataset.user;
  const list = document.getElementById("saved-view-list");
  const nameInput = document.getElementById("saved-view-name");
  const load = () => { try { return JSON.parse(localStorage.getItem(storageKey)) || {}; } catch (e) { return {}; } };
  const store = (views) => localStorage.setItem(storageKey, JSON.stringify(views));
  const here = () => { const q = new URLSearchParams(location.search); q.delete("page"); return q.toString(); };
  function fill() {
    const views = load();
    list.length = 1;
    for (const name of Object.keys(views).sort()) {
      const option = new Option(name, name);
      if (views[name] === here()) option.selected = true;
      list.add(option);
    }
  }
  fill();
  list.addEventListener("change", () => {
    const views = load();
    if (list.value && list.value in views) location.search = views[list.value];
  });
  document.getElementById("saved-view-save").addEventListener("click", () => {
    const name = nameInput.value.trim();
    if (!name) { nameInput.focus(); return; }
    const views = load();
    views[name] = here();
    store(views);
    fill();
  });
  document.getElementById("saved-view-delete").addEventListener("click", () => {
    const views = load();
    if (!list.value) return;
    delete views[list.value];
    store(views);
    fill();
  });
})();
