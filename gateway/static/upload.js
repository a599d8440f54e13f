// The files page's uploader: Uppy's Dashboard (several files, drag and drop, pause, resume,
// cancel) over the gateway's resumable uploads (tus, /api/v1/uploads), with a message per file
// in plain words. The gateway encrypts each file as it arrives.
//
// Nothing of a file is kept in the browser's storage: no Golden Retriever, no IndexedDB. To
// resume after a page reload (the user picks the same file again) only an opaque pair is kept
// in localStorage: a SHA-256 of (user, folder, file fingerprint) and the upload's address on
// the gateway. No file content, no file or folder name.
(function () {
  "use strict";

  var root = document.getElementById("uploader");
  if (!root) return;
  var messages = document.getElementById("upload-messages");
  var broken = document.getElementById("uploader-broken");
  if (!window.Uppy || !window.Uppy.Uppy || !window.Uppy.Dashboard || !window.Uppy.Tus) {
    if (broken) broken.hidden = false;
    return;
  }

  var CATEGORIES = ["uploads", "documents", "signatures", "templates"];
  var MiB = 1024 * 1024;
  // Retries after a dropped connection: quickly at first, then every minute. tus-js-client
  // starts again from the first delay whenever the upload moved on; while the browser is
  // offline the uploads wait for it to come back.
  var RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000, 60000, 60000, 60000];
  var STORAGE_PREFIX = "gateway-upload:";
  var STORAGE_DAYS = 1; // unfinished uploads expire on the gateway after a day by default

  var token = document.querySelector('meta[name="csrf-token"]').content;
  var endpoint = root.dataset.endpoint;
  var maxBytes = Number(root.dataset.maxBytes);
  var extensions = (root.dataset.extensions || "").split(",").filter(Boolean);
  var userId = root.dataset.user || "";
  var folderInput = document.getElementById("upload-folder");
  var rows = {}; // Uppy file id -> the file's message row

  // -- words ------------------------------------------------------------------------------

  function mb(bytes) {
    var value = bytes / MiB;
    if (value >= 100) return Math.round(value) + " MB";
    if (value >= 0.1) return value.toFixed(1) + " MB";
    return Math.max(1, Math.round(bytes / 1024)) + " KB";
  }

  // the size of a file over the limit, never written the same as the limit
  function overLimit(bytes) {
    for (var digits = 0; digits <= 2; digits++) {
      var shown = (bytes / MiB).toFixed(digits);
      if (Number(shown) > Number((maxBytes / MiB).toFixed(digits))) return shown + " MB";
    }
    return "just over " + mb(maxBytes);
  }

  function speed(bytesPerSecond) {
    if (bytesPerSecond >= MiB) return (bytesPerSecond / MiB).toFixed(1) + " MB/s";
    return Math.max(1, Math.round(bytesPerSecond / 1024)) + " KB/s";
  }

  function timeLeft(seconds) {
    if (!isFinite(seconds)) return "";
    seconds = Math.max(1, Math.round(seconds));
    if (seconds < 60) return "about " + seconds + " s left";
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) return "about " + minutes + " min left";
    return "about " + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min left";
  }

  function extensionOf(name) {
    var dot = name.lastIndexOf(".");
    return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
  }

  // "scan.pdf" -> "scan (2).pdf"; "notes" -> "notes (2)"
  function keepBothName(name, n) {
    var dot = name.lastIndexOf(".");
    if (dot <= 0) return name + " (" + n + ")";
    return name.slice(0, dot) + " (" + n + ")" + name.slice(dot);
  }

  var ACCEPTED = "PDF, pictures and scans, video, audio, Word, Excel, PowerPoint and text files";
  var TOO_LARGE_HINT = "The largest file accepted is " + mb(maxBytes) + ".";

  // -- the folder --------------------------------------------------------------------------

  function currentFolder() {
    var folder = folderInput.value.trim().replace(/^\/+/, "");
    if (folder && folder.charAt(folder.length - 1) !== "/") folder += "/";
    return folder;
  }

  function folderProblem(folder) {
    if (!folder) return "Type the folder to save the files in first, for example uploads/ward-3/.";
    if (CATEGORIES.indexOf(folder.split("/")[0]) < 0) {
      return "The folder must start with uploads/, documents/, signatures/ or templates/.";
    }
    return "";
  }

  // -- resuming after a reload: an opaque, per-folder URL storage for tus-js-client --------

  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  var memory = {}; // used when the page cannot hash (not a secure context) or store
  var canHash = !!(window.crypto && window.crypto.subtle && window.isSecureContext);
  var canStore = (function () {
    try {
      var probe = STORAGE_PREFIX + "probe";
      window.localStorage.setItem(probe, "1");
      window.localStorage.removeItem(probe);
      return canHash;
    } catch (err) {
      return false;
    }
  })();

  function storageFor(folder) {
    function keyOf(fingerprint) {
      var text = userId + "\n" + folder + "\n" + fingerprint;
      if (!canHash) return Promise.resolve(STORAGE_PREFIX + text);
      return window.crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)).then(
        function (digest) { return STORAGE_PREFIX + hex(digest); });
    }
    function read(key) {
      var raw = canStore ? window.localStorage.getItem(key) : memory[key];
      if (!raw) return [];
      try {
        var entry = JSON.parse(raw);
        if (Date.now() - Date.parse(entry.creationTime) > STORAGE_DAYS * 86400000) {
          remove(key);
          return [];
        }
        return [{ uploadUrl: entry.uploadUrl, size: entry.size,
                  creationTime: entry.creationTime, urlStorageKey: key, metadata: {} }];
      } catch (err) {
        return [];
      }
    }
    function remove(key) {
      if (canStore) window.localStorage.removeItem(key); else delete memory[key];
    }
    return {
      findAllUploads: function () { return Promise.resolve([]); },
      findUploadsByFingerprint: function (fingerprint) { return keyOf(fingerprint).then(read); },
      removeUpload: function (key) { remove(key); return Promise.resolve(); },
      addUpload: function (fingerprint, upload) {
        return keyOf(fingerprint).then(function (key) {
          // only where the upload lives on the gateway: never its metadata (names) or bytes
          var entry = JSON.stringify({ uploadUrl: upload.uploadUrl, size: upload.size,
                                       creationTime: upload.creationTime });
          if (canStore) window.localStorage.setItem(key, entry); else memory[key] = entry;
          return key;
        });
      }
    };
  }

  // -- the message rows --------------------------------------------------------------------

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function newRow(key, name) {
    var li = el("li", "upload-item");
    li.dataset.file = name;
    var head = el("div", "upload-head");
    li.nameNode = el("span", "upload-name", name);
    li.destNode = el("span", "upload-dest");
    head.appendChild(li.nameNode);
    head.appendChild(li.destNode);
    li.appendChild(head);
    li.bar = el("progress");
    li.bar.max = 100;
    li.bar.value = 0;
    li.bar.setAttribute("aria-label", "Progress of " + name);
    li.appendChild(li.bar);
    li.stateNode = el("p", "upload-state");
    li.appendChild(li.stateNode);
    li.choices = el("div", "upload-choices");
    li.appendChild(li.choices);
    messages.insertBefore(li, messages.firstChild);
    if (key) rows[key] = li;
    li.samples = [];
    return li;
  }

  function setState(li, state, text) {
    li.className = "upload-item is-" + state;
    li.dataset.state = state;
    li.stateNode.textContent = text;
    li.bar.hidden = ["ready", "refused", "cancelled", "conflict"].indexOf(state) >= 0;
    while (li.choices.firstChild) li.choices.removeChild(li.choices.firstChild);
  }

  function rowFor(file) {
    var li = rows[file.id];
    if (!li) li = newRow(file.id, file.name);
    return li;
  }

  function setDest(li, folder, name) {
    li.nameNode.textContent = name;
    li.dataset.file = name;
    li.destNode.textContent = "to " + folder;
  }

  function choice(li, label, handler) {
    var button = el("button", "upload-choice", label);
    button.type = "button";
    button.addEventListener("click", handler);
    li.choices.appendChild(button);
    return button;
  }

  // -- Uppy --------------------------------------------------------------------------------

  var uppy = new window.Uppy.Uppy({
    id: "files",
    autoProceed: false,
    allowMultipleUploadBatches: true,
    restrictions: {
      maxFileSize: maxBytes,
      allowedFileTypes: extensions.map(function (ext) { return "." + ext; })
    },
    onBeforeUpload: function (files) {
      var problem = folderProblem(currentFolder());
      var hint = document.getElementById("upload-folder-problem");
      if (problem) {
        if (!hint) {
          hint = el("p", "notice error");
          hint.id = "upload-folder-problem";
          hint.setAttribute("role", "alert");
          folderInput.parentNode.appendChild(hint);
        }
        hint.textContent = problem;
        folderInput.focus();
        return false;
      }
      if (hint) hint.parentNode.removeChild(hint);
      return files;
    },
    locale: {
      strings: {
        exceedsSize: "%{file} is too large: the largest file accepted is %{size}",
        youCanOnlyUploadFileTypes: "This kind of file is not accepted",
        noDuplicates: "“%{fileName}” is already in the list",
        failedToUpload: "%{file} was not uploaded",
        dropPasteFiles: "Drag files here, or %{browseFiles}",
        browseFiles: "choose files",
        uploadComplete: "Uploaded and encrypted",
        uploadFailed: "Not every file was uploaded: see the messages below",
        dashboardWindowTitle: "Upload files",
        dashboardTitle: "Upload files"
      }
    }
  });

  uppy.use(window.Uppy.Dashboard, {
    target: root,
    inline: true,
    width: "100%",
    height: 340,
    proudlyDisplayPoweredByUppy: false,
    disableInformer: true, // every message is in the list below, in plain words
    singleFileFullScreen: false,
    showRemoveButtonAfterComplete: false,
    hideProgressDetails: false,
    note: "Accepted: " + ACCEPTED + ", up to " + mb(maxBytes) + " each.",
    doneButtonHandler: function () { uppy.clear(); }
  });

  uppy.use(window.Uppy.Tus, {
    endpoint: endpoint,
    headers: { "X-CSRFToken": token },
    chunkSize: 24 * MiB, // four of the gateway's parts per request
    retryDelays: RETRY_DELAYS,
    removeFingerprintOnSuccess: true,
    limit: 3,
    allowedMetaFields: ["folder", "filename", "overwrite"],
    onShouldRetry: function (err, attempt, options, next) {
      var status = err && err.originalResponse ? err.originalResponse.getStatus() : 0;
      var method = err && err.originalRequest ? err.originalRequest.getMethod() : "";
      if (status === 409 && method === "POST") return false; // the name is taken: ask the user
      var retry = next(err);
      var li = options.gatewayFileId && rows[options.gatewayFileId];
      if (retry && li) {
        var delay = RETRY_DELAYS[attempt] || 0;
        setState(li, "retrying", navigator.onLine === false
          ? "The network is gone. The upload waits and goes on by itself when the network "
            + "is back: keep this page open."
          : "The connection dropped. Trying again" + (delay >= 1000
            ? " in " + Math.round(delay / 1000) + " s" : "") + " — it goes on from "
            + li.bar.value + " %.");
      }
      return retry;
    }
  });

  function prepare(file) {
    // The folder and file name go to the gateway as upload metadata (never a full path the
    // user has to type); the URL storage is bound to the folder, so that the same file
    // picked for another folder starts a new upload.
    var folder = currentFolder();
    uppy.setFileMeta(file.id, { folder: folder, filename: file.meta.filename || file.name,
                                overwrite: file.meta.overwrite || "false" });
    uppy.setFileState(file.id, { tus: { urlStorage: storageFor(folder),
                                        gatewayFileId: file.id } });
    setDest(rowFor(file), folder, file.meta.filename || file.name);
  }

  folderInput.addEventListener("input", function () {
    uppy.getFiles().forEach(function (file) {
      if (!file.progress.uploadStarted) prepare(file);
    });
  });

  uppy.on("file-added", function (file) {
    var li = rowFor(file);
    prepare(file);
    setState(li, "ready", "Ready. Press “Upload” to send it.");
  });

  uppy.on("restriction-failed", function (file, error) {
    if (!file || !file.name) return;
    var li = newRow(null, file.name);
    var text;
    if (file.size > maxBytes) {
      text = "Not uploaded: this file is too large (" + overLimit(file.size) + "). "
        + TOO_LARGE_HINT;
    } else if (extensions.indexOf(extensionOf(file.name)) < 0) {
      text = "Not uploaded: this kind of file is not accepted. Accepted: " + ACCEPTED + ".";
    } else {
      text = "Not added: " + (error && error.message ? error.message : "refused") + ".";
    }
    setState(li, "refused", text);
  });

  uppy.on("upload", function (uploadId, files) {
    (files || []).forEach(function (file) {
      var li = rowFor(file);
      li.samples = [];
      setState(li, "uploading", "Starting…");
    });
  });

  uppy.on("upload-progress", function (file, progress) {
    var li = rows[file.id];
    if (!li || !progress.bytesTotal) return;
    var now = Date.now();
    li.samples.push([now, progress.bytesUploaded]);
    while (li.samples.length > 2 && now - li.samples[0][0] > 5000) li.samples.shift();
    var first = li.samples[0];
    var rate = now > first[0] ? (progress.bytesUploaded - first[1]) / ((now - first[0]) / 1000) : 0;
    var percent = Math.floor((progress.bytesUploaded / progress.bytesTotal) * 100);
    li.bar.value = percent;
    // a late progress event from the request the network dropped must not hide the message
    // that says the upload waits for the network
    if (navigator.onLine === false && li.dataset.state === "retrying") return;
    var parts = ["Uploading: " + percent + " %", mb(progress.bytesUploaded) + " of "
                 + mb(progress.bytesTotal)];
    if (rate > 0 && progress.bytesUploaded < progress.bytesTotal) {
      parts.push(speed(rate));
      parts.push(timeLeft((progress.bytesTotal - progress.bytesUploaded) / rate));
    }
    setState(li, "uploading", parts.join(" · "));
  });

  uppy.on("upload-pause", function (file, isPaused) {
    var li = file && rows[file.id];
    if (!li) return;
    li.samples = [];
    if (isPaused) {
      setState(li, "paused", "Paused at " + li.bar.value + " %. Press ▶ on the file to go on.");
    } else {
      setState(li, "uploading", "Going on from " + li.bar.value + " %…");
    }
  });

  uppy.on("pause-all", function () {
    uppy.getFiles().forEach(function (file) {
      var li = rows[file.id];
      if (li && file.progress.uploadStarted && !file.progress.uploadComplete) {
        setState(li, "paused", "Paused at " + li.bar.value + " %. Press “Resume” to go on.");
      }
    });
  });

  uppy.on("upload-success", function (file) {
    var li = rowFor(file);
    li.bar.value = 100;
    setState(li, "done", "Uploaded and encrypted: saved as " + file.meta.folder
             + file.meta.filename + ".");
    // pages that list the folder (the file browser) refresh on this
    document.dispatchEvent(new CustomEvent("gateway:uploaded", {
      detail: { path: file.meta.folder + file.meta.filename } }));
  });

  uppy.on("file-removed", function (file) {
    var li = rows[file.id];
    if (!li) return;
    delete rows[file.id];
    if (li.dataset.state === "done") return;
    if (li.dataset.state === "ready") {
      li.parentNode.removeChild(li);
      return;
    }
    setState(li, "cancelled", "Cancelled: this file was not saved.");
  });

  function serverMessage(error) {
    var response = error && error.originalResponse;
    if (!response) return "";
    try {
      var body = JSON.parse(response.getBody() || "{}");
      return body.error && body.error.message ? body.error.message : "";
    } catch (err) {
      return "";
    }
  }

  function retryAs(file, meta) {
    uppy.setFileMeta(file.id, meta);
    var li = rows[file.id];
    var current = uppy.getFile(file.id);
    setDest(li, current.meta.folder, current.meta.filename);
    setState(li, "uploading", "Starting…");
    // after the failed attempt has settled in Uppy
    window.setTimeout(function () { uppy.retryUpload(file.id); }, 0);
  }

  function keepBoth(file) {
    var li = rows[file.id];
    li.copyNumber = (li.copyNumber || 1) + 1;
    var name = keepBothName(file.name, li.copyNumber);
    retryAs(file, { filename: name, name: name, overwrite: "false" });
  }

  uppy.on("upload-error", function (file, error) {
    if (!file) return;
    var li = rowFor(file);
    var status = error && error.originalResponse ? error.originalResponse.getStatus() : 0;
    var method = error && error.originalRequest ? error.originalRequest.getMethod() : "";
    var detail = serverMessage(error);
    var text;
    var folder = file.meta.folder;
    var name = file.meta.filename;
    if (status === 409 && method === "POST") {
      if (li.copyNumber && li.copyNumber < 100) { // "keep both" was chosen: find a free name
        keepBoth(file);
        return;
      }
      text = "A file called “" + name + "” is already in " + folder
             + ". Replace it, or keep both?";
      setState(li, "conflict", text);
      choice(li, "Replace the existing file", function () {
        retryAs(file, { overwrite: "true" });
      });
      choice(li, "Keep both (save this one as “" + keepBothName(file.name, 2) + "”)",
             function () { keepBoth(file); });
      uppy.setFileState(file.id, { error: text });
      return;
    }
    if (status === 413) {
      text = "Not uploaded: this file is too large (" + overLimit(file.size) + "). "
        + TOO_LARGE_HINT;
    } else if (status === 415) {
      text = "Not uploaded: the content of this file is not a kind the gateway accepts, "
             + "whatever its name says. Accepted: " + ACCEPTED + ".";
    } else if (status === 401) {
      text = "Not uploaded: you were signed out (after some time without activity). Sign in "
             + "again in a new tab, then press ↻ on the file: it goes on from where it stopped.";
    } else if (status === 403) {
      text = "Not uploaded: you may not upload here. " + detail;
    } else if (status === 400) {
      text = "Not uploaded: this folder or file name cannot be used. " + detail;
    } else if (status === 410 || status === 404) {
      text = "This upload expired or was removed. Remove the file from the list and add it again.";
    } else if (status === 423) {
      text = "This file is being uploaded in another tab or window. Wait, then press ↻.";
    } else if (status === 460) {
      text = "The file was damaged on the way. Press ↻ on the file to send it again.";
    } else if (status >= 500) {
      text = "The gateway could not store the file just now" + (detail ? " (" + detail + ")" : "")
             + ". Press ↻ on the file in a minute; if this happens again, tell the IT service desk.";
    } else {
      text = "The upload stopped: the connection was lost for too long. Press ↻ on the file "
             + "when the network is back: it goes on from " + li.bar.value + " %.";
    }
    setState(li, status >= 400 && status < 500 && status !== 401 && status !== 423
      ? "refused" : "failed", text);
    uppy.setFileState(file.id, { error: text });
  });

  window.addEventListener("offline", function () {
    Object.keys(rows).forEach(function (id) {
      var li = rows[id];
      if (li.dataset.state === "uploading" || li.dataset.state === "retrying") {
        setState(li, "retrying", "The network is gone. The upload waits and goes on by itself "
                 + "when the network is back: keep this page open.");
      }
    });
  });

  window.addEventListener("online", function () {
    Object.keys(rows).forEach(function (id) {
      var li = rows[id];
      if (li.dataset.state === "retrying") {
        li.samples = [];
        setState(li, "uploading", "The network is back: going on from " + li.bar.value + " %…");
      }
    });
  });

  // -- the file list below: refreshed when uploads finish -----------------------------------

  function fileHref(path, download) {
    return "/api/v1/files/" + path.split("/").map(encodeURIComponent).join("/")
           + (download ? "?download=1" : "");
  }

  function refreshList() {
    var table = document.querySelector("#file-list tbody");
    if (!table) return;
    var url = root.dataset.filesUrl + "?prefix=" + encodeURIComponent(root.dataset.prefix || "");
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (resp) { return resp.ok ? resp.json() : null; })
      .then(function (body) {
        if (!body || !body.objects) return;
        while (table.firstChild) table.removeChild(table.firstChild);
        if (!body.objects.length) {
          var empty = el("tr");
          var cell = el("td", "", "No files here yet.");
          cell.colSpan = 5;
          empty.appendChild(cell);
          table.appendChild(empty);
        }
        body.objects.forEach(function (o) {
          var tr = el("tr");
          var name = el("td");
          var link = el("a", "", o.path);
          link.href = fileHref(o.path, false);
          link.target = "_blank";
          link.rel = "noopener";
          name.appendChild(link);
          tr.appendChild(name);
          tr.appendChild(el("td", "", String(o.size)));
          tr.appendChild(el("td", "", o.content_type));
          tr.appendChild(el("td", "", o.created_at.slice(0, 16).replace("T", " ") + " UTC"));
          var dl = el("td");
          var dlink = el("a", "", "Download");
          dlink.href = fileHref(o.path, true);
          dl.appendChild(dlink);
          tr.appendChild(dl);
          table.appendChild(tr);
        });
      })
      .catch(function () { /* the list stays as it was; a reload shows the new files */ });
  }

  uppy.on("complete", function (result) {
    if (result && result.successful && result.successful.length) refreshList();
  });

  window.gatewayUploader = uppy; // for the browser tests and for support staff's console
})();
