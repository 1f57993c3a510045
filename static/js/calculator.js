// Progressive enhancement of the calculator: the page works without this file.
(function () {
  function syncCustomConfig() {
    var select = document.getElementById("f-model");
    var area = document.getElementById("f-model_config");
    if (!select || !area) return;
    var custom = select.value === "custom";
    area.disabled = !custom;  // a disabled field stays out of the URL
    if (custom) { area.closest("details").open = true; }
  }
  function markInvalid() {
    document.querySelectorAll("#calc-form .field-error").forEach(function (span) {
      var input = document.getElementById("f-" + span.id.slice(4));
      if (!input) return;
      if (span.textContent.trim()) { input.setAttribute("aria-invalid", "true"); } else { input.removeAttribute("aria-invalid"); }
    });
  }
  // Keep shared URLs short: empty fields mean "peft's default" on the server too.
  document.addEventListener("htmx:configRequest", function (event) {
    if (!event.detail.elt || event.detail.elt.id !== "calc-form") return;
    var data = event.detail.formData;
    if (!data) return;
    Array.from(data.keys()).forEach(function (key) {
      if (data.getAll(key).every(function (value) { return value === ""; })) data.delete(key);
    });
  });
  document.addEventListener("htmx:afterSettle", markInvalid);
  document.addEventListener("change", function (event) { if (event.target.id === "f-model") syncCustomConfig(); });
  document.addEventListener("DOMContentLoaded", function () {
    syncCustomConfig();
    var focused = document.querySelector(".form-field.focused");
    if (focused) focused.scrollIntoView({ block: "center" });
  });
})();
