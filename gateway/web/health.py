"""Liveness and readiness."""
from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import select, text

from ..db.models import EncryptionMode, Organisation
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
    if checks["bucket"] == "ok" and checks["database"] == "ok":
        ssec = _ssec_check(svc)
        if ssec is not None:
            checks["ssec"] = ssec
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


def _ssec_check(svc) -> str | None:  # type: ignore[no-untyped-def]
    """``"ok"``, or the one line an operator needs when organisations in ``ssec`` mode cannot
    upload because the bucket blocks SSE-C (AWS does so on new buckets since April 2026);
    ``None`` when no organisation uses SSE-C."""
    try:
        with svc.sessions() as s:
            names = list(s.scalars(select(Organisation.name).where(
                Organisation.encryption_mode == EncryptionMode.SSEC.value)
                .order_by(Organisation.name)))
        if not names:
            return None
        return svc.store.ssec_refusal(names) or "ok"
    except Exception:  # noqa: BLE001  (the database and bucket checks report outages)
        return "unavailable"
