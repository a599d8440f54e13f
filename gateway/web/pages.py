"""Browser pages: the file list with uploads (the audit console is in :mod:`.audit_pages`)."""
from __future__ import annotations

import os

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..files import CATEGORIES
from .context import current_actor, services

bp = Blueprint("pages", __name__)

#: File name extensions the uploader accepts before sending a byte: one or more for each kind
#: of file the gateway stores (``gateway.files.sniff.ALLOWED_TYPES``). The browser's check
#: only spares the user a wasted upload; the gateway still decides from the file's bytes.
UPLOAD_EXTENSIONS: tuple[str, ...] = (
    # pictures and scans
    "jpg", "jpeg", "png", "gif", "webp", "tif", "tiff", "bmp", "heic", "heif", "avif", "dcm",
    # documents
    "pdf", "rtf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "odt", "ods", "odp",
    "txt", "csv", "tsv",
    # video
    "mp4", "m4v", "mov", "qt", "3gp", "3g2", "webm", "mkv", "avi", "ts", "mts", "m2ts",
    "mpg", "mpeg", "ogv",
    # audio
    "mp3", "wav", "flac", "ogg", "oga", "opus", "m4a", "aac", "weba", "mka", "aif", "aiff", "aifc",
    "wma", "wmv", "asf",
    # healthcare's interchange formats, e-mail, JPEG 2000 (docs/file-types.md)
    "hl7", "xml", "json", "eml", "jp2", "j2k", "jpx", "jpf", "j2c",
)  # fmt: skip

#: The uploader's prebuilt browser bundle, copied from npm by ``make`` (not in the repository).
UPLOADER_FILES = ("vendor/uppy/uppy.min.js", "vendor/uppy/uppy.min.css")


def uploader_available() -> bool:
    """Whether the uploader's bundle is in place (the page says so plainly when it is not)."""
    static = current_app.static_folder or ""
    return all(os.path.isfile(os.path.join(static, name)) for name in UPLOADER_FILES)


def default_folder(prefix: str) -> str:
    """The upload folder a listing's ``prefix`` suggests: its folder part, else ``uploads/``."""
    folder = prefix.strip().lstrip("/")
    if "/" in folder:
        folder = folder.rsplit("/", 1)[0] + "/"
    elif folder in CATEGORIES:
        folder += "/"
    else:
        folder = ""
    return folder or "uploads/"


def uploader_context(prefix: str) -> dict[str, object]:
    """What ``_uploader.html`` needs, for a page showing the folder ``prefix``."""
    return dict(upload_folder=default_folder(prefix),
                max_upload_bytes=services().objects.max_upload_bytes,
                upload_extensions=UPLOAD_EXTENSIONS, uploader_available=uploader_available())


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    if current_user.role == "auditor":
        return redirect(url_for("audit_pages.audit_page"))  # auditors see the trail, not the files
    prefix = request.args.get("prefix", "")
    objects = services().objects.list(current_actor(), prefix)
    return render_template("index.html", objects=objects, prefix=prefix, user=current_user,
                           **uploader_context(prefix))
