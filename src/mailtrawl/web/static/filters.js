// mailtrawl: the filter builder's and the hits table's small comforts. Everything works
// without it (the server validates and re-renders); it only
//  - offers, for each filter row, the operators its field takes and the header-name input
//    only for the "header" field;
//  - ticks or unticks every message on the page from the header checkbox;
//  - adds a directory search result (a button) to the target users field, and moves
//    between the results with the arrow keys (Enter in the search box never starts the
//    investigation: it goes to the first result).
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
  function scopeField() { return document.getElementById("i-scope-values"); }
  function addScope(button) {
    var field = scopeField();
    var value = button.getAttribute("data-add-scope");
    if (!field || !value) { return; }
    var parts = field.value.split(",").map(function (p) { return p.trim(); })
      .filter(function (p) { return p.length > 0; });
    var lowered = parts.map(function (p) { return p.toLowerCase(); });
    if (lowered.indexOf(value.toLowerCase()) < 0) { parts.push(value); }
    field.value = parts.join(", ");
    // Picking a user means "these users" (unless groups or departments were chosen).
    var kind = button.closest("[data-directory-kind]");
    var select = document.getElementById("i-scope");
    if (select && kind && (select.value === "" || select.value === "all")) {
      select.value = kind.getAttribute("data-directory-kind");
    }
    button.setAttribute("aria-pressed", "true");
    var status = document.getElementById("directory-count");
    if (status) { status.textContent = "Added " + value + "."; }
  }
  function resultButtons() {
    return Array.prototype.slice.call(document.querySelectorAll("#directory-results [data-add-scope]"));
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-add-scope]");
    if (button) { event.preventDefault(); addScope(button); }
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (!target.matches) { return; }
    var buttons = resultButtons();
    if (target.matches("input[data-directory-search]")) {
      if (event.key === "Enter" || event.key === "ArrowDown") {
        event.preventDefault();
        if (buttons.length) { buttons[0].focus(); }
      }
      return;
    }
    if (target.matches("[data-add-scope]")) {
      var at = buttons.indexOf(target);
      if (event.key === "ArrowDown" && at + 1 < buttons.length) {
        event.preventDefault(); buttons[at + 1].focus();
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        if (at > 0) { buttons[at - 1].focus(); } else {
          var search = document.querySelector("input[data-directory-search]");
          if (search) { search.focus(); }
        }
      } else if (event.key === "Escape") {
        var box = document.querySelector("input[data-directory-search]");
        if (box) { box.focus(); }
      }
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
