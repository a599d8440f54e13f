// The audit console and the history pages: asks the form's API (data-api) with the form's
// filters, shows the count, pages with the cursor, and puts a refused filter's message next
// to that filter (never an empty table for a bad filter). Times typed in the user's time zone
// are sent as UTC ISO 8601; times shown are in the user's time zone (UTC in the tooltip).
(function () {
  "use strict";
  const form = document.getElementById("audit-form");
  if (!form) return;
  const api = form.dataset.api;
  const PAGE = 50;
  const tbody = document.querySelector("#audit-list tbody");
  const table = document.getElementById("audit-list");
  const summary = document.getElementById("audit-summary");
  const prev = document.getElementById("audit-prev");
  const nextBtn = document.getElementById("audit-next");
  const pageLabel = document.getElementById("audit-page");
  const csv = document.getElementById("audit-csv");
  const pdf = document.getElementById("audit-pdf");
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  document.querySelectorAll(".tz-name").forEach(function (el) { el.textContent = tz; });
  const whenHead = table.querySelector("thead th");
  if (whenHead) whenHead.textContent = "When (" + tz + ")";
  const heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) { return th.textContent; });
  let cursors = [null]; // the cursor of each page seen so far (page 1 has none)
  let next = null;
  let total = null;

  function field(name) { return form.elements.namedItem(name); }
  function pad(n) { return String(n).padStart(2, "0"); }
  function toLocalInput(iso) { // UTC ISO -> the value of a datetime-local input
    const d = new Date(iso);
    if (isNaN(d)) return "";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function toUtc(value) { // a datetime-local value (the user's zone) -> UTC ISO 8601
    if (!value) return "";
    const d = new Date(value);
    return isNaN(d) ? value : d.toISOString(); // an unreadable value goes as typed: the API says why
  }
  function when(iso) {
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit",
      second: "2-digit" });
  }

  // the page's own address may carry filters (the review dashboard links here with them)
  const start = new URLSearchParams(window.location.search);
  start.forEach(function (value, key) {
    if (key === "name" || key === "path") key = "file";
    const el = field(key);
    if (!el) return;
    if (el.type === "checkbox") el.checked = value === "1";
    else if (el.type === "datetime-local") el.value = toLocalInput(value);
    else if (el.tagName === "SELECT" && !Array.prototype.some.call(el.options, function (o) { return o.value === value; })) {
      const o = document.createElement("option"); o.value = value; o.textContent = value; el.appendChild(o); el.value = value;
    } else el.value = value;
  });

  function filters() {
    const p = new URLSearchParams();
    const data = new FormData(form);
    data.forEach(function (v, k) {
      v = String(v).trim();
      if (!v) return;
      if (k === "file") p.set(v.indexOf("/") >= 0 ? "path" : "name", v.replace(/^\/+/, ""));
      else if (k === "since" || k === "until") p.set(k, toUtc(v));
      else p.set(k, v);
    });
    if (!field("hide_mine") || !field("hide_mine").checked) p.delete("hide_mine");
    if (form.dataset.prefix) p.set("prefix", form.dataset.prefix);
    return p;
  }
  function cell(text, href) {
    const td = document.createElement("td");
    const value = text == null ? "" : String(text);
    if (href && value) {
      const a = document.createElement("a");
      a.href = href; a.textContent = value; td.appendChild(a);
    } else td.textContent = value;
    return td;
  }
  function clearErrors() {
    form.querySelectorAll(".field-error").forEach(function (el) { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }
  function showError(name, message) {
    let target = null;
    form.querySelectorAll(".field-error").forEach(function (el) {
      if (!target && name && (el.dataset.for || "").split(" ").indexOf(name) >= 0) target = el;
    });
    if (!target) target = form.querySelector('.field-error[data-for="*"]');
    target.textContent = message;
    const input = target.parentElement && target.parentElement.querySelector("input, select");
    if (input && target.dataset.for !== "*") { input.setAttribute("aria-invalid", "true"); input.focus(); }
    tbody.textContent = "";
    table.hidden = true;
    summary.textContent = "Nothing was searched: correct the filter marked above.";
    prev.disabled = nextBtn.disabled = true;
    csv.hidden = pdf.hidden = true;
  }
  function exports(p) {
    const e = new URLSearchParams(p);
    ["count", "after", "limit"].forEach(function (k) { e.delete(k); });
    e.set("format", "csv"); csv.href = api + "?" + e.toString();
    e.set("format", "pdf"); pdf.href = api + "?" + e.toString();
    csv.hidden = pdf.hidden = false;
  }
  function load(pageIndex) {
    clearErrors();
    const p = filters();
    const after = cursors[pageIndex];
    const q = new URLSearchParams(p);
    q.set("limit", String(PAGE));
    q.set("count", "1");
    if (after != null) q.set("after", String(after));
    summary.textContent = "Searching…";
    tbody.textContent = ""; // no stale rows under new filters
    const ticket = ++asked;
    fetch(api + "?" + q.toString(), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) { return { r: r, body: body }; });
      })
      .then(function (res) {
        if (ticket !== asked) return; // a newer search is on its way
        if (!res.r.ok) {
          const msg = (res.body.error && res.body.error.message) || ("the search failed (HTTP " + res.r.status + ")");
          showError(res.r.status === 400 ? res.r.headers.get("X-Audit-Filter") : null, msg);
          return;
        }
        const body = res.body;
        table.hidden = false;
        tbody.textContent = "";
        (body.events || []).forEach(function (e) {
          const tr = document.createElement("tr");
          const whenCell = cell(when(e.occurred_at)); whenCell.title = e.occurred_at + " (UTC)";
          tr.appendChild(whenCell);
          tr.appendChild(cell(e.user_email || (e.user_id != null ? "user " + e.user_id : ""),
                              e.user_id != null ? "/audit/users/" + e.user_id : null));
          tr.appendChild(cell(e.action));
          tr.appendChild(cell(e.outcome));
          tr.appendChild(cell(e.object_path || e.object_id, e.object_id ? "/audit/objects/" + encodeURIComponent(e.object_id) : null));
          [e.http_status, e.bytes, e.client_addr].forEach(function (v) { tr.appendChild(cell(v)); });
          Array.prototype.forEach.call(tr.children, function (td, i) { td.dataset.label = heads[i] || ""; });
          tr.dataset.seq = e.seq;
          tr.className = "outcome-" + e.outcome;
          tbody.appendChild(tr);
        });
        const subject = document.getElementById("history-subject");
        const first = (body.events || []).find(function (e) { return e.object_path; });
        if (subject && form.dataset.kind === "object" && first) subject.textContent = first.object_path;
        total = body.count;
        next = body.next || null;
        cursors = cursors.slice(0, pageIndex + 1);
        if (next != null) cursors.push(next);
        const pages = Math.max(1, Math.ceil((total || 0) / PAGE));
        current = pageIndex;
        pageLabel.textContent = "Page " + (pageIndex + 1) + " of " + pages;
        prev.disabled = pageIndex === 0;
        nextBtn.disabled = next == null;
        summary.textContent = total === 0 ? "No event matches these filters." :
          (total === 1 ? "1 event matches" : total + " events match") +
          (total > PAGE ? "; showing " + (pageIndex * PAGE + 1) + "–" + (pageIndex * PAGE + (body.events || []).length) : "") + ".";
        exports(p);
        const shown = new URLSearchParams(p); shown.delete("prefix");
        if (form.dataset.prefix) shown.set("prefix", form.dataset.prefix);
        history.replaceState(null, "", window.location.pathname + (shown.toString() ? "?" + shown.toString() : ""));
      })
      .catch(function () { showError(null, "The gateway could not be reached; try again."); });
  }
  let current = 0;
  let asked = 0;
  form.addEventListener("submit", function (e) { e.preventDefault(); cursors = [null]; load(0); });
  form.addEventListener("reset", function () { setTimeout(function () { cursors = [null]; load(0); }, 0); });
  prev.addEventListener("click", function () { if (current > 0) load(current - 1); });
  nextBtn.addEventListener("click", function () { if (next != null) load(current + 1); });

  // user suggestions: the organisation's users whose address contains what is typed
  const userBox = field("user");
  const list = document.getElementById("user-suggestions");
  let timer = null;
  if (userBox && list) {
    userBox.addEventListener("input", function () {
      clearTimeout(timer);
      const q = userBox.value.trim();
      if (!q || /^\d+$/.test(q)) return;
      timer = setTimeout(function () {
        fetch("/api/v1/audit/users?q=" + encodeURIComponent(q), { headers: { Accept: "application/json" } })
          .then(function (r) { return r.ok ? r.json() : { users: [] }; })
          .then(function (body) {
            list.textContent = "";
            (body.users || []).forEach(function (u) {
              const o = document.createElement("option");
              o.value = u.email; o.label = u.role + (u.active ? "" : ", deactivated");
              list.appendChild(o);
            });
          });
      }, 200);
    });
  }
  load(0);
})();
