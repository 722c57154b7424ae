// The job page's "Rename or tag this run": PATCH /api/v1/jobs/<id> with the name and tags, then show them.
(function () {
  "use strict";
  const form = document.getElementById("run-edit-form");
  if (!form) return;
  const errorBox = document.getElementById("run-edit-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const jobId = form.dataset.jobId;
    const name = form.elements.name.value.trim();
    const tags = form.elements.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    const response = await window.t4dm.request("PATCH", "/api/v1/jobs/" + jobId, { name, tags });
    const data = await response.json();
    if (!response.ok) { errorBox.textContent = data.error.message; errorBox.hidden = false; return; }
    errorBox.hidden = true;
    document.getElementById("run-name").textContent = data.name || data.job_id;
    const tagBox = document.getElementById("run-tags");
    tagBox.replaceChildren(...data.tags.map((t) => {
      const a = document.createElement("a");
      a.className = "badge run-tag";
      a.href = "/experiments/?tag=" + encodeURIComponent(t);
      a.textContent = t;
      return a;
    }));
    form.elements.name.value = data.name;
    form.elements.tags.value = data.tags.join(", ");
    document.title = (data.name ? data.name + " · " : "") + data.job_id + " · T4DM";
    form.closest("details").open = false;
  });
})();
