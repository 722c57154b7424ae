// Overview: the demo buttons say at once that they are working (the first demo job prepares its
// dataset first, which takes several seconds), and cannot be pressed twice.
(function () {
  "use strict";
  document.querySelectorAll("form[data-busy]").forEach((form) => {
    form.addEventListener("submit", () => {
      const status = document.getElementById("demo-busy");
      status.textContent = form.dataset.busy;
      status.hidden = false;
      document.querySelectorAll("form[data-busy] button").forEach((b) => { b.disabled = true; });
      form.querySelector("button").setAttribute("aria-busy", "true");
    });
  });
})();
