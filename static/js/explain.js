// /explain: reads only the JSON header of a chosen adapter_model.safetensors (File.slice), so a large file costs
// nothing to send; without this file the form uploads the whole file and the server reads its header.
(function () {
  function setup() {
    var input = document.getElementById("f-adapter_weights_file");
    if (!input) return;
    var form = input.form;
    var header = document.getElementById("f-adapter_weights_header");
    var size = document.getElementById("f-adapter_weights_bytes");
    var status = document.getElementById("weights-status");
    var error = document.getElementById("err-adapter_weights_file");
    var zone = document.getElementById("weights-drop");
    var submit = form.querySelector("button[type=submit]");
    var limit = Number(input.getAttribute("data-max-header"));
    var fieldName = input.name;

    function show(message, isError) {
      error.textContent = isError ? message : "";
      error.classList.toggle("empty", !isError);
      status.textContent = isError ? "" : message;
      if (isError) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
    }

    function read(file) {
      header.value = ""; size.value = "";
      input.name = fieldName;  // until the header is read, the form would upload the file itself
      if (!file) { show("", false); return; }
      if (submit) submit.disabled = true;
      file.slice(0, 8).arrayBuffer().then(function (buffer) {
        if (buffer.byteLength < 8) throw new Error("this file is shorter than the 8-byte length a safetensors file starts with");
        var length = Number(new DataView(buffer).getBigUint64(0, true));
        if (length > limit) throw new Error("the safetensors header is " + length.toLocaleString("en") + " bytes long; at most " + limit.toLocaleString("en") + " are accepted");
        if (8 + length > file.size) throw new Error("the header says it is " + length.toLocaleString("en") + " bytes long but the file ends before that");
        return file.slice(8, 8 + length).text();
      }).then(function (text) {
        header.value = text;
        size.value = String(file.size);
        input.name = "";  // the header goes in its own field; the file stays here
        show("Header read (" + text.length.toLocaleString("en") + " bytes of " + file.size.toLocaleString("en") + "); only the header is sent.", false);
      }).catch(function (err) {
        input.name = "";
        show(err.message || String(err), true);
      }).finally(function () {
        if (submit) submit.disabled = false;
      });
    }

    input.addEventListener("change", function () { read(input.files && input.files[0]); });
    if (zone) {
      zone.addEventListener("dragover", function (event) { event.preventDefault(); zone.classList.add("dragging"); });
      zone.addEventListener("dragleave", function () { zone.classList.remove("dragging"); });
      zone.addEventListener("drop", function (event) {
        event.preventDefault();
        zone.classList.remove("dragging");
        if (!event.dataTransfer || !event.dataTransfer.files.length) return;
        input.files = event.dataTransfer.files;
        read(input.files[0]);
      });
    }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", setup); else setup();
})();
