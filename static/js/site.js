// Progressive enhancement only: every page works without this file.
(function () {
  function renderMath(root) {
    if (!window.katex) return;
    root.querySelectorAll(".math").forEach(function (el) {
      if (el.dataset.rendered) return;
      try {
        // the server sends MathML (drawn without JavaScript) carrying its TeX source in an annotation
        var source = el.querySelector('annotation[encoding="application/x-tex"]');
        var tex = source ? source.textContent : el.textContent;
        window.katex.render(tex, el, { displayMode: el.classList.contains("block"), throwOnError: false });
        el.dataset.rendered = "1";
      } catch (err) { /* leave the TeX source visible */ }
    });
  }
  function copyText(text, button) {
    var done = function () { var old = button.textContent; button.textContent = "Copied"; setTimeout(function () { button.textContent = old; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, done); }
    else { var area = document.createElement("textarea"); area.value = text; document.body.appendChild(area); area.select(); try { document.execCommand("copy"); } catch (e) {} area.remove(); done(); }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-link]");
    if (button) {
      var url = new URL(button.getAttribute("data-copy-link") || window.location.href, window.location.href);
      copyText(url.href, button);
      return;
    }
    var source = event.target.closest("[data-copy-target]");
    if (source) {
      var target = document.getElementById(source.getAttribute("data-copy-target"));
      if (target) copyText(target.textContent, source);
    }
  });
  function showCopyControls(root) {
    root.querySelectorAll("button.copy-link[hidden]").forEach(function (button) { button.hidden = false; });
  }
  document.addEventListener("DOMContentLoaded", function () { renderMath(document); showCopyControls(document); });
  document.addEventListener("htmx:afterSwap", function (event) { renderMath(event.target); showCopyControls(event.target); });
  window.lorapedia = { renderMath: renderMath, copyText: copyText };
})();
