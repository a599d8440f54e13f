"""The file API: upload, download (with Range), list, delete, and gateway-signed links."""
from __future__ import annotations

import base64
import binascii
import json
import os
import time
from datetime import datetime, timezone
from typing import Any, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask_login import current_user
from sqlalchemy import select
from werkzeug.exceptions import ClientDisconnected

from ..db.models import Organisation, StoredObject, User, new_id
from ..files import FormField, FormFile, FormStream, content_disposition, is_inline
from ..principal import Actor
from .auth import audit_refusal, login_required_api
from .context import (
    anonymous_actor,
    body_stream,
    client_addr,
    current_actor,
    request_id,
    services,
)
from .errors import ApiError

bp = Blueprint("files_api", __name__, url_prefix="/api/v1")
READ_CHUNK = 1024 * 1024
LINK_INFO = b"gateway link token v2"
LINK_AAD = b"gateway-link-v2"
#: sealed payloads are padded to a multiple of this many bytes, so that a token's length
#: tells nothing but a bucket of its path's length (every GET link has the same length)
LINK_PAD = 256


# -- representations -------------------------------------------------------------------------


def object_json(obj: StoredObject, emails: dict[int, str] | None = None) -> dict[str, Any]:
    """The contract's JSON for an object."""
    created_by: Any = obj.created_by
    if emails is not None and obj.created_by in emails:
        created_by = emails[obj.created_by]
    return {
        "id": obj.id,
        "path": obj.path,
        "size": obj.size,
        "content_type": obj.content_type,
        "sha256": obj.sha256,
        "encryption": obj.encryption,
        "key_version": obj.key_version,
        "created_at": obj.created_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"),
        "created_by": created_by,
    }


def _emails(objs: list[StoredObject]) -> dict[int, str]:
    ids = {o.created_by for o in objs if o.created_by is not None}
    if not ids:
        return {}
    with services().sessions() as s:
        return dict(s.execute(select(User.id, User.email).where(User.id.in_(ids))).all())


