// Registry version page: Export queues the export on a worker and the page comes straight back; while
// an export is queued or running, this follows it (GET /api/v1/models/<id>/versions/<v>, its
// "exports" with status, progress and the step it is at) and shows the download link when it is
// done, or the error when it failed. Nothing runs when no export is under way.
(function () {
  "use strict";
  const form = document.getElementById("export-form");
  const list = document.getElementById("exports");
  if (!form || !list) return;
  const button = form.querySelector("button[type=submit]");
  const state = document.getElementById("export-progress");
  form.addEventListener("submit", () => {
    setTimeout(() => { button.disabled = true; }, 0); // after the submit has been dispatched
    button.textContent = "Starting…";
  });

  const downloadURL = (id) => location.pathname + "exports/" + id + "/download/" + location.search;
  const busy = (status) => status === "queued" || status === "running";

  function render(item, e) {
    item.dataset.status = e.status;
    const box = item.querySelector(".export-state");
    box.textContent = "";
    if (e.status === "succeeded") {
      const link = document.createElement("a");
      link.href = downloadURL(e.export_id);
      link.className = "download";
      link.textContent = "download .tar.gz";
      box.append(e.files + " files · ", link);
    } else if (e.status === "failed") {
      const label = document.createElement("strong");
      label.className = "error";
      label.textContent = "failed:";
      const text = document.createElement("span");
      text.className = "export-error";
      text.textContent = e.error;
      box.append(label, " ", text);
    } else {
      const bar = document.createElement("progress");
      bar.max = 100;
      bar.value = Math.round(100 * (e.progress || 0));
      bar.setAttribute("aria-label", "Export progress");
      const text = document.createElement("span");
      text.className = "export-message";
      text.textContent = e.status + ": " + e.message;
      box.append(bar, " ", text);
    }
  }

  async function follow() {
    let delay = 1000;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      let body;
      try {
        const response = await fetch(list.dataset.api, { credentials: "same-origin" });
        if (!response.ok) throw new Error("HTTP " + response.status);
        body = await response.json();
      } catch (err) {
        delay = Math.min(delay * 2, 10000); // the server is away: try again, less often
        state.hidden = false;
        state.textContent = "Could not read the export's state (" + err.message + "); retrying…";
        continue;
      }
      delay = 1000;
      let running = false;
      for (const e of body.exports || []) {
        const item = list.querySelector('li[data-export="' + e.export_id + '"]');
        if (item) render(item, e);
        running = running || busy(e.status);
      }
      if (!running) {
        state.hidden = true;
        button.disabled = false;
        list.dataset.busy = "false";
        return;
      }
      state.hidden = false;
      state.textContent = "An export runs on a worker; this list follows it.";
    }
  }
  if (list.dataset.busy === "true") follow();
})();
