/* The idle sign-out: a warning a minute before it, with "Stay signed in"; after it, the
   sign-in page, which says why and returns here. Only requests count as activity (that is
   what the gateway measures), so every API call of the file app calls GWSession.touch(). */
(function () {
  "use strict";
  var body = document.body;
  var idle = parseInt(body.getAttribute("data-idle-seconds") || "", 10);
  if (!idle) return;  // not signed in
  var WARN = Math.min(60, Math.max(10, Math.floor(idle / 2)));  // seconds before the end
  var MARGIN = 2;  // the gateway's clock decides; ask a little after it has
  var KEY = "gw.lastActivity";
  var warnTimer = null, endTimer = null, tick = null, box = null, ended = false;

  function now() { return Date.now(); }
  function lastActivity() {
    var mine = window.__gwLast || now();
    var shared = 0;
    try { shared = parseInt(localStorage.getItem(KEY) || "0", 10) || 0; } catch (e) { /* ignore */ }
    return Math.max(mine, shared);
  }

  function touch() {
    if (ended) return;
    window.__gwLast = now();
    try { localStorage.setItem(KEY, String(window.__gwLast)); } catch (e) { /* ignore */ }
    hideWarning();
    schedule();
  }

  function schedule() {
    clearTimeout(warnTimer); clearTimeout(endTimer);
    var left = idle * 1000 - (now() - lastActivity());
    warnTimer = setTimeout(maybeWarn, Math.max(0, left - WARN * 1000));
    endTimer = setTimeout(maybeEnd, Math.max(0, left + MARGIN * 1000));
  }

  function secondsLeft() { return Math.max(0, Math.round((idle * 1000 - (now() - lastActivity())) / 1000)); }

  function maybeWarn() {
    if (secondsLeft() > WARN + 1) { schedule(); return; }  // another tab was active
    showWarning();
  }

  function buildBox() {
    box = document.createElement("div");
    box.className = "idle-warning";
    box.setAttribute("role", "alertdialog");
    box.setAttribute("aria-labelledby", "idle-warning-text");
    var p = document.createElement("p");
    p.id = "idle-warning-text";
    box.appendChild(p);
    var stay = document.createElement("button");
    stay.type = "button";
    stay.id = "stay-signed-in";
    stay.className = "primary";
    stay.textContent = "Stay signed in";
    stay.addEventListener("click", function () {
      stay.disabled = true;
      fetch("/api/v1/session", { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (resp) {
          stay.disabled = false;
          if (resp.ok) touch(); else end();
        }, function () {
          stay.disabled = false;
          p.textContent = "No connection to the file service. Check the network and try again.";
        });
    });
    box.appendChild(stay);
    document.body.appendChild(box);
  }

  function showWarning() {
    if (!box) buildBox();
    var text = box.querySelector("p");
    var update = function () {
      var s = secondsLeft();
      text.textContent = "You will be signed out in " + s + (s === 1 ? " second" : " seconds") +
        " because there has been no activity. Choose Stay signed in to keep working.";
    };
    update();
    clearInterval(tick);
    tick = setInterval(update, 1000);
    var wasHidden = box.hidden !== false || !box.classList.contains("shown");
    box.hidden = false;
    box.classList.add("shown");
    if (wasHidden) box.querySelector("button").focus();
  }

  function hideWarning() {
    clearInterval(tick);
    if (box) { box.hidden = true; box.classList.remove("shown"); }
  }

  function maybeEnd() {
    if (secondsLeft() > 0) { schedule(); return; }
    // Ask once: the gateway ends the session (401) and the sign-in page says why.
    fetch("/api/v1/session", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) { if (resp.ok) touch(); else end(); }, function () { schedule(); });
  }

  function end(reason) {
    if (ended) return;
    ended = true;
    clearTimeout(warnTimer); clearTimeout(endTimer); clearInterval(tick);
    var here = window.location.pathname + window.location.search;
    window.location.href = "/login?" + (reason === false ? "" : "reason=idle&") + "next=" + encodeURIComponent(here);
  }

  /* Every request this page makes counts as activity at the gateway: fetch and XHR (the
     uploader, the audit console) tell the timer too. */
  if (window.fetch) {
    var plainFetch = window.fetch;
    window.fetch = function () {
      return plainFetch.apply(this, arguments).then(function (resp) {
        if (resp.status !== 401) touch();
        return resp;
      });
    };
  }
  if (window.XMLHttpRequest) {
    var plainSend = XMLHttpRequest.prototype.send;
    XMLHttpRequest.prototype.send = function () {
      this.addEventListener("loadend", function () { if (this.status && this.status !== 401) touch(); });
      return plainSend.apply(this, arguments);
    };
  }

  window.GWSession = { touch: touch, ended: end, secondsLeft: secondsLeft };
  window.__gwLast = now();  // this page's own request
  try { localStorage.setItem(KEY, String(window.__gwLast)); } catch (e) { /* ignore */ }
  window.addEventListener("storage", function (ev) { if (ev.key === KEY) { hideWarning(); schedule(); } });
  schedule();
})();
