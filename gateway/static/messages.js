/* The file app's shared helpers: API calls (with the CSRF header), the plain-language
   messages for every API error code, sizes, dates and type icons. */
(function () {
  "use strict";

  function maxUploadMb() {
    var el = document.querySelector("[data-max-upload-mb]");
    return el ? el.getAttribute("data-max-upload-mb") : "";
  }

  var TEXT = {
    conflict: "A file with this name is already in that folder. Choose another name, or replace the other file.",
    too_large: function () {
      var mb = maxUploadMb();
      return mb ? "This file is too large. Files can be at most " + mb + " MB." : "This file is too large.";
    },
    unsupported_type: "This type of file cannot be stored. Photos, scans, PDFs, office documents, audio, video and text or CSV files can.",
    not_found: "This file or folder no longer exists. It may have been moved, renamed or deleted.",
    forbidden: "You are not allowed to do this. Only the person who uploaded a file, or an administrator, can change or delete it.",
    unauthorized: "Your session has ended. Please sign in again.",
    session_expired: "Your session has ended. Please sign in again.",
    csrf_failed: "This page is out of date. Reload the page and try again.",
    bad_path: "This name cannot be used. Use letters, numbers, spaces, dots and dashes; a folder must be inside Uploads, Documents, Signatures or Templates.",
    link_expired: "This link has expired. Ask for a new link.",
    bad_link: "This link is not valid.",
    range_not_satisfiable: "This part of the file could not be loaded. Reload the page and try again.",
    no_preview: "A preview of this file cannot be made. Download it instead.",
    integrity_failure: "This file failed its safety check and is not shown. Please report it to the IT service desk.",
    storage_failure: "The file store is not answering right now. Try again in a few minutes; if it keeps happening, call the IT service desk.",
    keyring_unavailable: "The file service is not available right now. Try again in a few minutes; if it keeps happening, call the IT service desk.",
    audit_unavailable: "The file service is not available right now. Try again in a few minutes; if it keeps happening, call the IT service desk.",
    network: "No connection to the file service. Check the network connection and try again.",
    other: "Something went wrong. Please try again."
  };

  /* The sentence for an API error code; ``status`` decides when the code is unknown. */
  function message(code, status) {
    var text = TEXT[code];
    if (!text) {
      if (status === 401) text = TEXT.unauthorized;
      else if (status === 403) text = TEXT.forbidden;
      else if (status === 404) text = TEXT.not_found;
      else if (status === 409) text = TEXT.conflict;
      else if (status === 413) text = TEXT.too_large;
      else if (status === 415) text = TEXT.unsupported_type;
      else if (status >= 500) text = TEXT.storage_failure;
      else text = TEXT.other;
    }
    return typeof text === "function" ? text() : text;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function ApiError(code, status, detail) {
    this.code = code;
    this.status = status;
    this.detail = detail || "";
    this.message = message(code, status);
  }
  ApiError.prototype = Object.create(Error.prototype);

  /* fetch() an API URL; resolves with the JSON answer (null when empty), rejects with an
     ApiError whose .message is the plain sentence. */
  function api(method, url, options) {
    options = options || {};
    var headers = { "Accept": "application/json" };
    if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
    var body = options.body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    return fetch(url, { method: method, headers: headers, body: body, credentials: "same-origin" })
      .catch(function () { throw new ApiError("network", 0); })
      .then(function (resp) {
        if (window.GWSession) window.GWSession.touch();
        var type = resp.headers.get("Content-Type") || "";
        var parsed = type.indexOf("application/json") === 0 ? resp.json() : Promise.resolve(null);
        return parsed.catch(function () { return null; }).then(function (data) {
          if (resp.ok) return data;
          var err = data && data.error ? data.error : {};
          var e = new ApiError(err.code || "", resp.status, err.message);
          if (resp.status === 401 && window.GWSession) window.GWSession.ended(e.code === "session_expired" ? "idle" : false);
          throw e;
        });
      });
  }

  /* Run ``work`` (returning a promise) with ``button`` disabled, so it cannot run twice. */
  function guard(button, work) {
    if (button && button.disabled) return Promise.resolve();
    if (button) { button.disabled = true; button.setAttribute("aria-busy", "true"); }
    var done = function () {
      if (button) { button.disabled = false; button.removeAttribute("aria-busy"); }
    };
    var p;
    try { p = Promise.resolve(work()); } catch (e) { p = Promise.reject(e); }
    return p.then(function (v) { done(); return v; }, function (e) { done(); throw e; });
  }

  function humanSize(bytes) {
    bytes = Number(bytes);
    if (!isFinite(bytes)) return "";
    if (bytes < 1024) return bytes + (bytes === 1 ? " byte" : " bytes");
    var units = ["KB", "MB", "GB", "TB"];
    var value = bytes / 1024, i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i++; }
    var text = value >= 100 ? Math.round(value).toString() : value.toFixed(1).replace(/\.0$/, "");
    return text + " " + units[i];
  }

  var dateFormat = null;
  function formatDate(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return iso;
    if (!dateFormat) {
      try {
        dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
      } catch (e) {
        dateFormat = new Intl.DateTimeFormat();
      }
    }
    return dateFormat.format(d);
  }

  function iconFor(type) {
    type = type || "";
    if (type === "application/pdf") return "i-pdf";
    if (type.indexOf("image/") === 0) return "i-image";
    if (type.indexOf("video/") === 0) return "i-video";
    if (type.indexOf("audio/") === 0) return "i-audio";
    if (/spreadsheet|excel|csv|tab-separated/.test(type)) return "i-sheet";
    if (/word|document|rtf|text\/plain|presentation|powerpoint/.test(type)) return "i-doc";
    return "i-file";
  }

  var SVG = "http://www.w3.org/2000/svg";
  function icon(id, extraClass) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "icon" + (extraClass ? " " + extraClass : ""));
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var use = document.createElementNS(SVG, "use");
    use.setAttribute("href", "#" + id);
    svg.appendChild(use);
    return svg;
  }

  /* An object path as a URL path: each segment percent-encoded. */
  function encodePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }

  /* Sizes, dates and icons rendered by the server, made friendly. */
  function localize(root) {
    root = root || document;
    root.querySelectorAll("time.js-local[datetime]").forEach(function (t) {
      t.textContent = formatDate(t.getAttribute("datetime"));
    });
    root.querySelectorAll(".js-size[data-bytes]").forEach(function (el) {
      el.textContent = humanSize(el.getAttribute("data-bytes"));
    });
    root.querySelectorAll("svg.js-type-icon[data-type]").forEach(function (svg) {
      var use = svg.querySelector("use");
      if (use) use.setAttribute("href", "#" + iconFor(svg.getAttribute("data-type")));
    });
  }

  /* A message shown on the next page this tab opens (after a redirect). */
  function flashNext(text) {
    try { sessionStorage.setItem("gw.flash", text); } catch (e) { /* private mode */ }
  }
  function showFlash(text, kind) {
    var slot = document.getElementById("flash-slot");
    if (!slot) return;
    slot.textContent = text;
    slot.className = "flash " + (kind || "info");
    slot.hidden = false;
  }

  /* Close buttons of <dialog>s, and Escape (native). */
  function wireDialogs() {
    document.querySelectorAll("dialog .js-close").forEach(function (b) {
      b.addEventListener("click", function () { b.closest("dialog").close(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localize(document);
    wireDialogs();
    var pending = null;
    try { pending = sessionStorage.getItem("gw.flash"); sessionStorage.removeItem("gw.flash"); } catch (e) { /* ignore */ }
    if (pending) showFlash(pending, "info");
  });

  window.GW = {
    api: api, ApiError: ApiError, message: message, guard: guard, humanSize: humanSize,
    formatDate: formatDate, iconFor: iconFor, icon: icon, encodePath: encodePath,
    localize: localize, flashNext: flashNext, showFlash: showFlash, csrfToken: csrfToken
  };
})();
