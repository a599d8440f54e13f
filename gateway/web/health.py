"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from .context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():  # type: ignore[no-untyped-def]
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():  # type: ignore[no-untyped-def]
    svc = services()
    checks: dict[str, str] = {}
    try:
        with svc.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001  (any failure means not ready)
        checks["database"] = "unavailable"
    try:
        svc.store.check()
        checks["bucket"] = "ok"
    except Exception:  # noqa: BLE001
        checks["bucket"] = "unavailable"
    try:
        with svc.sessions() as s:
            svc.keyring.check(s)
        checks["keyring"] = "ok"
    except Exception:  # noqa: BLE001
        checks["keyring"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    resp = jsonify({"status": "ready" if ready else "not ready", "checks": checks})
    resp.status_code = 200 if ready else 503
    return resp
