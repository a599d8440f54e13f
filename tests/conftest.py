"""Shared fixtures. Services (PostgreSQL, moto's S3 server, chromium) live in tests.services."""
from __future__ import annotations

pytest_plugins = ["tests.services"]
