// Registry version page: an export takes a while (merging LoRA into the base, packing the files), and
// the form posts normally; meanwhile the button says so and a progress bar runs, so the page is not
// silently stuck.
(function () {
  "use strict";
  const form = document.getElementById("export-form");
  if (!form) return;
  form.addEventListener("submit", () => {
    const button = form.querySelector("button[type=submit]");
    const state = document.getElementById("export-progress");
    const started = Date.now();
    // disabled after the submit has been dispatched, so the form still posts
    setTimeout(() => { button.disabled = true; }, 0);
    button.textContent = "Exporting…";
    form.setAttribute("aria-busy", "true");
    state.hidden = false;
    const text = state.querySelector("span");
    const tick = () => { text.textContent = "exporting: " + Math.round((Date.now() - started) / 1000) + " s (a merge can take a minute)"; };
    tick();
    setInterval(tick, 1000);
  });
})();
