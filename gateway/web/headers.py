"""Security headers on every answer (Flask-Talisman)."""
from __future__ import annotations

from flask import Flask
from flask_talisman import Talisman

CSP = {
    "default-src": "'self'",
    "img-src": "'self' data: blob:",
    "media-src": "'self' blob:",
    "object-src": "'none'",
    "frame-ancestors": "'self'",
    "frame-src": "'self'",
    "base-uri": "'self'",
    "form-action": "'self'",
}


def init_app(app: Flask) -> None:
    # HTTPS is terminated in front of the gateway in production; the gateway itself does not
    # redirect, so tests and the dev stack work over loopback HTTP.
    Talisman(
        app,
        force_https=False,
        # the application decides SESSION_COOKIE_SECURE (Settings.secure_cookies); Talisman's
        # own switch would only force it on outside debug mode
        session_cookie_secure=False,
        strict_transport_security=True,
        content_security_policy=CSP,
        referrer_policy="no-referrer",
        frame_options="SAMEORIGIN",
    )
