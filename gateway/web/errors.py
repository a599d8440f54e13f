"""Errors translated once, at the HTTP edge, into the contract's JSON error answers.

Every refusal below the web layer is a :class:`~gateway.errors.GatewayError` that carries its
status and code; one ``isinstance`` turns it into an answer. Anything else is a bug: logged,
and answered 500 without details.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from ..errors import GatewayError
from .context import request_id, route

log = logging.getLogger(__name__)


class ApiError(GatewayError):
    """An error answer the web layer decides itself: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.status = status
        self.code = code


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error answer for the API, a small HTML page for the browser pages."""
    if _wants_html():
        resp = Response(
            render_template("error.html", status=status, message=message), status=status
        )
    else:
        resp = jsonify({"error": {"code": code, "message": message}})
        resp.status_code = status
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _wants_html() -> bool:
    if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz"):
        return False
    return request.accept_mimetypes.accept_html


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into a contract answer, never a traceback."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        if status == 413:
            code = "too_large"
        # keep what the exception says about the answer (a 405's Allow, RFC 9110 15.5.6)
        kept = {k: v for k, v in exc.get_headers() if k.lower() in ("allow", "retry-after")}
        return error_response(status, code, exc.description or exc.name or "error", kept)

    @app.errorhandler(Exception)
    def _any_error(exc: Exception) -> Response:
        if isinstance(exc, GatewayError):
            return error_response(exc.status, exc.code, exc.answer, exc.headers)
        # the route, not the path: paths name patients, and a link's path is its credential
        log.exception("unexpected error on %s %s (request %s)", request.method,
                      route() or "-", request_id())
        return error_response(500, "internal_error", "the gateway failed; the error was logged")