def _bool_arg(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


# -- request bodies --------------------------------------------------------------------------


def _raw_body(declared: int | None) -> Iterator[bytes]:
    """The request body in pieces; an error if it ends before its ``Content-Length``.

    The WSGI server hands a body cut short (the client went away mid-upload) to the
    application as if it had ended: only the count against ``declared`` (the
    ``Content-Length``) tells, and a short upload must be aborted, never stored as complete.
    """
    stream = body_stream()
    received = 0
    while True:
        try:
            chunk = stream.read(READ_CHUNK)
        except (ClientDisconnected, OSError) as exc:
            # Werkzeug reports every failed read as a disconnect; the server's body deadline
            # (gateway.serve) is the one that says why
            cause = exc if isinstance(exc, OSError) else exc.__context__
            if isinstance(cause, TimeoutError):
                raise ApiError(408, "request_timeout", str(cause)) from None
            if isinstance(exc, OSError):
                raise ClientDisconnected() from None
            raise
        if not chunk:
            break
        received += len(chunk)
        yield chunk
    if declared is not None and received < declared:
        raise ApiError(400, "bad_request", f"the upload ended after {received} of its "
                       f"{declared} bytes; nothing was stored")


def _declared_length() -> int | None:
    value = request.headers.get("Content-Length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, "bad_request", "Content-Length is not a number") from None


def _created(obj: StoredObject) -> Response:
    resp = jsonify(object_json(obj, _emails([obj])))
    resp.status_code = 201
    resp.headers["Location"] = url_for("files_api.get_file", path=obj.path)
    return resp


# -- files -----------------------------------------------------------------------------------


@bp.put("/files/<objpath:path>")
@login_required_api
def put_file(path: str) -> Response:
    declared = _declared_length()
    obj = services().objects.upload(
        current_actor(), path, _raw_body(declared), overwrite=_bool_arg("overwrite"),
        declared_size=declared, via="put",
    )
    return _created(obj)


@bp.post("/files")
@login_required_api
def post_file() -> Response:
    actor = current_actor()
    path = request.args.get("path")
    form = FormStream(request.stream, request.headers.get("Content-Type", ""))
    for part in form.parts():
        if isinstance(part, FormField) and part.name == "path":
            path = part.value
        elif isinstance(part, FormFile) and part.name == "file":
            if not path:
                raise ApiError(400, "bad_request", "send the path field before the file field")
            obj = services().objects.upload(
                actor, path, part.chunks, overwrite=_bool_arg("overwrite"),
                declared_size=None, via="form",
            )
            return _created(obj)
    raise ApiError(400, "bad_request", "the form has no file field")


@bp.route("/files/<objpath:path>", methods=["GET", "HEAD"])
@login_required_api
def get_file(path: str) -> Response:
    actor = current_actor()
    action = "download" if _bool_arg("download") else "view"
    obj = services().objects.find(actor, path, action)
    return _serve(actor, obj)


@bp.delete("/files/<objpath:path>")
@login_required_api
def delete_file(path: str) -> Response:
    services().objects.delete(current_actor(), path)
    return Response(status=204)


def _serve(actor: Actor, obj: StoredObject, via: str | None = None) -> Response:
    download = _bool_arg("download")
    result = services().objects.open(
        actor, obj, range_header=request.headers.get("Range"),
        if_range=request.headers.get("If-Range"), head=request.method == "HEAD",
        download=download, via=via,
    )
    inline = is_inline(obj.content_type) and not download
    headers = {
        "Content-Type": result.content_type or obj.content_type,
        "Content-Length": str(result.length),
        "Accept-Ranges": "bytes",
        "ETag": result.etag,
        "Last-Modified": obj.created_at.strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Disposition": content_disposition(obj.path.rsplit("/", 1)[-1],
                                                   attachment=not inline),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    if result.byte_range is not None:
        headers["Content-Range"] = result.byte_range.content_range
    if result.body is None:
        return Response(status=result.status, headers=headers)
    return Response(result.body, status=result.status, headers=headers, direct_passthrough=True)


# -- signed links ----------------------------------------------------------------------------


class BadLinkToken(ValueError):
    """A link token that the gateway did not seal (or that was altered)."""


def _link_key() -> AESGCM:
    """The links' AES-256-GCM key, derived from the secret key (HKDF-SHA256); derived per
    use (microseconds) rather than kept anywhere."""
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=LINK_INFO).derive(secret))


def seal_link(payload: dict[str, Any]) -> str:
    """The opaque token of a link: its payload encrypted and authenticated (AES-256-GCM,
    random 96-bit nonce), padded, in URL-safe base64. Only the gateway can read or make one."""
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    data += b" " * (-len(data) % LINK_PAD)  # JSON ignores trailing whitespace
    nonce = os.urandom(12)
    sealed = nonce + _link_key().encrypt(nonce, data, LINK_AAD)
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def open_link(token: str) -> dict[str, Any]:
    """The payload of a token made by :func:`seal_link`.

    :raises BadLinkToken: for anything else (malformed, altered, or sealed under another key).
    """
    if len(token) > 8192:
        raise BadLinkToken("too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if len(raw) < 12 + 16:
            raise BadLinkToken("too short")
        data = _link_key().decrypt(raw[:12], raw[12:], LINK_AAD)
        payload = json.loads(data.decode("utf-8"))
    except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
        raise BadLinkToken("not a link token") from None
    if not isinstance(payload, dict):
        raise BadLinkToken("not a link payload")
    return payload


@bp.post("/links")
@login_required_api
def issue_link() -> Response:
    actor = current_actor()
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("path"), str):
        raise ApiError(400, "bad_request", 'send JSON {"path": P, "method": "GET"|"PUT"}')
    method = str(body.get("method", "GET")).upper()
    if method not in ("GET", "PUT"):
        raise ApiError(400, "bad_request", "method must be GET or PUT")
    svc = services()
    settings = svc.settings
    objects = svc.objects
    if method == "GET":
        obj = objects.find(actor, body["path"], "link_issued")
        target: dict[str, Any] = {"i": obj.id}
        path = obj.path
        lifetime = settings.read_link_seconds
    else:
        normalized = objects.writable_path(actor, body["path"], "link_issued",
                                           doing="issue upload links")
        # the id of the object the link will create: once it exists (live or deleted), the
        # link has been used, and a replay is refused
        target = {"p": normalized.path, "i": new_id()}
        path = normalized.path
        obj = None
        lifetime = settings.write_link_seconds
    expires = int(time.time()) + lifetime
    payload = {"o": actor.org_id, "u": actor.user_id, "m": method, "x": expires, **target}
    token = seal_link(payload)
    expires_at = datetime.fromtimestamp(expires, timezone.utc)
    svc.audit.record(action="link_issued", outcome="success", actor=actor,
                     object_id=obj.id if obj else None, object_path=path, http_status=201,
                     detail={"method": method, "expires_at": expires_at.isoformat()})
    resp = jsonify({"url": url_for("files_api.use_link", token=token, _external=True),
                    "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
                    "method": method})
    resp.status_code = 201
    return resp


