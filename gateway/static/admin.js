// The admin console: users, API tokens, key versions, rotation jobs and storage health, from
// /api/v1/admin/... Destructive actions ask for confirmation; tokens, passwords and reset
// links are shown once in the "Shown once" box.
(function () {
  "use strict";
  const users = document.querySelector("#users tbody");
  if (!users) return;
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const statusLine = document.getElementById("admin-status");
  const secret = document.getElementById("admin-secret");
  const secretValue = document.getElementById("admin-secret-value");
  const secretLabel = document.getElementById("admin-secret-label");
  const tokens = document.querySelector("#tokens tbody");
  const tokenUser = document.getElementById("token-user");
  const tokenFilter = document.getElementById("token-filter");
  const me = Number(document.getElementById("users").getAttribute("data-me"));
  let userList = [];

  function say(text, isError) {
    statusLine.textContent = text;
    statusLine.className = "status" + (isError ? " error" : " ok");
  }

  function api(method, path, body) {
    const opts = { method: method, headers: { Accept: "application/json" }, credentials: "same-origin" };
    if (method !== "GET") opts.headers["X-CSRFToken"] = csrf;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch("/api/v1/admin" + path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) {
          const msg = (data.error && data.error.message) || ("request failed (" + r.status + ")");
          if (r.status === 401) window.location.assign("/login?next=/admin");
          throw new Error(msg);
        }
        return data;
      });
    });
  }

  function when(v) { return v ? v.replace("T", " ").replace("Z", " UTC") : "never"; }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(tbody, labels, cells) {
    const tr = document.createElement("tr");
    cells.forEach(function (c, i) {
      const td = document.createElement("td");
      td.setAttribute("data-label", labels[i]);
      if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "" : String(c);
      tr.appendChild(td);
    });
    tbody.appendChild(tr);
    return tr;
  }
  function labelsOf(table) {
    return Array.prototype.map.call(document.querySelectorAll("#" + table + " thead th"),
      function (th) { return th.textContent; });
  }
  function button(text, label, onClick, cls) {
    const b = el("button", text, cls);
    b.type = "button";
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }
  function showSecret(label, value) {
    secretLabel.textContent = label;
    secretValue.value = value;
    secret.hidden = false;
    secret.scrollIntoView({ block: "nearest" });
    secretValue.focus();
    secretValue.select();
  }
  function fail(err) { say(err.message, true); }

  // --- users ---------------------------------------------------------------------------
  function loadUsers() {
    return api("GET", "/users").then(function (data) {
      userList = data.users;
      users.textContent = "";
      const labels = labelsOf("users");
      data.users.forEach(function (u) {
        const role = document.createElement("select");
        role.setAttribute("aria-label", "Role of " + u.email);
        ["staff", "auditor", "admin"].forEach(function (r) {
          const o = el("option", r); o.value = r; o.selected = r === u.role; role.appendChild(o);
        });
        role.addEventListener("change", function () {
          if (!window.confirm("Change the role of " + u.email + " from " + u.role + " to " + role.value + "?")) {
            role.value = u.role; return;
          }
          api("PATCH", "/users/" + u.id, { role: role.value })
            .then(function () { say(u.email + " is now " + role.value + "."); return loadUsers(); })
            .catch(function (e) { role.value = u.role; fail(e); });
        });
        const actions = el("div", null, "actions");
        if (u.id === me) {
          role.disabled = true;  // an admin cannot demote or deactivate themself
          actions.appendChild(el("span", "your account", "note"));
        }
        if (u.active && u.id !== me) {
          actions.appendChild(button("Deactivate", "Deactivate " + u.email, function () {
            if (!window.confirm("Deactivate " + u.email + "? Their sessions end, their API tokens are revoked and their links stop working at once.")) return;
            api("PATCH", "/users/" + u.id, { active: false })
              .then(function () { say(u.email + " is deactivated."); return refreshAccounts(); })
              .catch(fail);
          }, "danger"));
          actions.appendChild(button("Reset link", "Reset link for " + u.email, function () {
            if (!window.confirm("Create a one-time password-reset link for " + u.email + "? An earlier unused link stops working.")) return;
            api("POST", "/users/" + u.id + "/reset-password", { method: "link" })
              .then(function (d) { showSecret("One-time reset link for " + u.email + ", valid until " + when(d.expires_at) + ":", d.reset_url); say("Reset link created for " + u.email + "."); })
              .catch(fail);
          }));
          actions.appendChild(button("New password", "Set a random password for " + u.email, function () {
            if (!window.confirm("Replace the password of " + u.email + " with a random one? Their browser sessions end.")) return;
            api("POST", "/users/" + u.id + "/reset-password", { method: "password" })
              .then(function (d) { showSecret("New password for " + u.email + ":", d.password); say("Password of " + u.email + " replaced."); })
              .catch(fail);
          }));
        } else if (!u.active) {
          actions.appendChild(button("Reactivate", "Reactivate " + u.email, function () {
            if (!window.confirm("Reactivate " + u.email + "? They can sign in again (their old API tokens stay revoked).")) return;
            api("PATCH", "/users/" + u.id, { active: true })
              .then(function () { say(u.email + " is active again."); return refreshAccounts(); })
              .catch(fail);
          }));
        }
        actions.appendChild(button("Tokens", "Show the API tokens of " + u.email, function () {
          tokenFilter.value = String(u.id); loadTokens();
          document.getElementById("tokens-title").scrollIntoView();
        }));
        const tr = row(users, labels, [u.email, role, u.active ? "active" : "deactivated",
          when(u.created_at), when(u.last_login_at), actions]);
        tr.setAttribute("data-email", u.email);
        if (!u.active) tr.className = "inactive";
      });
      fillUserSelects();
    });
  }

  function fillUserSelects() {
    const keep = tokenFilter.value;
    const keepUser = tokenUser.value;
    tokenUser.textContent = "";
    while (tokenFilter.options.length > 1) tokenFilter.remove(1);
    userList.forEach(function (u) {
      const o = el("option", u.email); o.value = String(u.id);
      tokenFilter.appendChild(o);
      if (u.active) { const p = el("option", u.email); p.value = String(u.id); tokenUser.appendChild(p); }
    });
    tokenFilter.value = keep;
    if (keepUser) tokenUser.value = keepUser;
  }

  document.getElementById("user-create").addEventListener("submit", function (e) {
    e.preventDefault();
    const f = e.target;
    const body = { email: f.email.value.trim(), role: f.role.value, credential: f.credential.value };
    api("POST", "/users", body).then(function (d) {
      f.reset();
      say("Created " + d.user.email + " (" + d.user.role + ").");
      if (d.password) showSecret("First password for " + d.user.email + ":", d.password);
      else showSecret("One-time link for " + d.user.email + " to choose a password, valid until " + when(d.expires_at) + ":", d.reset_url);
      return loadUsers();
    }).catch(fail);
  });

  // --- tokens --------------------------------------------------------------------------
  function loadTokens() {
    const q = tokenFilter.value ? "?user=" + encodeURIComponent(tokenFilter.value) : "";
    return api("GET", "/tokens" + q).then(function (data) {
      tokens.textContent = "";
      const labels = labelsOf("tokens");
      if (!data.tokens.length) {
        const tr = row(tokens, [""], ["No tokens."]);
        tr.firstChild.colSpan = labels.length;
      }
      data.tokens.forEach(function (t) {
        let action = el("span", "—");
        if (t.status === "active") {
          action = button("Revoke", "Revoke token " + t.prefix + " of " + t.email, function () {
            if (!window.confirm("Revoke token " + t.prefix + "… of " + t.email + "? Scripts using it stop working at once.")) return;
            api("DELETE", "/tokens/" + t.id)
              .then(function () { say("Token " + t.prefix + "… revoked."); return loadTokens(); })
              .catch(fail);
          }, "danger");
        }
        const tr = row(tokens, labels, [el("code", t.prefix + "…"), t.email, when(t.created_at),
          when(t.expires_at), when(t.last_used_at), t.status, action]);
        tr.setAttribute("data-prefix", t.prefix);
        if (t.status !== "active") tr.className = "inactive";
      });
    });
  }
  tokenFilter.addEventListener("change", function () { loadTokens().catch(fail); });
  document.getElementById("token-create").addEventListener("submit", function (e) {
    e.preventDefault();
    const f = e.target;
    api("POST", "/tokens", { user: Number(f.user.value), expires_days: Number(f.expires_days.value) })
      .then(function (d) {
        showSecret("API token for " + d.email + " (expires " + when(d.expires_at) + "):", d.token);
        say("Token " + d.prefix + "… created for " + d.email + ".");
        return loadTokens();
      }).catch(fail);
  });

  // --- keys, jobs, storage -------------------------------------------------------------
  function loadKeys() {
    return api("GET", "/keys").then(function (d) {
      const tbody = document.querySelector("#keys tbody");
      tbody.textContent = "";
      const labels = labelsOf("keys");
      d.versions.forEach(function (v) {
        row(tbody, labels, ["v" + v.version, v.state, when(v.created_at), v.objects, bytes(v.bytes)])
          .setAttribute("data-version", String(v.version));
      });
      document.getElementById("keys-summary").textContent =
        "New uploads use version " + d.current + ". " + d.objects + " object(s) in all.";
    });
  }
  function loadJobs() {
    return api("GET", "/jobs").then(function (d) {
      const tbody = document.querySelector("#jobs tbody");
      tbody.textContent = "";
      const labels = labelsOf("jobs");
      if (!d.jobs.length) {
        const tr = row(tbody, [""], ["No rotation job has run for this organisation."]);
        tr.firstChild.colSpan = labels.length;
      }
      d.jobs.forEach(function (j) {
        row(tbody, labels, [j.kind, j.state === "interrupted" ? "interrupted (re-run it to continue)" : j.state, j.done, j.failed,
          when(j.started_at), when(j.updated_at), j.finished_at ? when(j.finished_at) : "-"]);
      });
      document.getElementById("jobs-summary").textContent = d.pending
        ? d.pending + " of " + d.objects + " object(s) are not yet on key version " + d.current_version + " (run gateway keys rewrap)."
        : "All " + d.objects + " object(s) are on the current key version.";
    });
  }
  function loadStorage() {
    return api("GET", "/storage").then(function (d) {
      const b = document.getElementById("storage-bucket");
      b.textContent = d.bucket === "ok" ? "reachable" : "UNREACHABLE";
      b.className = d.bucket === "ok" ? "ok" : "error";
      document.getElementById("storage-reconcile").textContent = d.last_reconcile
        ? when(d.last_reconcile.at) + " (" + d.last_reconcile.outcome + ")" : "not recorded";
    });
  }
  function refreshAccounts() { return Promise.all([loadUsers(), loadTokens()]); }
  function refreshAll() {
    return Promise.all([loadUsers().then(loadTokens), loadKeys(), loadJobs(), loadStorage()])
      .catch(fail);
  }

  document.getElementById("admin-secret-copy").addEventListener("click", function () {
    secretValue.select();
    if (navigator.clipboard) navigator.clipboard.writeText(secretValue.value).then(function () { say("Copied."); }, function () {});
  });
  document.getElementById("admin-secret-close").addEventListener("click", function () {
    secretValue.value = ""; secret.hidden = true;
  });
  document.getElementById("admin-refresh").addEventListener("click", refreshAll);
  refreshAll();
})();
