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
// account on the server (POST /experiments/views/save/ and /delete/); choosing one opens it.
(function () {
  const box = document.getElementById("saved-views");
  if (!box) return;
  const list = document.getElementById("saved-view-list");
  const nameInput = document.getElementById("saved-view-name");
  let views = JSON.parse(document.getElementById("saved-views-data").textContent || "[]");
  const here = () => { const q = new URLSearchParams(location.search); q.delete("page"); return q.toString(); };
  function fill() {
    list.length = 1;
    for (const view of views) {
      const option = new Option(view.name, view.name);
      if (view.query === here()) option.selected = true;
      list.add(option);
    }
  }
  async function send(path, body) {
    const response = await fetch("/experiments/views/" + path + "/", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": window.t4dm.csrf() },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { alert((data.error && data.error.message) || "could not save the view"); return; }
    views = data.views; fill();
  }
  fill();
  list.addEventListener("change", () => {
    const view = views.find((v) => v.name === list.value);
    if (view) location.search = view.query;
  });
  document.getElementById("saved-view-save").addEventListener("click", () => {
    const name = nameInput.value.trim();
    if (!name) { nameInput.focus(); return; }
    send("save", { name, query: here() });
  });
  document.getElementById("saved-view-delete").addEventListener("click", () => {
    if (list.value) send("delete", { name: list.value });
  });
})();
