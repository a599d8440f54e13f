"""The application factory."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Mapping

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import PathConverter

from .config import Settings
from .services import Services, build_services
from .web import (
    admin_api,
    admin_pages,
    audit_api,
    audit_pages,
    auth,
    context,
    errors,
    file_pages,
    files_api,
    headers,
    health,
    manage_api,
    openapi,
    pages,
    uploads_api,
)


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    test_config: Mapping[str, Any] | None = None,
) -> Flask:
    """Build the gateway's Flask application.

    :param settings: the settings; read from the environment (and validated) when omitted.
    :param services: already-built services (the dev stack and tests share them).
    :param test_config: Flask configuration overrides for tests.
    :raises gateway.config.SettingsError: when a required setting is missing or malformed.
    """
    if services is None:
        settings = settings or Settings.from_env()
        services = build_services(settings)
    settings = services.settings

    app = Flask(__name__)
    app.json = JSONProvider(app)
    app.url_map.merge_slashes = False  # "a//b" reaches the path check instead of a redirect
    app.url_map.converters["objpath"] = ObjectPathConverter
    app.config.update(
        SECRET_KEY=settings.secret_key,
        # every body but an upload's is small; the upload routes stream theirs, limited while
        # streaming (web/context.py lifts this limit for them)
        MAX_CONTENT_LENGTH=context.MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        # Secure unless served over plain HTTP on purpose: the dev stack on loopback. Behind a
        # TLS terminator (trusted proxies) and outside dev mode the cookie never travels in
        # the clear.
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="gateway_session",
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.idle_logout_seconds),
        IDLE_LOGOUT_SECONDS=settings.idle_logout_seconds,
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["gateway"] = services
    if settings.trusted_proxies:
        # Behind a TLS terminator the peer is the proxy: believe the client address (for the
        # audit trail and the sign-in throttle), scheme and host it forwards, and only from
        # that many proxies; with none trusted, those headers are ignored (anyone can send them).
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    context.init_app(app)
    errors.init_app(app)
    headers.init_app(app)
    auth.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(admin_pages.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(file_pages.bp)
    app.register_blueprint(audit_pages.bp)
    for api in (files_api, manage_api, uploads_api, audit_api, admin_api):
        app.register_blueprint(api.bp)
        auth.csrf.exempt(api.bp)  # these check CSRF themselves for cookie-authenticated writes
    return app


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, with a body nested deeper than the parser's recursion limit read as
    malformed JSON (a 400 from ``request.get_json``), never a 500."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None


class ObjectPathConverter(PathConverter):
    """Everything after the prefix, newlines and leading slashes included, so that every
    hostile path reaches :func:`gateway.files.paths.normalize_path` and is refused with an audit row
    rather than by the router."""

    regex = r"[\s\S]+"
    part_isolating = False

