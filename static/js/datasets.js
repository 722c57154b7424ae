// Browser upload with a progress bar: posts the form to the API (session + CSRF), then opens the dataset.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  // The format follows the file's extension (the server does the same when it is left empty).
  const EXTENSIONS = { jsonl: "jsonl", json: "json", csv: "csv", parquet: "parquet", txt: "jsonl" };
  const fileInput = document.getElementById("upload-file");
  const formatSelect = document.getElementById("upload-format");
  fileInput.addEventListener("change", function () {
    const file = fileInput.files[0];
    const ext = file ? file.name.split(".").pop().toLowerCase() : "";
    formatSelect.value = EXTENSIONS[ext] || "";
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const data = new FormData(form);
    data.delete("csrfmiddlewaretoken");
    if (!document.getElementById("reuse-existing").checked) data.set("new_dataset", "true");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRFToken", csrf);
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading…";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    };
    xhr.upload.onload = function () {
      bar.value = 100;
      status.textContent = "Uploaded; checking, measuring and splitting…";
    };
    xhr.onload = function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
      if (xhr.status === 201 || xhr.status === 200) {
        opened(Object.assign(body, { existing: xhr.getResponseHeader("X-T4DM-Existing-Dataset") === "true" }));
      } else if (xhr.status === 202) {
        status.textContent = "Uploaded; the dataset worker is checking, measuring and splitting it…";
        follow(body.task_id);
      } else {
        const error = body.error || {};
        refused(error.message || xhr.statusText, error.details);
      }
    };
    xhr.onerror = function () { status.textContent = "The upload failed: the server could not be reached."; };
    xhr.send(data);
  });
  // A new dataset opens at once; identical content already stored (only when "open it instead" is
  // ticked) is said so, with a link, and opens on the user's click: never a silent redirect.
  function opened(result) {
    const url = "/datasets/" + result.dataset_id + "/";
    if (!result.existing) {
      status.textContent = "Stored as " + result.dataset_id + ".";
      window.location.href = url;
      return;
    }
    status.className = "";
    status.textContent = "Identical content is already stored as ";
    const link = document.createElement("a");
    link.href = url + "#versions";
    link.id = "existing-dataset";
    link.textContent = result.dataset_id;
    status.append(link, "; nothing new was created. Untick \"open it instead\" to store it as a new dataset.");
  }
  // A refusal says why, and lists every error the server found (details.issues) below, linked from
  // the message's "see details".
  const issuesBox = document.getElementById("upload-issues");
  function refused(message, details) {
    status.className = "error";
    status.textContent = "Refused: " + message;
    const issues = (details && details.issues) || [];
    issuesBox.hidden = issues.length === 0;
    const body = issuesBox.querySelector("tbody");
    body.textContent = "";
    if (!issues.length) return;
    status.append(" ");
    const link = document.createElement("a");
    link.href = "#upload-issues";
    link.textContent = "All " + (details.error_count || issues.length) + " errors";
    status.append(link);
    issuesBox.querySelector("summary").textContent =
      "Errors in the file (" + (details.error_count || issues.length) + ")";
    issuesBox.open = true;
    for (const issue of issues) {
      const tr = document.createElement("tr");
      const where = issue.line ? "line " + issue.line : issue.row ? "row " + issue.row : "—";
      for (const text of [issue.code, where, issue.field || "", issue.message]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
  }
  // A large file is prepared on the dataset worker: follow its task live over the task's websocket
  // (static/js/dataset_task_live.js; no polling), then open the dataset or say why not.
  function follow(taskId) {
    bar.removeAttribute("value"); // indeterminate until the worker reports progress
    let live = null;
    live = window.t4dmDatasetTask.follow(taskId, function (task) {
      status.dataset.task = taskId;
      status.dataset.taskStatus = task.status;
      status.dataset.transport = live ? live.transport() : "websocket";
      if (task.status === "succeeded") {
        opened({ dataset_id: task.dataset_id });
        return true;
      }
      if (task.status === "failed") {
        refused(task.error, task.error_details);
        return true;
      }
      if (typeof task.progress === "number" && task.progress > 0) bar.value = Math.round(100 * task.progress);
      status.textContent = "Uploaded; the dataset worker is " + (task.status === "running"
        ? "checking, measuring and splitting it" + (task.message ? " (" + task.message + ")" : "")
        : "about to check it (queued)") + "…";
      return false;
    }, function (message) {
      status.textContent = message;
      status.className = "error";
    });
  }
})();
