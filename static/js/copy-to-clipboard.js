// Copy buttons: <button data-copy-target="element-id" data-copied-label="Copied">.
// Loaded as a file (no inline script) so the page works under a strict Content-Security-Policy.
(function () {
  "use strict";

  function textOf(target) {
    return "value" in target ? target.value : target.textContent;
  }

  function fallbackCopy(target) {
    if (typeof target.select === "function") {
      target.select();
    }
    return document.execCommand && document.execCommand("copy");
  }

  function flash(button, label) {
    var original = button.textContent;
    button.textContent = label;
    window.setTimeout(function () {
      button.textContent = original;
    }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) {
      return;
    }
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) {
      return;
    }
    var copied = button.getAttribute("data-copied-label") || "Copied";
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(textOf(target)).then(
        function () { flash(button, copied); },
        function () { if (fallbackCopy(target)) { flash(button, copied); } }
      );
    } else if (fallbackCopy(target)) {
      flash(button, copied);
    }
  });
})();
