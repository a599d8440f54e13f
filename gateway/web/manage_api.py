"""The file app's API: folders, a page of a folder or a search, move and rename, the trash,
and earlier versions (see the contract's "File management")."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..db.models import StoredObject
from ..files import Folder
from .auth import login_required_api
from .context import current_actor, services
from .errors import ApiError
from .files_api import _emails, object_json

bp = Blueprint("manage_api", __name__, url_prefix="/api/v1")


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "send a JSON object")
    return body


def _objects(rows: list[StoredObject], **extra: Any) -> Response:
    emails = _emails(rows)
    listed = []
    for row in rows:
        item = object_json(row, emails)
        if row.deleted_at is not None:
            item["deleted_at"] = row.deleted_at.isoformat().replace("+00:00", "Z")
        listed.append(item)
    return jsonify({"objects": listed, **extra})


def _int_arg(name: str, default: int) -> int:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or len(value) > 6:
        raise ApiError(400, "bad_request", f"{name} must be a whole number")
    return int(value)


@bp.get("/files")
@login_required_api
def list_files() -> Response:
    """A page of a folder's objects, or of a search by name, sorted; ``next`` is the cursor
    of the following page."""
    args = request.args
    page = services().catalog.page(
        current_actor(), args.get("prefix", ""), q=args.get("q") or None,
        sort=args.get("sort") or "path", order=args.get("order", "asc"),
        limit=_int_arg("limit", 200), cursor=args.get("cursor") or None,
        children_only=args.get("delimiter") == "/")
    return _objects(page.objects, next=page.next)


def _folder_json(folder: Folder) -> dict[str, Any]:
    return {"name": folder.name, "prefix": folder.prefix, "count": folder.count}


@bp.get("/folders")
@login_required_api
def folders() -> Response:
    found = services().catalog.folders(current_actor(), request.args.get("prefix", ""))
    return jsonify({"folders": [_folder_json(f) for f in found]})


@bp.post("/files/<objpath:path>/move")
@login_required_api
def move(path: str) -> Response:
    body = _json_body()
    to = body.get("to")
    if not isinstance(to, str) or not to:
        raise ApiError(400, "bad_request", 'send {"to": "the new path"}')
    obj = services().catalog.move(current_actor(), path, to,
                                  overwrite=body.get("overwrite") is True)
    return jsonify(object_json(obj, _emails([obj])))


@bp.get("/trash")
@login_required_api
def trash() -> Response:
    return _objects(services().catalog.trash(current_actor()))


@bp.post("/trash/<object_id>/restore")
@login_required_api
def restore(object_id: str) -> Response:
    obj = services().catalog.restore(current_actor(), object_id)
    return jsonify(object_json(obj, _emails([obj])))


@bp.get("/files/<objpath:path>/versions")
@login_required_api
def versions(path: str) -> Response:
    return _objects(services().catalog.versions(current_actor(), path))


@bp.post("/files/<objpath:path>/versions/<version_id>/restore")
@login_required_api
def restore_version(path: str, version_id: str) -> Response:
    obj = services().catalog.restore_version(current_actor(), path, version_id)
    return jsonify(object_json(obj, _emails([obj])))
