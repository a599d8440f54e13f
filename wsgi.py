"""The WSGI application for gunicorn: ``gunicorn -c python:gateway.serve wsgi:app``."""
from __future__ import annotations

import sys

from gateway.app import create_app
from gateway.config import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    print(f"gateway: {exc}", file=sys.stderr)
    sys.exit(2)
