// The evaluation set-up form: show only the metrics that fit the chosen dataset's task type.
(function () {
  "use strict";
  const select = document.getElementById("eval-dataset");
  if (!select) return;
  function sync() {
    const task = select.selectedOptions[0] ? select.selectedOptions[0].dataset.task : "";
    document.querySelectorAll("#eval-metrics [data-tasks]").forEach((label) => {
      const fits = !task || label.dataset.tasks.split(" ").includes(task);
      label.hidden = !fits;
      if (!fits) label.querySelector("input").checked = false;
    });
  }
  select.addEventListener("change", sync);
  sync();
})();
