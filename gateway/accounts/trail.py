"""Recording account changes in the audit trail, the same way from the browser and the CLI.

The accounts room does not import the audit room: the functions here are handed the
application's services (``services.audit.record(...)``) and the acting ``actor`` (a
:class:`gateway.principal.Actor`). An ``actor`` of ``None`` means an unattended set-up step
(seeding a test or dev database) and records nothing; every command and request passes one.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from .errors import AccountError


def iso(value: datetime | None) -> str | None:
    """A UTC timestamp as the API writes it (``2026-12-02T10:00:00Z``)."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def record(services: Any, actor: Any, action: str, org_id: str | None,
           detail: dict[str, Any], outcome: str = "success") -> None:
    """Append one account event to ``org_id``'s chain (the system chain for ``None``).

    Called after the change is committed and its database session closed (SQLite allows one
    writer at a time). :class:`~gateway.audit.events.AuditUnavailable` propagates.
    """
    if actor is None:
        return
    services.audit.record(action=action, outcome=outcome, actor=actor,
                          org_id=org_id or getattr(actor, "org_id", None), detail=detail)


@contextmanager
def refusals(services: Any, actor: Any, action: str, org_id: str | None,
             detail: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Record a refused account change (outcome ``denied``, with the reason) and re-raise.

    Yields a dict: setting its ``"org_id"`` once the target is known records the refusal in
    the target's organisation rather than ``org_id``'s.
    """
    where: dict[str, Any] = {"org_id": org_id}
    try:
        yield where
    except AccountError as exc:
        record(services, actor, action, where["org_id"], {**detail, "reason": exc.message},
               outcome="denied")
        raise
