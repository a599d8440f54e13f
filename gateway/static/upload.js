// Upload with a progress bar: the browser streams the form to the gateway, which encrypts it
// on the way to storage. The CSRF token travels in a header because this is a script request.
(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const bar = document.getElementById("upload-progress");
  const status = document.getElementById("upload-status");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const path = document.getElementById("upload-path").value.trim();
    const file = document.getElementById("upload-file").files[0];
    if (!file) { status.textContent = "Choose a file first."; return; }
    const data = new FormData();
    data.append("path", path);
    data.append("file", file);
    const overwrite = document.getElementById("upload-overwrite").checked;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/v1/files" + (overwrite ? "?overwrite=true" : ""));
    xhr.setRequestHeader("X-CSRFToken", token);
    xhr.setRequestHeader("Accept", "application/json");
    bar.hidden = false; bar.value = 0; status.textContent = "Uploading " + file.name + "…";
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    };
    xhr.onload = function () {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
      if (xhr.status === 201) {
        bar.value = 100;
        status.textContent = "Uploaded " + body.path + " (" + body.size + " bytes, encrypted).";
        setTimeout(function () { window.location.reload(); }, 400);
      } else {
        const msg = body.error ? body.error.message : ("HTTP " + xhr.status);
        status.textContent = "Upload refused: " + msg;
      }
    };
    xhr.onerror = function () { status.textContent = "Upload failed: the connection was lost."; };
    xhr.send(data);
  });
})();
