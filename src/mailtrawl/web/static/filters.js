// mailtrawl: the filter builder's and the hits table's small comforts. Everything works
// without it (the server validates and re-renders); it only
//  - offers, for each filter row, the operators its field takes and the header-name input
//    only for the "header" field;
//  - ticks or unticks every message on the page from the header checkbox.
(function () {
  "use strict";
  function syncRow(row) {
    var field = row.querySelector("select[data-field]");
    var op = row.querySelector("select[data-op]");
    var header = row.querySelector("[data-header-name]");
    if (!field || !op) { return; }
    var chosen = field.options[field.selectedIndex];
    var ops = ((chosen && chosen.getAttribute("data-ops")) || "").split(" ");
    for (var i = 0; i < op.options.length; i++) {
      var option = op.options[i];
      var fits = option.value === "" || ops.indexOf(option.value) >= 0;
      option.disabled = !fits;
      option.hidden = !fits;
    }
    if (op.selectedOptions.length && op.selectedOptions[0].disabled) { op.value = ""; }
    if (header) { header.hidden = field.value !== "header"; }
  }
  function syncAll(root) {
    var rows = root.querySelectorAll("[data-row]");
    for (var i = 0; i < rows.length; i++) { syncRow(rows[i]); }
  }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("select[data-field]")) {
      syncRow(target.closest("[data-row]"));
    }
    if (target.matches && target.matches("input[data-select-all]")) {
      var form = target.form || target.closest("form");
      var name = target.getAttribute("data-select-all");
      var boxes = form ? form.querySelectorAll('input[type="checkbox"][name="' + name + '"]') : [];
      for (var j = 0; j < boxes.length; j++) { boxes[j].checked = target.checked; }
    }
  });
  // htmx swaps the form in again after Explain or an added row: tidy the new rows too.
  document.addEventListener("htmx:after:swap", function () { syncAll(document); });
  document.addEventListener("htmx:afterSwap", function () { syncAll(document); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { syncAll(document); });
  } else {
    syncAll(document);
  }
})();
