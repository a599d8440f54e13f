"""Per-request context: the services, the request id, the acting user, the body limit, and
what the access log may say about the request."""
from __future__ import annotations

import io
import sys
import uuid

from flask import Flask, current_app, g, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from ..principal import Actor
from ..services import Services


def services() -> Services:
    """The application's services."""
    return current_app.extensions["gateway"]


#: WSGI environ keys the access log reads (``gateway.serve.AccessLogger``): the URL rule that
#: matched and the request id. The raw path and query (patient names, link tokens) are never
#: handed to the log.
ENVIRON_ROUTE = "gateway.route"
ENVIRON_REQUEST_ID = "gateway.request_id"

#: The largest body a request may send, except the upload routes, which stream theirs to the
#: encryptor under the upload limit. Larger bodies are refused with 413 before they are read
#: (by ``Content-Length``) or as soon as the limit is passed (chunked bodies).
MAX_REQUEST_BYTES = 64 * 1024

#: (method, URL rule) of the routes whose body is an upload; rules ending in ``*`` are prefixes
#: (the resumable-upload routes).
UPLOAD_ROUTES = frozenset({
    ("PUT", "/api/v1/files/<objpath:path>"),
    ("POST", "/api/v1/files"),
    ("PUT", "/api/v1/links/<token>"),
    ("POST", "/api/v1/uploads*"),
    ("PATCH", "/api/v1/uploads*"),
})
_NO_LIMIT = sys.maxsize


def request_id() -> str:
    """This request's id (also sent back as ``X-Request-Id``)."""
    rid = getattr(g, "request_id", None)
    if rid is None:
        rid = g.request_id = uuid.uuid4().hex
        request.environ[ENVIRON_REQUEST_ID] = rid
    return rid


def route() -> str | None:
    """The URL rule this request matched (``/api/v1/files/<objpath:path>``), if any."""
    rule = request.url_rule
    return rule.rule if rule is not None else None


def is_upload_route(method: str, rule: str | None) -> bool:
    if rule is None:
        return False
    if (method, rule) in UPLOAD_ROUTES:
        return True
    return any(m == method and r.endswith("*") and rule.startswith(r[:-1])
               for m, r in UPLOAD_ROUTES)


def _start_request() -> None:
    request.environ[ENVIRON_ROUTE] = route() or "-"
    request_id()
    if is_upload_route(request.method, route()):
        # the upload's own limit (GATEWAY_MAX_UPLOAD_BYTES) is checked while streaming
        request.max_content_length = _NO_LIMIT
        return
    _limit_body(current_app.config["MAX_CONTENT_LENGTH"])


def _limit_body(limit: int | None) -> None:
    """Refuse (413) a body over ``limit`` before anything reads it.

    A declared ``Content-Length`` over the limit is refused at once. A chunked body has no
    length: it is read here, at most ``limit + 1`` bytes of it, and refused if there are more
    (Werkzeug alone would stop at the limit and hand over the body cut short, without an
    error); the bytes read are handed on to whatever reads the body next.
    """
    if limit is None:
        return
    environ = request.environ
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise RequestEntityTooLarge()
        return
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and environ.get("wsgi.input_terminated"):
        body = environ["wsgi.input"].read(limit + 1)
        if len(body) > limit:
            raise RequestEntityTooLarge()
        environ["wsgi.input"] = io.BytesIO(body)


def body_stream():  # type: ignore[no-untyped-def]
    """The request body to read from.

    The server's own input when it ends the body itself (gunicorn does, and says so with
    ``wsgi.input_terminated``), which spares Werkzeug's copy of every byte on uploads;
    Werkzeug's length-limited stream otherwise. Reads from the former raise ``OSError``
    (``TimeoutError`` past a body deadline) where the latter raises ``ClientDisconnected``.
    """
    environ = request.environ
    if environ.get("wsgi.input_terminated"):
        return environ["wsgi.input"]
    return request.stream


def client_addr() -> str | None:
    return request.remote_addr


def current_actor() -> Actor:
    """The authenticated user of this request as an :class:`Actor` (anonymous if none)."""
    user = current_user
    if user is not None and getattr(user, "is_authenticated", False):
        return Actor(
            org_id=user.org_id,
            user_id=user.id,
            email=user.email,
            role=user.role,
            client_addr=client_addr(),
            user_agent=(request.user_agent.string or None),
            request_id=request_id(),
        )
    return anonymous_actor()


def anonymous_actor(org_id: str | None = None, email: str | None = None) -> Actor:
    return Actor(
        org_id=org_id,
        email=email,
        client_addr=client_addr(),
        user_agent=(request.user_agent.string or None),
        request_id=request_id(),
    )


def init_app(app: Flask) -> None:
    """Register first, so that the upload routes lift the body limit (``MAX_CONTENT_LENGTH``,
    :data:`MAX_REQUEST_BYTES`) before any other hook could read a body."""
    app.before_request(_start_request)

    @app.after_request
    def _request_id_header(response):  # type: ignore[no-untyped-def]
        response.headers["X-Request-Id"] = request_id()
        return response
