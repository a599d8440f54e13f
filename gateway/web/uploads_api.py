"""Resumable uploads over tus 1.0.0 at ``/api/v1/uploads`` (see ``docs/uploads.md``).

Core protocol plus the creation, creation-with-upload, termination, expiration and checksum
extensions. Every response carries ``Tus-Resumable``; errors are the gateway's JSON errors
with tus's statuses (409 offset mismatch, 410 expired, 423 busy, 460 checksum mismatch).
"""
from __future__ import annotations

from email.utils import format_datetime
from typing import Iterator

from flask import Blueprint, Response, request, url_for
from werkzeug.exceptions import ClientDisconnected

from ..uploads import BadUploadRequest, UploadState, protocol
from .auth import login_required_api
from .context import body_stream, current_actor, services
from .errors import ApiError

bp = Blueprint("uploads_api", __name__, url_prefix="/api/v1")
READ_CHUNK = 1024 * 1024


@bp.before_request
def _require_tus_version() -> None:
    if request.method == "OPTIONS":
        return
    if request.headers.get("Tus-Resumable") != protocol.TUS_VERSION:
        raise ApiError(412, "unsupported_version",
                       f"send Tus-Resumable: {protocol.TUS_VERSION} (the only version served)",
                       headers={"Tus-Version": protocol.TUS_VERSION})


@bp.after_request
def _tus_headers(resp: Response) -> Response:
    resp.headers["Tus-Resumable"] = protocol.TUS_VERSION
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _body() -> Iterator[bytes]:
    """The request body in pieces. A body cut short (the client went away) simply ends: what
    came before is kept, and the client resumes from the offset it asks for."""
    stream = body_stream()
    while True:
        try:
            chunk = stream.read(READ_CHUNK)
        except (ClientDisconnected, OSError):
            return
        if not chunk:
            return
        yield chunk


def _state_headers(resp: Response, state: UploadState) -> Response:
    resp.headers["Upload-Offset"] = str(state.offset)
    resp.headers["Upload-Length"] = str(state.length)
    if state.offset < state.length:
        resp.headers["Upload-Expires"] = format_datetime(state.expires_at, usegmt=True)
    return resp


def _has_body() -> bool:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return ctype == protocol.OFFSET_CONTENT_TYPE


@bp.route("/uploads", methods=["OPTIONS"])
@bp.route("/uploads/<upload_id>", methods=["OPTIONS"])
def options(upload_id: str | None = None) -> Response:
    resp = Response(status=204)
    resp.headers["Tus-Version"] = protocol.TUS_VERSION
    resp.headers["Tus-Extension"] = ",".join(protocol.EXTENSIONS)
    resp.headers["Tus-Max-Size"] = str(services().uploads.max_size)
    resp.headers["Tus-Checksum-Algorithm"] = ",".join(protocol.CHECKSUM_ALGORITHMS)
    return resp


@bp.post("/uploads")
@login_required_api
def create() -> Response:
    if request.headers.get("Upload-Defer-Length"):
        raise BadUploadRequest("Upload-Defer-Length is not supported: send Upload-Length")
    length = protocol.parse_count("Upload-Length", request.headers.get("Upload-Length"))
    metadata = protocol.parse_metadata(request.headers.get("Upload-Metadata"))
    uploads = services().uploads
    actor = current_actor()
    assert length is not None
    state = uploads.create(actor, length=length, metadata=metadata)
    if length == 0 or (_has_body() and request.content_length != 0):
        checksum = protocol.parse_checksum(request.headers.get("Upload-Checksum"))
        state = uploads.patch(actor, state.id, offset=0, body=_body(), checksum=checksum)
    resp = Response(status=201)
    resp.headers["Location"] = url_for("uploads_api.patch", upload_id=state.id)
    return _state_headers(resp, state)


@bp.route("/uploads/<upload_id>", methods=["HEAD"])
@login_required_api
def head(upload_id: str) -> Response:
    state = services().uploads.status(current_actor(), upload_id)
    return _state_headers(Response(status=200), state)


@bp.patch("/uploads/<upload_id>")
@login_required_api
def patch(upload_id: str) -> Response:
    if not _has_body():
        raise ApiError(415, "unsupported_media_type",
                       f"a PATCH must be sent as Content-Type: {protocol.OFFSET_CONTENT_TYPE}")
    offset = protocol.parse_count("Upload-Offset", request.headers.get("Upload-Offset"))
    checksum = protocol.parse_checksum(request.headers.get("Upload-Checksum"))
    assert offset is not None
    state = services().uploads.patch(current_actor(), upload_id, offset=offset, body=_body(),
                                     checksum=checksum)
    return _state_headers(Response(status=204), state)


@bp.delete("/uploads/<upload_id>")
@login_required_api
def terminate(upload_id: str) -> Response:
    services().uploads.terminate(current_actor(), upload_id)
    return Response(status=204)
