"""Errors translated once, at the HTTP edge, into the contract's JSON error answers."""
from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: ``{"error": {"code": ..., "message": ...}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
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


DATABASE_DOWN = "the database (and with it the audit log) is unavailable; nothing was served"


def translate(exc: BaseException) -> ApiError | None:
    """Map an exception raised below the web layer to its answer (``None``: unexpected)."""
    from ..config import SettingsError

    mapping: list[tuple[str, str, int, str, str | None]] = [
        ("gateway.paths", "PathError", 400, "bad_path", None),
        ("gateway.formstream", "FormError", 400, "bad_request", None),
        ("gateway.audit", "AuditUnavailable", 503, "audit_unavailable",
         "the audit log is unavailable; nothing was served"),
        # the database holds the audit log: when it cannot be reached, nothing is served
        ("sqlalchemy.exc", "OperationalError", 503, "audit_unavailable", DATABASE_DOWN),
        ("sqlalchemy.exc", "InterfaceError", 503, "audit_unavailable", DATABASE_DOWN),
        ("gateway.keyring", "KeyringError", 503, "keyring_unavailable",
         "the keyring is unavailable; nothing was served"),
        ("gateway.storage", "StorageNotFound", 404, "not_found", "no such object"),
        ("gateway.storage", "SseCRefused", 502, "ssec_refused", None),
        ("gateway.storage", "StorageError", 502, "storage_failure", "the storage service failed"),
        ("gateway.envelope", "DecryptionError", 502, "integrity_failure",
         "the stored object failed its integrity check"),
    ]
    import sys

    objects = sys.modules.get("gateway.objects")
    if objects is not None and isinstance(exc, objects.ObjectError):
        return ApiError(exc.status, exc.code, exc.message, exc.headers)
    for module_name, class_name, status, code, message in mapping:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module else None
        if cls is not None and isinstance(exc, cls):
            return ApiError(status, code, message or str(exc))
    if isinstance(exc, SettingsError):
        return ApiError(503, "misconfigured", "the gateway is misconfigured")
    return None


def init_app(app: Flask) -> None:
    """Register the handlers that turn every failure into a contract answer, never a traceback."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        status = exc.code or 500
        if status == 413:
            code = "too_large"
        return error_response(status, code, exc.description or exc.name or "error")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        known = translate(exc)
        if known is not None:
            return error_response(known.status, known.code, known.message, known.headers)
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the gateway failed; the error was logged")
