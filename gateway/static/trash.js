/* The trash: restore a deleted file to its folder. */
(function () {
  "use strict";
  var GW = window.GW;
  var root = document.getElementById("trash");
  if (!root) return;
  var filesBase = root.getAttribute("data-files-base");
  root.querySelectorAll("button.js-restore").forEach(function (b) {
    b.addEventListener("click", function () {
      GW.guard(b, function () {
        return GW.api("POST", "/api/v1/trash/" + encodeURIComponent(b.getAttribute("data-id")) + "/restore")
          .then(function (obj) {
            var tr = b.closest("tr");
            var slot = document.getElementById("flash-slot");
            slot.textContent = "";
            slot.appendChild(document.createTextNode("Restored. "));
            var a = document.createElement("a");
            a.href = filesBase + "view/" + GW.encodePath(obj.path);
            a.textContent = "Open " + obj.path.slice(obj.path.lastIndexOf("/") + 1);
            slot.appendChild(a);
            slot.className = "flash info";
            slot.hidden = false;
            tr.parentNode.removeChild(tr);
            a.focus();
          }, function (err) {
            GW.showFlash(err.code === "conflict"
              ? "A file with this name is in its folder again. Rename that file first, then restore this one."
              : err.message, "error");
          });
      });
    });
  });
})();
