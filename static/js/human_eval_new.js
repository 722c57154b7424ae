// The human-evaluation set-up form: show the fields of the chosen mode and question source; add rows.
(function () {
  "use strict";
  const form = document.getElementById("he-new");
  if (!form) return;

  function sync() {
    const pairwise = form.elements.mode.value === "pairwise";
    document.getElementById("he-model-b-label").hidden = !pairwise;
    document.getElementById("he-model-a-text").textContent = pairwise ? "First model" : "Model";
    form.querySelectorAll(".he-low").forEach((el) => { el.textContent = pairwise ? "A better means" : "1 means"; });
    form.querySelectorAll(".he-high").forEach((el) => { el.textContent = pairwise ? "B better means" : "5 means"; });
    const source = form.querySelector("input[name=source]:checked").value;
    form.querySelectorAll("[data-source]").forEach((el) => { el.hidden = el.dataset.source !== source; });
  }

  document.getElementById("he-add-criterion").addEventListener("click", () => {
    const rows = form.querySelector(".criteria-table tbody");
    const copy = rows.lastElementChild.cloneNode(true);
    copy.querySelectorAll("input").forEach((input) => { input.value = ""; });
    rows.appendChild(copy);
    copy.querySelector("input").focus();
  });
  form.addEventListener("change", sync);
  sync();
})();