def _link_used(payload: dict[str, Any]) -> bool:
    """Whether the object an upload link creates exists already (the link was used)."""
    if not isinstance(payload.get("i"), str):
        return False
    with services().sessions() as s:
        return s.get(StoredObject, payload["i"]) is not None


def _link_actor(token: str, method: str) -> tuple[Actor, dict[str, Any]]:
    svc = services()
    try:
        payload = open_link(token)
    except BadLinkToken:
        # anonymous: recorded within the per-address budget (no audit-row flood)
        audit_refusal("bad link token", 403, action="link_used", actor=anonymous_actor())
        raise ApiError(403, "bad_link", "this link is not valid") from None
    with svc.sessions() as s:
        row = s.execute(select(User, Organisation).join(Organisation)
                        .where(User.id == payload.get("u"))).first()
    user = row[0] if row else None
    actor = Actor(
        org_id=payload.get("o"), user_id=payload.get("u"), email=user.email if user else None,
        role=user.role if user else None, client_addr=client_addr(),
        user_agent=request.user_agent.string or None, request_id=request_id(),
    )
    expected = "GET" if method in ("GET", "HEAD") else method
    reason = None
    if payload.get("m") != expected:
        reason = f"link is for {payload.get('m')}, not {method}"
    elif int(payload.get("x", 0)) < time.time():
        reason = "link expired"
    elif user is None or not user.is_active or user.org_id != payload.get("o"):
        reason = "issuing user no longer allowed"
    elif expected == "PUT" and _link_used(payload):
        reason = "link already used"
    if reason is not None:
        svc.audit.record(action="link_used", outcome="denied", actor=actor, http_status=403,
                         object_id=payload.get("i"), object_path=payload.get("p"),
                         detail={"reason": reason})
        code = "link_expired" if reason == "link expired" else "bad_link"
        raise ApiError(403, code, "this link has expired" if code == "link_expired"
                       else "this link is not valid for this request")
    svc.audit.record(action="link_used", outcome="success", actor=actor,
                     object_id=payload.get("i"), object_path=payload.get("p"),
                     detail={"method": method})
    return actor, payload


@bp.route("/links/<token>", methods=["GET", "HEAD", "PUT"])
def use_link(token: str) -> Response:
    actor, payload = _link_actor(token, request.method)
    objects = services().objects
    if request.method == "PUT":
        declared = _declared_length()
        obj = objects.upload(actor, payload["p"], _raw_body(declared), overwrite=False,
                             declared_size=declared, via="link",
                             object_id=payload.get("i"))
        return _created(obj)
    obj = objects.get_by_id(actor, payload["i"], "link_used")
    return _serve(actor, obj, via="link")


__all__ = ["bp", "object_json", "current_user"]
