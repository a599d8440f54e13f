"""What an auditor should look at first: counts over one organisation's events in a window.

Pure SQL over :class:`~gateway.db.models.AuditEvent` (no Flask, no settings): the caller
passes the organisation, the window and the thresholds. Each item names the filters of the
events behind it, so that a page can link a count to the rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, func, not_, or_, select
from sqlalchemy.orm import Session

from ..db.models import AuditEvent
from .events import Action, FilterError, Outcome

#: Reading a file's bytes: what a bulk download is made of.
FETCH_ACTIONS = (Action.VIEW.value, Action.DOWNLOAD.value, Action.RANGE_READ.value)
#: What a person does with the files or to sign in: what "outside working hours" counts.
ACCESS_ACTIONS = (*FETCH_ACTIONS, Action.UPLOAD.value, Action.MOVE.value, Action.DELETE.value,
                  Action.PURGE.value, Action.RESTORE.value, Action.LINK_ISSUED.value,
                  Action.LINK_USED.value, Action.LOGIN.value, Action.LIST.value)
#: The longest window the outside-hours filter spans (one interval per day).
MAX_HOURS_DAYS = 400


@dataclass
class Item:
    """One line of the dashboard: a count and the filters of the events behind it."""

    key: str
    title: str
    count: int
    filters: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)


def parse_working_hours(value: str) -> tuple[time, time]:
    """``HH:MM-HH:MM`` as two times (the end after the start). :raises ValueError: otherwise."""
    start_text, sep, end_text = value.strip().partition("-")
    try:
        if not sep:
            raise ValueError
        start, end = time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not a range of hours: use HH:MM-HH:MM, e.g. 07:00-19:00"
                         ) from None
    if end <= start:
        raise ValueError(f"{value!r}: the end must come after the start (same day)")
    return start, end


def working_intervals(since: datetime, until: datetime, hours: tuple[time, time],
                      tz: str) -> list[tuple[datetime, datetime]]:
    """The working hours of each local day that touches ``[since, until)``, in UTC."""
    zone = ZoneInfo(tz)
    first = since.astimezone(zone).date() - timedelta(days=1)
    last = until.astimezone(zone).date() + timedelta(days=1)
    if (last - first).days > MAX_HOURS_DAYS:
        raise FilterError(f"outside_hours spans at most {MAX_HOURS_DAYS} days: narrow "
                          "since and until")
    out: list[tuple[datetime, datetime]] = []
    day: date = first
    while day <= last:
        start = datetime.combine(day, hours[0], tzinfo=zone).astimezone(timezone.utc)
        end = datetime.combine(day, hours[1], tzinfo=zone).astimezone(timezone.utc)
        out.append((start, end))
        day += timedelta(days=1)
    return out


def outside_condition(intervals: Sequence[tuple[datetime, datetime]]) -> ColumnElement[bool]:
    """A person's access (:data:`ACCESS_ACTIONS`, not the ``started`` half of a transfer)
    at a time in none of ``intervals``."""
    inside = or_(*[and_(AuditEvent.occurred_at >= a, AuditEvent.occurred_at < b)
                   for a, b in intervals]) if intervals else None
    conds = [AuditEvent.user_id.is_not(None), AuditEvent.action.in_(ACCESS_ACTIONS),
             AuditEvent.outcome != Outcome.STARTED.value]
    if inside is not None:
        conds.append(not_(inside))
    return and_(*conds)


def _scope(org_id: str, since: datetime, until: datetime) -> list[ColumnElement[bool]]:
    return [AuditEvent.org_id == org_id, AuditEvent.occurred_at >= since,
            AuditEvent.occurred_at < until]


def _count(session: Session, conds: list[ColumnElement[bool]]) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent).where(*conds)) or 0


def _hour(session: Session) -> Any:
    """The clock hour (UTC) of ``occurred_at``, as the backend writes it."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", AuditEvent.occurred_at),
                            'YYYY-MM-DD"T"HH24:00:00"Z"')
    return func.strftime("%Y-%m-%dT%H:00:00Z", AuditEvent.occurred_at)


