"""The staff file app's pages: the folder browser, the viewer, the trash, previews of images
a browser cannot show, and the session's time left (for the idle warning)."""
from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required

from ..db.models import StoredObject
from ..files import CATEGORIES, is_inline
from ..files.catalog import encode_cursor
from ..files.previews import MAX_PREVIEW_BYTES, PreviewTooLarge, needs_preview, preview
from .auth import login_required_api
from .context import current_actor, services
from .files_api import _emails
from .pages import uploader_context

bp = Blueprint("file_pages", __name__)

CATEGORY_TITLES = {
    "uploads": "Uploads", "documents": "Documents",
    "signatures": "Signatures", "templates": "Templates",
}


def _crumbs(prefix: str) -> list[dict[str, str]]:
    """The breadcrumbs of a folder: each folder above it, with its link."""
    crumbs = [{"name": "All files", "href": url_for("file_pages.browse")}]
    parts = [p for p in prefix.split("/") if p]
    for i, part in enumerate(parts):
        name = CATEGORY_TITLES.get(part, part) if i == 0 else part
        crumbs.append({"name": name, "href": url_for("file_pages.browse",
                                                      prefix="/".join(parts[: i + 1]) + "/")})
    return crumbs


def _max_upload_mb() -> str:
    return f"{services().settings.max_upload_bytes / (1024 * 1024):g}"


def _staff_only() -> Response | None:
    if current_user.role == "auditor":  # auditors see the trail, not the files
        return redirect(url_for("audit_pages.audit_page"))
    return None


@bp.get("/files/")
@bp.get("/files/<path:prefix>")
@login_required
def browse(prefix: str = ""):  # type: ignore[no-untyped-def]
    if (other := _staff_only()) is not None:
        return other
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    folders = services().catalog.folders(current_actor(), prefix)
    parts = [p for p in prefix.split("/") if p]
    up = None
    if parts:
        up = url_for("file_pages.browse", prefix="/".join(parts[:-1]) + "/" if len(parts) > 1
                     else "")
    return render_template(
        "files.html", prefix=prefix, folders=folders, crumbs=_crumbs(prefix), up=up,
        category_titles=CATEGORY_TITLES, top=not parts, max_upload_mb=_max_upload_mb(),
        can_upload=bool(parts) and parts[0] in CATEGORIES,
        folder_name=(CATEGORY_TITLES.get(parts[0], parts[0]) if len(parts) == 1
                     else parts[-1] if parts else "All files"),
        fixed_folder=True, **uploader_context(prefix),
    )


def _neighbour(obj: StoredObject, folder: str, order: str) -> str | None:
    """The path of the next (``asc``) or previous (``desc``) file in ``obj``'s folder by name."""
    page = services().catalog.page(
        current_actor(), folder, sort="name", order=order, limit=1, children_only=True,
        cursor=encode_cursor([obj.name_folded, obj.id]))
    return page.objects[0].path if page.objects else None


def _kind(content_type: str) -> str:
    if needs_preview(content_type):
        return "preview"
    if content_type == "application/pdf":
        return "pdf"
    major = content_type.split("/", 1)[0]
    if major in ("image", "video", "audio") and is_inline(content_type):
        return major
    return "other"


@bp.get("/files/view/<objpath:path>")
@login_required
def view(path: str):  # type: ignore[no-untyped-def]
    if (other := _staff_only()) is not None:
        return other
    actor = current_actor()
    obj = services().objects.find(actor, path, "view")
    folder, _, name = obj.path.rpartition("/")
    folder += "/"
    emails = _emails([obj])
    may_change = actor.role == "admin" or obj.created_by == actor.user_id
    return render_template(
        "viewer.html", obj=obj, name=name, folder=folder, crumbs=_crumbs(folder),
        uploader=emails.get(obj.created_by, "unknown") if obj.created_by else "unknown",
        kind=_kind(obj.content_type), may_change=may_change,
        previous=_neighbour(obj, folder, "desc"), next=_neighbour(obj, folder, "asc"),
        max_upload_mb=_max_upload_mb(), max_preview_mb=MAX_PREVIEW_BYTES // (1024 * 1024),
        too_large_to_preview=obj.size > MAX_PREVIEW_BYTES,
    )


@bp.get("/files/preview/<objpath:path>")
@login_required
def preview_image(path: str) -> Response:
    """A PNG or JPEG of a HEIC photo or a TIFF scan, decoded in memory, never stored; audited
    as a view."""
    actor = current_actor()
    svc = services().objects
    obj = svc.find(actor, path, "view")
    if obj.size > MAX_PREVIEW_BYTES:
        services().audit.record(action="view", outcome="denied", actor=actor, object_id=obj.id,
                                object_path=obj.path, http_status=413,
                                detail={"reason": "too large to preview", "size": obj.size})
        raise PreviewTooLarge(f"this file is larger than {MAX_PREVIEW_BYTES // (1024 * 1024)} MB, "
                              "too large to preview: download it instead")
    page_arg = request.args.get("page", "0")
    page = int(page_arg) if page_arg.isdigit() and len(page_arg) < 6 else 0
    download = svc.open(actor, obj)
    data = bytearray()
    for chunk in download.body or ():
        data += chunk
        if len(data) > MAX_PREVIEW_BYTES:
            raise PreviewTooLarge("the file is too large to preview: download it instead")
    shown = preview(bytes(data), page=page)
    del data
    return Response(shown.data, headers={
        "Content-Type": shown.content_type, "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff", "X-Preview-Pages": str(shown.pages),
        "Content-Disposition": "inline",
    })


@bp.get("/files/trash")
@login_required
def trash():  # type: ignore[no-untyped-def]
    if (other := _staff_only()) is not None:
        return other
    rows = services().catalog.trash(current_actor())
    emails = _emails(rows)
    items: list[dict[str, Any]] = []
    for row in rows:
        folder, _, name = row.path.rpartition("/")
        items.append({"id": row.id, "name": name, "folder": folder + "/", "size": row.size,
                      "content_type": row.content_type, "deleted_at": row.deleted_at,
                      "uploader": emails.get(row.created_by, "unknown")})
    return render_template("trash.html", items=items)


@bp.get("/api/v1/session")
@login_required_api
def session_left() -> Response:
    """The seconds left before the idle sign-out; asking counts as activity, so this is also
    what "stay signed in" calls."""
    idle = int(current_app.config["IDLE_LOGOUT_SECONDS"])
    return jsonify({"seconds_left": idle, "idle_logout_seconds": idle})


__all__ = ["bp"]
