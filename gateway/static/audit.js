// The audit view: queries /api/v1/audit with the form's filters and pages with the cursor.
(function () {
  const form = document.getElementById("audit-form");
  if (!form) return;
  const tbody = document.querySelector("#audit-list tbody");
  const more = document.getElementById("audit-more");
  const csv = document.getElementById("audit-csv");
  let next = null;
  function params(extra) {
    const p = new URLSearchParams();
    new FormData(form).forEach(function (v, k) { if (v) p.set(k, v); });
    Object.keys(extra || {}).forEach(function (k) { p.set(k, extra[k]); });
    return p;
  }
  function cell(text) { const td = document.createElement("td"); td.textContent = text == null ? "" : String(text); return td; }
  function load(append) {
    const p = params(append && next ? { after: next } : {});
    csv.href = "/api/v1/audit?" + params({ format: "csv" }).toString();
    fetch("/api/v1/audit?" + p.toString(), { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (body) {
        if (!append) tbody.textContent = "";
        (body.events || []).forEach(function (e) {
          const tr = document.createElement("tr");
          [e.occurred_at, e.user_email, e.action, e.outcome, e.object_path || e.object_id,
           e.http_status, e.bytes, e.client_addr].forEach(function (v) { tr.appendChild(cell(v)); });
          tbody.appendChild(tr);
        });
        next = body.next || null;
        more.hidden = !next;
      });
  }
  form.addEventListener("submit", function (e) { e.preventDefault(); load(false); });
  more.addEventListener("click", function () { load(true); });
  load(false);
})();