def bulk_fetches(session: Session, *, org_id: str, since: datetime, until: datetime,
                 max_files: int, max_bytes: int, limit: int = 50) -> list[dict[str, Any]]:
    """Users who fetched more than ``max_files`` distinct files or ``max_bytes`` bytes in one
    clock hour (UTC), the largest first: ``user_id``, ``user_email``, ``hour``, ``files``,
    ``bytes``."""
    hour = _hour(session).label("hour")
    files = func.count(func.distinct(AuditEvent.object_id)).label("files")
    nbytes = func.coalesce(func.sum(AuditEvent.bytes), 0).label("bytes")
    stmt = (select(AuditEvent.user_id, func.max(AuditEvent.user_email), hour, files, nbytes)
            .where(*_scope(org_id, since, until), AuditEvent.user_id.is_not(None),
                   AuditEvent.action.in_(FETCH_ACTIONS),
                   AuditEvent.outcome.in_((Outcome.COMPLETED.value, Outcome.ABORTED.value)))
            .group_by(AuditEvent.user_id, hour)
            .having(or_(files > max_files, nbytes > max_bytes))
            .order_by(nbytes.desc(), files.desc()).limit(limit))
    return [{"user_id": uid, "user_email": email, "hour": h, "files": int(f), "bytes": int(b)}
            for uid, email, h, f, b in session.execute(stmt)]


def last_verification(session: Session, org_id: str) -> dict[str, Any] | None:
    """The newest ``audit_verify`` row of the organisation's chain, or None."""
    row = session.scalars(select(AuditEvent).where(
        AuditEvent.chain == org_id, AuditEvent.action == Action.AUDIT_VERIFY.value)
        .order_by(AuditEvent.seq.desc()).limit(1)).first()
    if row is None:
        return None
    try:
        detail = json.loads(row.detail) if row.detail else {}
    except ValueError:
        detail = {}
    return {"seq": row.seq, "occurred_at": row.occurred_at, "outcome": row.outcome,
            "user_email": row.user_email, "rows": detail.get("rows"),
            "fault": detail.get("fault")}


def review(session: Session, *, org_id: str, since: datetime, until: datetime,
           max_files: int, max_bytes: int, hours: tuple[time, time], tz: str) -> list[Item]:
    """The dashboard's items for ``org_id`` over ``[since, until)``."""
    scope = _scope(org_id, since, until)
    login_failed = _count(session, [*scope, AuditEvent.action == Action.LOGIN_FAILED.value])
    throttled = _count(session, [*scope, AuditEvent.http_status == 429])
    denied = _count(session, [*scope, AuditEvent.outcome == Outcome.DENIED.value])
    integrity = _count(session, [*scope,
                                 AuditEvent.outcome == Outcome.INTEGRITY_FAILURE.value])
    bulk = bulk_fetches(session, org_id=org_id, since=since, until=until,
                        max_files=max_files, max_bytes=max_bytes)
    outside = _count(session, [*scope, outside_condition(
        working_intervals(since, until, hours, tz))])
    return [
        Item("login_failed", "Failed sign-ins", login_failed, {"action": "login_failed"}),
        Item("throttled", "Throttled requests (429)", throttled, {"status": "429"}),
        Item("denied", "Denied requests", denied, {"outcome": "denied"}),
        Item("integrity", "Integrity failures", integrity,
             {"outcome": "integrity_failure"}),
        Item("bulk", "Bulk downloads", len(bulk), {"action": ",".join(FETCH_ACTIONS)}, bulk),
        Item("outside_hours", "Access outside working hours", outside,
             {"outside_hours": "1"}),
    ]


__all__ = ["ACCESS_ACTIONS", "FETCH_ACTIONS", "Item", "bulk_fetches", "last_verification",
           "outside_condition", "parse_working_hours", "review", "working_intervals"]
