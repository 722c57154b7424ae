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
