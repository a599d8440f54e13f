/* The folder browser: the files of the folder shown (sorted, loaded a page at a time),
   search by name across the organisation, and new folders. */
(function () {
  "use strict";
  var GW = window.GW;
  var root = document.getElementById("file-browser");
  if (!root) return;

  var PAGE = 100;
  var filesBase = root.getAttribute("data-files-base");  // "/files/"
  var prefix = root.getAttribute("data-prefix");
  var top = root.getAttribute("data-top") === "yes";
  var DEFAULT_ORDER = { name: "asc", size: "desc", created: "desc" };
  var state = { sort: "name", order: "asc", q: "", next: null, shown: 0, loading: 0 };

  var rows = document.getElementById("file-rows");
  var table = document.getElementById("file-table");
  var listStatus = document.getElementById("list-status");
  var more = document.getElementById("show-more");
  var filesSection = document.getElementById("files-section");
  var foldersSection = document.getElementById("folders-section");
  var heading = document.getElementById("files-heading");
  var empty = document.getElementById("empty-folder");
  var searchForm = document.getElementById("search-form");
  var searchInput = document.getElementById("search-q");
  var searchClear = document.getElementById("search-clear");

  function viewUrl(path) { return filesBase + "view/" + GW.encodePath(path); }
  function fileUrl(path) { return "/api/v1/files/" + GW.encodePath(path); }
  function folderOf(path) { return path.slice(0, path.lastIndexOf("/") + 1); }
  function nameOf(path) { return path.slice(path.lastIndexOf("/") + 1); }

  function cell(cls, label) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (label) {
      var span = document.createElement("span");
      span.className = "card-label";
      span.textContent = label;
      td.appendChild(span);
    }
    return td;
  }

  function row(obj) {
    var tr = document.createElement("tr");
    var name = cell("name");
    name.appendChild(GW.icon(GW.iconFor(obj.content_type)));
    var link = document.createElement("a");
    link.href = viewUrl(obj.path);
    link.textContent = nameOf(obj.path);
    link.className = "file-link";
    name.appendChild(link);
    tr.appendChild(name);

    var folder = cell("col-folder", "In ");
    folder.hidden = !state.q;
    var fl = document.createElement("a");
    fl.href = filesBase + GW.encodePath(folderOf(obj.path));
    fl.textContent = folderOf(obj.path);
    folder.appendChild(fl);
    tr.appendChild(folder);

    var size = cell("size");
    size.appendChild(document.createTextNode(GW.humanSize(obj.size)));
    tr.appendChild(size);

    var who = cell("col-who", "By ");
    who.appendChild(document.createTextNode(obj.created_by || "unknown"));
    tr.appendChild(who);

    var date = cell("date");
    var time = document.createElement("time");
    time.setAttribute("datetime", obj.created_at);
    time.textContent = GW.formatDate(obj.created_at);
    date.appendChild(time);
    tr.appendChild(date);

    var actions = cell("col-actions");
    var dl = document.createElement("a");
    dl.href = fileUrl(obj.path) + "?download=1";
    dl.setAttribute("download", "");
    dl.textContent = "Download";
    dl.setAttribute("aria-label", "Download " + nameOf(obj.path));
    actions.appendChild(dl);
    tr.appendChild(actions);
    return tr;
  }

  function markSort() {
    table.querySelectorAll("th[data-col]").forEach(function (th) {
      var col = th.getAttribute("data-col");
      var arrow = th.querySelector(".arrow");
      if (col === state.sort) {
        th.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
        arrow.textContent = state.order === "asc" ? "▲" : "▼";
      } else {
        th.removeAttribute("aria-sort");
        arrow.textContent = "";
      }
    });
    table.querySelectorAll(".col-folder").forEach(function (el) { el.hidden = !state.q; });
  }

  function query(cursor) {
    var params = new URLSearchParams();
    if (state.q) {
      params.set("q", state.q);
    } else {
      params.set("prefix", prefix);
      params.set("delimiter", "/");
    }
    params.set("sort", state.sort);
    params.set("order", state.order);
    params.set("limit", String(PAGE));
    if (cursor) params.set("cursor", cursor);
    return "/api/v1/files?" + params.toString();
  }

  function describe() {
    var n = state.shown;
    var text;
    if (state.q) {
      text = n === 0 ? "No file name contains “" + state.q + "”." :
        (n === 1 ? "1 file found" : n + " files found") + (state.next ? " so far." : ".");
    } else {
      text = n === 0 ? "" : (n === 1 ? "1 file" : n + " files") + (state.next ? " shown; more below." : ".");
    }
    listStatus.textContent = text;
    more.hidden = !state.next;
    table.hidden = n === 0;
    if (empty) empty.hidden = !(n === 0 && !state.q && !top && !document.querySelector("#folder-list li"));
  }

  function load(reset) {
    var ticket = ++state.loading;
    var cursor = reset ? null : state.next;
    listStatus.textContent = "Loading…";
    return GW.api("GET", query(cursor)).then(function (data) {
      if (ticket !== state.loading) return;  // a newer request replaced this one
      if (reset) { rows.textContent = ""; state.shown = 0; }
      data.objects.forEach(function (o) { rows.appendChild(row(o)); });
      state.shown += data.objects.length;
      state.next = data.next;
      describe();
    }, function (err) {
      if (ticket !== state.loading) return;
      listStatus.textContent = err.message;
    });
  }

  table.querySelectorAll("button[data-sort]").forEach(function (b) {
    b.addEventListener("click", function () {
      var col = b.getAttribute("data-sort");
      if (state.sort === col) state.order = state.order === "asc" ? "desc" : "asc";
      else { state.sort = col; state.order = DEFAULT_ORDER[col]; }
      markSort();
      GW.guard(b, function () { return load(true); });
    });
  });

  more.addEventListener("click", function () {
    GW.guard(more, function () { return load(false); });
  });

  function setSearch(q) {
    state.q = q;
    var url = new URL(window.location.href);
    if (q) url.searchParams.set("q", q); else url.searchParams.delete("q");
    window.history.replaceState(null, "", url.toString());
    searchClear.hidden = !q;
    foldersSection.hidden = !!q;
    filesSection.hidden = top && !q;
    heading.textContent = q ? "Search results for “" + q + "” in all folders" : "Files in this folder";
    markSort();
    return load(true);
  }

  searchForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var button = searchForm.querySelector('button[type="submit"]');
    GW.guard(button, function () { return setSearch(searchInput.value.trim()); });
  });
  searchClear.addEventListener("click", function () {
    searchInput.value = "";
    setSearch("").then(function () { searchInput.focus(); });
  });

  /* -- new folders: kept in this tab until a file is uploaded into them -------------------- */

  function pendingFolders() {
    try { return JSON.parse(sessionStorage.getItem("gw.newFolders") || "[]"); } catch (e) { return []; }
  }
  function savePending(list) {
    try { sessionStorage.setItem("gw.newFolders", JSON.stringify(list)); } catch (e) { /* ignore */ }
  }

  function showPendingFolders() {
    var list = document.getElementById("folder-list");
    if (!list) return;
    var known = {};
    list.querySelectorAll("a[data-prefix]").forEach(function (a) { known[a.getAttribute("data-prefix")] = true; });
    var keep = pendingFolders().filter(function (p) { return !known[p]; });
    savePending(keep);
    keep.forEach(function (p) {
      var rest = p.slice(prefix.length);
      if (p.indexOf(prefix) !== 0 || !rest || rest.split("/").length !== 2) return;
      var li = document.createElement("li");
      var a = document.createElement("a");
      a.className = "folder pending";
      a.href = filesBase + GW.encodePath(p);
      a.appendChild(GW.icon("i-folder", "big"));
      var n = document.createElement("span");
      n.className = "folder-name";
      n.textContent = rest.slice(0, -1);
      a.appendChild(n);
      var c = document.createElement("span");
      c.className = "count";
      c.textContent = "new, empty";
      a.appendChild(c);
      li.appendChild(a);
      list.appendChild(li);
    });
    if (keep.indexOf(prefix) >= 0 && empty) {
      empty.textContent = "This folder is new and empty. Add files to it: the folder is kept once it holds a file.";
    }
  }

  var newButton = document.getElementById("new-folder-button");
  var dialog = document.getElementById("new-folder-dialog");
  if (newButton && dialog) {
    var form = document.getElementById("new-folder-form");
    var input = document.getElementById("new-folder-name");
    var error = document.getElementById("new-folder-error");
    newButton.addEventListener("click", function () {
      input.value = "";
      error.hidden = true;
      dialog.showModal();
      input.focus();
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var name = input.value.trim();
      if (!name || /[\/\\]/.test(name) || name === "." || name === "..") {
        error.textContent = "Type a folder name without slashes.";
        error.hidden = false;
        input.focus();
        return;
      }
      var target = prefix + name + "/";
      var list = pendingFolders();
      if (list.indexOf(target) < 0) list.push(target);
      savePending(list);
      window.location.href = filesBase + GW.encodePath(target);
    });
  }

  /* The uploader announces each stored file; the list then shows it. */
  document.addEventListener("gateway:uploaded", function () { load(true); });

  var initialQ = new URL(window.location.href).searchParams.get("q") || "";
  showPendingFolders();
  markSort();
  if (initialQ) {
    searchInput.value = initialQ;
    setSearch(initialQ);
  } else if (!top) {
    load(true);
  } else {
    describe();
  }
})();
