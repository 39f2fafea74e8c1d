/* Fizy's few behaviours that HTML alone does not give: keyboard picking in the add-line panel,
   Enter/Escape in an edited row, focusing a flagged line from the summary, and the small
   toggles. No inline scripts anywhere (Content-Security-Policy): pages mark elements with data-
   attributes and this file, loaded once, listens on the document (so HTMX swaps need nothing). */
(function () {
  "use strict";

  function options(list) {
    return Array.prototype.slice.call(list.querySelectorAll("[role=option]"));
  }

  function focusTarget(id) {
    var target = document.getElementById(id);
    if (!target) return false;
    target.scrollIntoView({ block: "center" });
    var control = target.querySelector(".fix input:not([type=hidden]), .fix button");
    (control || target).focus({ preventScroll: true });
    return true;
  }

  document.addEventListener("click", function (event) {
    var el = event.target.closest("[data-toggle], [data-hide], a.problem-link, #select-all");
    if (!el) return;
    if (el.matches("a.problem-link")) {
      if (focusTarget(el.dataset.focus)) event.preventDefault();
    } else if (el.dataset.toggle) {
      var panel = document.getElementById(el.dataset.toggle);
      panel.hidden = !panel.hidden;
      el.setAttribute("aria-expanded", String(!panel.hidden));
      if (!panel.hidden) {
        var first = panel.querySelector("input, select, textarea");
        if (first) first.focus();
      }
    } else if (el.dataset.hide) {
      document.getElementById(el.dataset.hide).hidden = true;
    } else if (el.id === "select-all") {
      document.querySelectorAll("input[name=item]:not(:disabled)").forEach(function (box) { box.checked = el.checked; });
    }
  });

  document.addEventListener("keydown", function (event) {
    var el = event.target;
    // Patient and product pickers: arrows move through the results, Enter picks, Escape goes back.
    var picker = el.closest && el.closest("[data-picker]");
    if (picker) {
      var list = picker.querySelector("[role=listbox]");
      var items = list ? options(list) : [];
      var index = items.indexOf(el);
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        if (!items.length) return;
        event.preventDefault();
        var step = event.key === "ArrowDown" ? 1 : -1;
        var next = index < 0 ? (step > 0 ? 0 : items.length - 1) : (index + step + items.length) % items.length;
        items.forEach(function (item, i) { item.setAttribute("aria-selected", String(i === next)); });
        items[next].focus();
        return;
      }
      if (event.key === "Enter" && index < 0 && el.getAttribute("role") === "combobox" && items.length) {
        event.preventDefault();  // Enter in the search box picks the first result
        items[0].click();
        return;
      }
      if (event.key === "Escape" && index >= 0) {
        event.preventDefault();
        var box = picker.querySelector("[role=combobox]");
        if (box) box.focus();
        return;
      }
    }
    // An edited row: Enter saves (Shift+Enter is a new line in a text box), Escape cancels.
    var editing = el.closest && el.closest("[data-edit-row]");
    if (editing && (event.key === "Enter" || event.key === "Escape")) {
      if (event.key === "Enter" && (event.shiftKey || el.tagName === "BUTTON")) return;
      var row = el.closest("tr") || editing;
      var button = row.querySelector(event.key === "Enter" ? "[data-action=save]" : "[data-action=cancel]");
      if (button) {
        event.preventDefault();
        button.click();
      }
    }
  });

  document.addEventListener("change", function (event) {
    var el = event.target;
    // A list choice, or a file picked for the CSV import (its preview follows at once).
    if (el.matches("select[data-autosubmit], input[type=file][data-autosubmit]") && (el.type !== "file" || el.files.length)) {
      el.form.requestSubmit();
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches("[data-submit-once]")) return;
    var button = form.querySelector("button[type=submit]");
    if (form.dataset.submitted) {
      event.preventDefault();
      return;
    }
    form.dataset.submitted = "1";
    if (button && button.dataset.busy) {
      button.textContent = button.dataset.busy;
      button.disabled = true;
    }
  });

  // After HTMX swaps: keep the pickers' aria-expanded true to what is shown, and when a swap
  // removed the focused element (a fix applied, a row saved), put focus back where work goes on.
  // A fix applied from the summary's list: focus goes to the next one there (fix, fix, fix by
  // keyboard), and to "Review & place order" once nothing is left to fix.
  var fromSummary = false;
  document.addEventListener("htmx:beforeRequest", function (event) {
    fromSummary = !!(event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("#cart-summary .summary-fix"));
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (fromSummary && (!document.activeElement || document.activeElement === document.body)) {
      fromSummary = false;
      var nextFix = document.querySelector("#flagged-lines .summary-fix input:not([type=hidden]), #flagged-lines .summary-fix button");
      var checkout = document.querySelector("a#checkout-link");
      if (nextFix) { nextFix.focus(); return; }
      if (checkout) { checkout.focus(); return; }
    }
    document.querySelectorAll("[data-picker] [role=combobox]").forEach(function (box) {
      var list = document.getElementById(box.getAttribute("aria-controls"));
      box.setAttribute("aria-expanded", String(!!(list && options(list).length)));
    });
    var target = event.detail.target;
    if (target && !target.isConnected && target.id) target = document.getElementById(target.id);  // outerHTML swaps
    if (!target || (document.activeElement && document.activeElement !== document.body)) return;
    if (target.matches("tbody.patient-group, tr.line")) {
      var control = target.querySelector(".fix input:not([type=hidden]), .fix button");
      var link = document.querySelector("a.problem-link");
      if (control) control.focus();
      else if (link) link.focus();
      else if (target.querySelector("[tabindex='-1']")) target.querySelector("[tabindex='-1']").focus();
    }
  });
})();
