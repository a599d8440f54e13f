/* The viewer: previews, sharing a link, rename or move, delete, a new version and the
   earlier versions of the file. */
(function () {
  "use strict";
  var GW = window.GW;
  var root = document.getElementById("viewer");
  if (!root) return;

  var path = root.getAttribute("data-path");
  var name = root.getAttribute("data-name");
  var folder = root.getAttribute("data-folder");
  var filesBase = root.getAttribute("data-files-base");
  var fileUrl = root.getAttribute("data-file-url");
  var apiPath = "/api/v1/files/" + GW.encodePath(path);
  var mediaError = document.getElementById("media-error");

  function showError(el, text) { el.textContent = text; el.hidden = false; }
  function viewUrl(p) { return filesBase + "view/" + GW.encodePath(p); }

  /* -- media that fails to load (session ended, file gone) says so ------------------------- */
  var player = document.getElementById("player");
  if (player) {
    player.addEventListener("error", function () {
      fetch(fileUrl, { method: "HEAD", credentials: "same-origin" }).then(function (resp) {
        var code = resp.status === 401 ? "unauthorized" : resp.ok ? "other" : "";
        showError(mediaError, resp.ok ? "This recording cannot be played in this browser. Download it instead."
          : GW.message(code, resp.status));
        if (resp.status === 401 && window.GWSession) window.GWSession.ended();
      }, function () { showError(mediaError, GW.message("network", 0)); });
    });
    player.addEventListener("playing", function () { if (window.GWSession) window.GWSession.touch(); });
    ["seeked", "progress"].forEach(function (name) {  // the player's Range requests
      player.addEventListener(name, function () { if (window.GWSession) window.GWSession.touch(); });
    });
  }

  /* -- previews of HEIC photos and TIFF scans, page by page ------------------------------- */
  var previewUrl = root.getAttribute("data-preview-url");
  if (previewUrl) {
    var img = document.getElementById("preview-image");
    var status = document.getElementById("preview-status");
    var pager = document.getElementById("preview-pager");
    var pageLabel = document.getElementById("preview-page");
    var prevPage = document.getElementById("preview-prev");
    var nextPage = document.getElementById("preview-next");
    var current = 0, pages = 1, objectUrl = null;

    var showPage = function (n) {
      status.textContent = "Preparing a preview…";
      status.hidden = false;
      return fetch(previewUrl + "?page=" + n, { credentials: "same-origin" }).then(function (resp) {
        if (!resp.ok) {
          return resp.json().catch(function () { return {}; }).then(function (data) {
            var err = data.error || {};
            throw new GW.ApiError(err.code || "no_preview", resp.status, err.message);
          });
        }
        pages = parseInt(resp.headers.get("X-Preview-Pages") || "1", 10) || 1;
        return resp.blob();
      }).then(function (blob) {
        if (objectUrl) URL.revokeObjectURL(objectUrl);
        objectUrl = URL.createObjectURL(blob);
        img.src = objectUrl;
        img.hidden = false;
        current = n;
        status.hidden = true;
        pager.hidden = pages < 2;
        pageLabel.textContent = "Page " + (current + 1) + " of " + pages;
      }).catch(function (err) {
        status.textContent = err.message || GW.message("no_preview", 415);
      });
    };
    var updatePager = function () {
      prevPage.disabled = current === 0;
      nextPage.disabled = current >= pages - 1;
    };
    prevPage.addEventListener("click", function () {
      GW.guard(prevPage, function () { return showPage(current - 1); }).then(updatePager);
    });
    nextPage.addEventListener("click", function () {
      GW.guard(nextPage, function () { return showPage(current + 1); }).then(updatePager);
    });
    showPage(0).then(updatePager);
  }

  /* -- share a link ------------------------------------------------------------------------ */
  var shareButton = document.getElementById("share-button");
  var shareResult = document.getElementById("share-result");
  var shareUrl = document.getElementById("share-url");
  var shareCopy = document.getElementById("share-copy");
  var shareExpires = document.getElementById("share-expires");
  shareButton.addEventListener("click", function () {
    GW.guard(shareButton, function () {
      return GW.api("POST", "/api/v1/links", { json: { path: path, method: "GET" } }).then(function (data) {
        shareUrl.value = data.url;
        shareExpires.setAttribute("datetime", data.expires_at);
        shareExpires.textContent = GW.formatDate(data.expires_at);
        shareResult.hidden = false;
        shareButton.textContent = "Make a new link";
        shareUrl.focus();
        shareUrl.select();
      }, function (err) { GW.showFlash(err.message, "error"); });
    });
  });
  shareCopy.addEventListener("click", function () {
    var done = function () { shareCopy.textContent = "Copied"; setTimeout(function () { shareCopy.textContent = "Copy link"; }, 2500); };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(shareUrl.value).then(done, function () {
        shareUrl.select(); document.execCommand("copy"); done();
      });
    } else {
      shareUrl.select(); document.execCommand("copy"); done();
    }
  });

  /* -- rename or move ---------------------------------------------------------------------- */
  var moveButton = document.getElementById("move-button");
  var moveDialog = document.getElementById("move-dialog");
  if (moveButton && moveDialog) {
    var moveForm = document.getElementById("move-form");
    var moveName = document.getElementById("move-name");
    var moveFolder = document.getElementById("move-folder");
    var moveError = document.getElementById("move-error");
    var moveSave = moveForm.querySelector('button[type="submit"]');
    moveButton.addEventListener("click", function () {
      moveName.value = name;
      moveFolder.value = folder;
      moveError.hidden = true;
      moveDialog.showModal();
      moveName.focus();
      var dot = name.lastIndexOf(".");
      moveName.setSelectionRange(0, dot > 0 ? dot : name.length);
    });
    moveForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var newName = moveName.value.trim();
      var newFolder = moveFolder.value.trim().replace(/^\/+/, "");
      if (!newName || /[\/\\]/.test(newName)) {
        showError(moveError, "Type a file name without slashes.");
        return;
      }
      if (newFolder && newFolder.slice(-1) !== "/") newFolder += "/";
      var to = newFolder + newName;
      if (to === path) { moveDialog.close(); return; }
      GW.guard(moveSave, function () {
        return GW.api("POST", apiPath + "/move", { json: { to: to, overwrite: false } }).then(function (obj) {
          GW.flashNext(obj.path.slice(0, obj.path.lastIndexOf("/") + 1) === folder ? "Renamed." : "Moved to " + newFolder + ".");
          window.location.href = viewUrl(obj.path);
        }, function (err) {
          showError(moveError, err.code === "conflict"
            ? "A file with this name is already in that folder. Choose another name." : err.message);
        });
      });
    });
  }

  /* -- delete ------------------------------------------------------------------------------ */
  var deleteButton = document.getElementById("delete-button");
  var deleteDialog = document.getElementById("delete-dialog");
  if (deleteButton && deleteDialog) {
    var deleteForm = document.getElementById("delete-form");
    var deleteError = document.getElementById("delete-error");
    var deleteConfirm = deleteForm.querySelector('button[type="submit"]');
    deleteButton.addEventListener("click", function () {
      deleteError.hidden = true;
      deleteDialog.showModal();
      deleteForm.querySelector(".js-close").focus();
    });
    deleteForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      GW.guard(deleteConfirm, function () {
        return GW.api("DELETE", apiPath).then(function () {
          GW.flashNext("“" + name + "” was moved to the trash. You can restore it from the trash.");
          window.location.href = filesBase + GW.encodePath(folder);
        }, function (err) { showError(deleteError, err.message); });
      });
    });
  }

  /* -- a new version ----------------------------------------------------------------------- */
  var replaceInput = document.getElementById("replace-input");
  if (replaceInput) {
    replaceInput.addEventListener("change", function () {
      var file = replaceInput.files && replaceInput.files[0];
      if (!file) return;
      replaceInput.disabled = true;
      GW.showFlash("Uploading the new version…", "info");
      GW.api("PUT", apiPath + "?overwrite=true", { body: file }).then(function () {
        GW.flashNext("The new version is saved. The previous one is listed under Earlier versions.");
        window.location.reload();
      }, function (err) {
        replaceInput.disabled = false;
        replaceInput.value = "";
        GW.showFlash(err.message, "error");
      });
    });
  }

  /* -- earlier versions -------------------------------------------------------------------- */
  var versionsSection = document.getElementById("versions-section");
  var versionsList = document.getElementById("versions");
  GW.api("GET", apiPath + "/versions").then(function (data) {
    var list = data.objects || [];
    if (!list.length) return;
    list.forEach(function (v) {
      var li = document.createElement("li");
      var time = document.createElement("time");
      time.setAttribute("datetime", v.created_at);
      time.textContent = GW.formatDate(v.created_at);
      li.appendChild(time);
      li.appendChild(document.createTextNode(" · " + GW.humanSize(v.size) + " · " + (v.created_by || "unknown") + " "));
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = "Restore this version";
      b.setAttribute("aria-label", "Restore the version of " + GW.formatDate(v.created_at));
      b.addEventListener("click", function () {
        GW.guard(b, function () {
          return GW.api("POST", apiPath + "/versions/" + encodeURIComponent(v.id) + "/restore").then(function () {
            GW.flashNext("The earlier version is back. The version it replaced is kept under Earlier versions.");
            window.location.reload();
          }, function (err) { GW.showFlash(err.message, "error"); });
        });
      });
      li.appendChild(b);
      versionsList.appendChild(li);
    });
    versionsSection.hidden = false;
  }, function () { /* versions are extra: the viewer works without them */ });

  /* keyboard: arrow keys go to the previous / next file when nothing else uses them */
  document.addEventListener("keydown", function (ev) {
    if (ev.altKey || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    var t = ev.target;
    if (t && (t.closest("input, textarea, select, video, audio, dialog, iframe"))) return;
    var rel = ev.key === "ArrowLeft" ? "prev" : ev.key === "ArrowRight" ? "next" : null;
    var link = rel && document.querySelector('.prevnext a[rel="' + rel + '"]');
    if (link) window.location.href = link.href;
  });
})();
