// The review dashboard: counts of what to look at first, each linking to its events in the
// audit console, and the chain's last verification with a button that runs one now.
(function () {
  "use strict";
  const form = document.getElementById("review-form");
  if (!form) return;
  const items = document.getElementById("review-items");
  const errorBox = document.getElementById("review-error");
  const windowLabel = document.getElementById("review-window");
  const bulk = document.getElementById("bulk");
  const bulkBody = document.querySelector("#bulk-list tbody");
  const last = document.getElementById("verify-last");
  const button = document.getElementById("verify-now");
  const result = document.getElementById("verify-result");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function when(iso) { const d = new Date(iso); return isNaN(d) ? iso : d.toLocaleString(); }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function link(filters, extra) {
    const p = new URLSearchParams(filters);
    Object.keys(extra || {}).forEach(function (k) { p.set(k, extra[k]); });
    p.delete("until"); // the dashboard counts up to now: so does the list, with what came since
    p.set("hide_mine", "1");
    return "/audit?" + p.toString();
  }
  function showLast(v) {
    if (!v) { last.textContent = "The audit trail of your organisation has not been verified yet."; last.className = "warn"; return; }
    const ok = v.outcome === "success";
    last.textContent = "Last verified " + when(v.occurred_at) + " by " + (v.user_email || "the command line") + ": " +
      (ok ? "intact" + (v.rows != null ? " (" + v.rows + " rows)" : "") : "ALTERED" +
        (v.fault ? " at row " + v.fault.seq + " (" + v.fault.reason + ")" : "")) + ".";
    last.className = ok ? "ok" : "bad";
  }
  function load() {
    const days = Number(form.elements.namedItem("days").value || 7);
    const since = new Date(Date.now() - days * 86400000).toISOString();
    errorBox.hidden = true;
    fetch("/api/v1/audit/review?since=" + encodeURIComponent(since), { headers: { Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { r: r, b: b }; }); })
      .then(function (res) {
        if (!res.r.ok) { errorBox.textContent = res.b.error ? res.b.error.message : "HTTP " + res.r.status; errorBox.hidden = false; return; }
        const body = res.b;
        windowLabel.textContent = when(body.since) + " – " + when(body.until);
        items.textContent = "";
        body.items.forEach(function (item) {
          const li = document.createElement("li");
          li.dataset.key = item.key;
          li.className = item.count ? "attention" : "quiet";
          const count = document.createElement("span"); count.className = "count"; count.textContent = String(item.count);
          const a = document.createElement("a"); a.href = link(item.filters); a.textContent = item.title;
          li.appendChild(count); li.appendChild(a);
          const notes = {
            login_failed: "a wrong password, an unknown address or a deactivated account",
            throttled: "too many attempts from one address or for one account",
            denied: "every refusal, failed sign-ins included",
            integrity: "a stored file failed its integrity check",
            bulk: "more than " + body.settings.bulk_files + " files or " + bytes(body.settings.bulk_bytes) + " by one user in an hour",
            outside_hours: "working hours " + body.settings.working_hours + " (" + body.settings.timezone + ")"
          };
          if (notes[item.key]) {
            const s = document.createElement("small");
            s.className = "note"; s.textContent = notes[item.key];
            li.appendChild(s);
          }
          items.appendChild(li);
          if (item.key === "bulk") {
            bulkBody.textContent = "";
            document.getElementById("bulk-rule").textContent = "More than " + body.settings.bulk_files +
              " files or " + bytes(body.settings.bulk_bytes) + " fetched by one user in one clock hour (UTC).";
            item.rows.forEach(function (row) {
              const tr = document.createElement("tr");
              const hourEnd = new Date(new Date(row.hour).getTime() + 3600000).toISOString();
              const u = document.createElement("td"); const ua = document.createElement("a");
              ua.href = "/audit/users/" + row.user_id + "?" + new URLSearchParams({ action: item.filters.action, since: row.hour, until: hourEnd, hide_mine: "1" }).toString();
              ua.textContent = row.user_email || ("user " + row.user_id); u.appendChild(ua); tr.appendChild(u);
              [when(row.hour), row.files, bytes(row.bytes)].forEach(function (v) { const td = document.createElement("td"); td.textContent = String(v); tr.appendChild(td); });
              ["User", "Hour", "Files", "Bytes"].forEach(function (h, i) { tr.children[i].dataset.label = h; });
              bulkBody.appendChild(tr);
            });
            bulk.hidden = item.rows.length === 0;
          }
        });
        showLast(body.last_verification);
      })
      .catch(function () { errorBox.textContent = "The gateway could not be reached; try again."; errorBox.hidden = false; });
  }
  button.addEventListener("click", function () {
    button.disabled = true;
    result.textContent = "Verifying every row of your organisation's audit trail…";
    result.className = "";
    fetch("/api/v1/audit/verify", { method: "POST", headers: { "X-CSRFToken": csrf, Accept: "application/json" } })
      .then(function (r) { return r.json().then(function (b) { return { r: r, b: b }; }); })
      .then(function (res) {
        const b = res.b;
        if (!res.r.ok) { result.textContent = b.error ? b.error.message : "HTTP " + res.r.status; result.className = "bad"; return; }
        result.textContent = b.ok
          ? "Intact: " + b.rows + " rows checked, compared with " + b.anchors_compared + " anchor(s) in the bucket" +
            (b.anchored ? "; its newest row is now anchored in the bucket" : "") + "." + (b.bucket_problem ? " Note: " + b.bucket_problem : "")
          : "ALTERED: " + (b.fault ? b.fault.message + " [" + b.fault.reason + "]" : "see the command line") + ".";
        result.className = b.ok ? "ok" : "bad";
        load();
      })
      .finally(function () { button.disabled = false; });
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); load(); });
  form.elements.namedItem("days").addEventListener("change", load);
  load();
})();
