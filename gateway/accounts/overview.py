"""What the admin console shows of an organisation besides its accounts: key versions and
the objects each protects, the key rotation jobs and their progress, and storage health.

Read-only. The keyring and the object store are reached through the application's services
(``services.keyring.usage``, ``services.store.check``), so this room imports neither.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from ..db.models import AuditEvent, Job, StoredObject, utcnow
from .trail import iso

#: The jobs the console lists (those of ``gateway keys rewrap|reencrypt|migrate-ssec``).
JOB_LIMIT = 20
#: A running job not updated for this long was interrupted (re-running it continues it).
STALLED_SECONDS = 120


def key_versions(services: Any, org_id: str) -> dict[str, Any]:
    """The organisation's key versions, oldest first, with how many objects (and bytes) each
    protects, and which one new uploads use."""
    with services.sessions() as s:
        usage = services.keyring.usage(s, org_id)
    versions = [
        {"version": u.version, "state": u.state, "created_at": iso(u.created_at),
         "objects": u.objects, "bytes": u.bytes}
        for u in usage
    ]
    current = next((v["version"] for v in versions if v["state"] == "current"), None)
    return {"current": current, "versions": versions,
            "objects": sum(v["objects"] for v in versions)}


def jobs(services: Any, org_id: str, limit: int = JOB_LIMIT) -> dict[str, Any]:
    """The organisation's rotation jobs, newest first: running ones and the last finished.

    ``pending`` is how many of the organisation's objects are not yet on the current key
    version (what a rewrap still has to move). A ``running`` job whose row has not moved for
    :data:`STALLED_SECONDS` is reported ``interrupted``.
    """
    stalled_before = utcnow() - timedelta(seconds=STALLED_SECONDS)
    with services.sessions() as s:
        rows = s.scalars(select(Job).where(Job.org_id == org_id)
                         .order_by(Job.started_at.desc(), Job.id.desc()).limit(limit)).all()
        usage = services.keyring.usage(s, org_id)
        current = max((u.version for u in usage if u.state == "current"), default=None)
        total = int(s.scalar(select(func.count(StoredObject.id))
                             .where(StoredObject.org_id == org_id)) or 0)
        pending = int(s.scalar(select(func.count(StoredObject.id)).where(
            StoredObject.org_id == org_id, StoredObject.key_version != current)) or 0)
        out = []
        for j in rows:
            state = j.state
            if state == "running" and j.updated_at < stalled_before:
                state = "interrupted"
            out.append({
                "id": j.id, "kind": j.kind, "state": state,
                "done": j.done_count, "done_bytes": j.done_bytes, "failed": j.failed_count,
                "started_at": iso(j.started_at), "updated_at": iso(j.updated_at),
                "finished_at": iso(j.finished_at),
            })
    return {"jobs": out, "objects": total, "pending": pending, "current_version": current}


def storage_health(services: Any, org_id: str) -> dict[str, Any]:
    """Whether the bucket answers, and the organisation's last recorded reconcile run."""
    try:
        services.store.check()
        bucket = "ok"
    except Exception:  # noqa: BLE001  (any failure means unreachable; details in the logs)
        bucket = "unavailable"
    with services.sessions() as s:
        last = s.execute(
            select(AuditEvent.occurred_at, AuditEvent.outcome, AuditEvent.detail)
            .where(AuditEvent.action == "storage_reconcile", AuditEvent.org_id == org_id)
            .order_by(AuditEvent.occurred_at.desc()).limit(1)
        ).first()
    return {
        "bucket": bucket,
        "last_reconcile": ({"at": iso(last[0]), "outcome": last[1],
                            "result": _reconcile_result(last[2])} if last else None),
    }


def _reconcile_result(detail: object) -> dict[str, object]:
    """The counts a reconcile run recorded for this organisation."""
    import json

    try:
        found = json.loads(detail) if isinstance(detail, str) else dict(detail or {})  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return {}
    return {k: found[k] for k in ("orphans", "missing", "open_uploads", "fixed", "clean")
            if k in found}


__all__ = ["jobs", "key_versions", "storage_health"]
