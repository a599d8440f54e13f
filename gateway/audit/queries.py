"""Asking the trail: filtered, paged queries of one organisation's events, and the parsing of
filters shared by the command line and the HTTP API."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Any, Iterator, Sequence

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import AuditEvent
from ..db.prefix import prefix_condition
from .events import SYSTEM_CHAIN, Action, FilterError, Outcome
from .review import outside_condition


def _as_values(value: Any, enum: type[Enum]) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, Enum)) else list(value)
    return [enum(v).value for v in items]


#: The largest user id (the column is a 32-bit integer on every backend).
MAX_USER_ID = 2**31 - 1
#: The largest cursor (a sequence number or row id: 64-bit integers).
MAX_CURSOR = 2**63 - 1


def _user_id(value: int) -> int:
    if not 0 <= value <= MAX_USER_ID:
        raise FilterError(f"user id must be between 0 and {MAX_USER_ID}")
    return value


def check_cursor(value: int | None) -> int | None:
    """A paging cursor within the column's range. :raises FilterError: otherwise."""
    if value is not None and not 0 <= value <= MAX_CURSOR:
        raise FilterError(f"after must be between 0 and {MAX_CURSOR}")
    return value


def user_condition(user: str | int) -> ColumnElement[bool]:
    """A user given as an id (``42`` or ``"42"``) or an e-mail address (case-insensitive).

    :raises FilterError: for anything else, or an id out of the column's range.
    """
    if isinstance(user, int) and not isinstance(user, bool):
        return AuditEvent.user_id == _user_id(user)
    text = str(user).strip()
    if text.isascii() and text.isdigit():
        return AuditEvent.user_id == _user_id(int(text))
    if "@" in text:
        return func.lower(AuditEvent.user_email) == text.lower()
    raise FilterError(f"user must be a user id or an e-mail address, not {user!r}")


#: What "hide my own searches" leaves out: the acting auditor's queries and exports.
OWN_SEARCH_ACTIONS = (Action.AUDIT_QUERY.value, Action.AUDIT_EXPORT.value)
#: The longest file name or path a filter accepts (the column's width).
MAX_PATH = 1024


def check_path(value: str, what: str = "path") -> str:
    """A path or name filter of a sane length. :raises FilterError: otherwise."""
    if len(value) > MAX_PATH:
        raise FilterError(f"{what} must be at most {MAX_PATH} characters")
    if any(ord(c) < 32 for c in value):
        raise FilterError(f"{what} must not contain control characters")
    return value


def name_condition(name: str) -> ColumnElement[bool]:
    """Events of a file whose name (the path's last part) is ``name``, case-insensitively;
    with a ``*`` at its end, whose name starts with it (``wound*``)."""
    text = check_path(name.strip(), "name").lstrip("/")
    if "/" in text:
        raise FilterError("name is a file name without folders: use path for a full path")
    lowered = func.lower(AuditEvent.object_path)
    if text.endswith("*"):
        stem = text[:-1].lower()
        if not stem:
            raise FilterError("name needs at least one character before *")
        # the name starts with stem: the path is stem..., or it has /stem... (an exact
        # comparison per candidate position is not expressible portably, so LIKE with escapes)
        pattern = _like_escape(stem) + "%"
        return or_(lowered.like(pattern, escape="\\"),
                   lowered.like("%/" + pattern, escape="\\"))
    lowered_name = text.lower()
    n = len(lowered_name)
    return or_(lowered == lowered_name,
               func.substr(lowered, func.length(lowered) - n) == "/" + lowered_name)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(
    *, org_id: str | None, all_orgs: bool = False, user: str | int | None = None,
    object_id: str | None = None, object_path: str | None = None, action: Any = None,
    outcome: Any = None, since: datetime | None = None, until: datetime | None = None,
    name: str | None = None, exclude_queries_of: int | None = None,
    http_status: int | None = None,
    outside: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if org_id is None:
        if not all_orgs:
            raise ValueError("an audit query is restricted to one organisation")
    elif org_id == SYSTEM_CHAIN:
        conds.append(AuditEvent.chain == SYSTEM_CHAIN)
    elif since is not None or until is not None:
        # an organisation's events are its chain; named by org_id, the (org_id, occurred_at)
        # index serves a time range, by chain the (chain, seq) index serves the newest rows
        # (both conditions at once mislead PostgreSQL's estimates into sorting the chain)
        conds.append(AuditEvent.org_id == org_id)
    else:
        conds.append(AuditEvent.chain == org_id)
    if user is not None and user != "":
        conds.append(user_condition(user))
    if object_id:
        conds.append(AuditEvent.object_id == object_id)
    if object_path:
        check_path(object_path)
        if object_path.endswith("*"):
            conds.append(prefix_condition(AuditEvent.object_path, object_path[:-1]))
        else:
            conds.append(AuditEvent.object_path == object_path)
    if name:
        conds.append(name_condition(name))
    if http_status is not None:
        conds.append(AuditEvent.http_status == http_status)
    if outside is not None:
        conds.append(outside_condition(outside))
    if exclude_queries_of is not None:
        # the auditor's own searches and exports: recorded, but left out of what they read
        conds.append(or_(AuditEvent.user_id.is_(None),
                         AuditEvent.user_id != _user_id(exclude_queries_of),
                         AuditEvent.action.not_in(OWN_SEARCH_ACTIONS)))
    actions = _as_values(action, Action)
    if actions:
        conds.append(AuditEvent.action.in_(actions))
    outcomes = _as_values(outcome, Outcome)
    if outcomes:
        conds.append(AuditEvent.outcome.in_(outcomes))
    for bound in (since, until):
        if bound is not None and bound.tzinfo is None:
            raise ValueError("since and until must be timezone-aware")
    if since is not None:
        conds.append(AuditEvent.occurred_at >= since)
    if until is not None:
        conds.append(AuditEvent.occurred_at < until)
    return conds


def _cursor_column(org_id: str | None) -> Any:
    """What a page is keyed on: the chain's ``seq`` for one organisation (numbers that count
    only its own events), the global row ``id`` for an operator's query across every chain."""
    return AuditEvent.id if org_id is None else AuditEvent.seq


def _keyed(conds: list[ColumnElement[bool]], org_id: str | None, after: int | None,
           descending: bool) -> tuple[list[ColumnElement[bool]], Any]:
    column = _cursor_column(org_id)
    if check_cursor(after) is not None:
        conds = [*conds, column < after if descending else column > after]
    return conds, column.desc() if descending else column


def query(
    session: Session,
    *,
    org_id: str | None,
    user: str | int | None = None,
    object_id: str | None = None,
    object_path: str | None = None,
    action: Action | str | Sequence[Action | str] | None = None,
    outcome: Outcome | str | Sequence[Outcome | str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    after: int | None = None,
    descending: bool = False,
    all_orgs: bool = False,
    name: str | None = None,
    exclude_queries_of: int | None = None,
    http_status: int | None = None,
    outside: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[AuditEvent]:
    """One page of events, oldest first (or newest first with ``descending``).

    :param org_id: the organisation whose events are returned (the caller passes the acting
        user's); :data:`SYSTEM_CHAIN` for events without one. ``None`` only with ``all_orgs``
        (an operator on the server).
    :param user: a user id or e-mail address.
    :param object_path: an exact path, or a prefix ending in ``*``.
    :param name: a file name (the path's last part), case-insensitive; ``*`` at its end for
        names starting with it.
    :param exclude_queries_of: a user id whose ``audit_query`` and ``audit_export`` rows are
        left out (an auditor hiding their own searches).
    :param http_status: the HTTP status answered (``429``: throttled).
    :param outside: UTC intervals (the working hours): a person's access at none of them.
    :param since: inclusive; ``until``: exclusive. Timezone-aware.
    :param after: keyset cursor: the last ``seq`` of the previous page (the last row ``id``
        for a query of every organisation).
    :raises FilterError: for an unknown action, outcome or user form, or a cursor out of range.
    :raises ValueError: for a missing org or naive times (the caller's mistake).
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    conds = _conditions(org_id=org_id, all_orgs=all_orgs, user=user, object_id=object_id,
                        object_path=object_path, action=action, outcome=outcome, since=since,
                        until=until, name=name, exclude_queries_of=exclude_queries_of,
                        http_status=http_status, outside=outside)
    conds, order = _keyed(conds, org_id, after, descending)
    return list(session.scalars(select(AuditEvent).where(*conds).order_by(order).limit(limit)))


def count(session: Session, *, org_id: str | None, all_orgs: bool = False,
          **filters: Any) -> int:
    """How many events match (the filters of :func:`query`; with ``after``, those beyond the
    cursor in the order of ``descending``)."""
    descending = filters.pop("descending", False)
    after = filters.pop("after", None)
    conds = _conditions(org_id=org_id, all_orgs=all_orgs, **filters)
    conds, _ = _keyed(conds, org_id, after, descending)
    return session.scalar(select(func.count()).select_from(AuditEvent).where(*conds)) or 0


def folder_prefix(prefix: str) -> str:
    """A folder as a path prefix: without a leading ``/``, with a trailing one (so that
    ``patients/12`` does not take in ``patients/123``). :raises FilterError: when empty."""
    text = check_path(prefix.strip(), "prefix").lstrip("/")
    if text.endswith("*"):
        text = text[:-1]
    if not text:
        raise FilterError("prefix must name a folder, e.g. patients/12345/")
    return text if text.endswith("/") else text + "/"


def cursor_of(event: AuditEvent, org_id: str | None) -> int:
    """The cursor that follows ``event`` in a query of ``org_id`` (see :func:`query`)."""
    return event.id if org_id is None else event.seq


def cursor_after(session: Session, *, limit: int, after: int | None = None,
                 descending: bool = False, all_orgs: bool = False, **filters: Any) -> int | None:
    """The cursor that follows a page of ``limit`` events, or None when no event follows it.

    Asks for cursors only, so that an export can send it as a header before streaming the page.
    """
    conds = _conditions(all_orgs=all_orgs, **filters)
    conds, order = _keyed(conds, filters.get("org_id"), after, descending)
    column = _cursor_column(filters.get("org_id"))
    keys = list(session.scalars(select(column).where(*conds).order_by(order)
                                .offset(limit - 1).limit(2)))
    return keys[0] if len(keys) == 2 else None


@dataclass
class Page:
    events: list[AuditEvent]
    next: int | None  # cursor (``after``) of the next page, None on the last page


def query_page(session: Session, *, limit: int = 100, **filters: Any) -> Page:
    """:func:`query`, plus the cursor of the next page (``None`` when this one is the last)."""
    rows = query(session, limit=limit + 1, **filters)
    if len(rows) > limit:
        return Page(rows[:limit], cursor_of(rows[limit - 1], filters.get("org_id")))
    return Page(rows, None)


def iter_query(sessions: sessionmaker[Session], *, limit: int | None = None,
               batch_size: int = 1000, **filters: Any) -> Iterator[AuditEvent]:
    """Every matching event (up to ``limit``), read in keyset batches, one session per batch."""
    after = filters.pop("after", None)
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        with sessions() as session:
            rows = query(session, limit=size, after=after, **filters)
        yield from rows
        if len(rows) < size:
            return
        after = cursor_of(rows[-1], filters.get("org_id"))
        if remaining is not None:
            remaining -= len(rows)


# --------------------------------------------------------------------------------------------
# Parsing filters (shared by the command line and the HTTP API)

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(value: str, *, end: bool = False) -> datetime:
    """An ISO 8601 time or a ``YYYY-MM-DD`` date, as aware UTC; naive times are UTC.

    A date alone means its start, or with ``end`` the start of the next day (so ``until
    2026-11-30`` includes the whole of that day).
    :raises FilterError: with a message fit for the user.
    """
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time.min, tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except OverflowError:  # the calendar's edges: 9999-12-31 + 1 day, year 1 at +14:00
        raise FilterError(f"{value!r} is outside the calendar (years 1 to 9999 in UTC)") from None
    except ValueError:
        raise FilterError(
            f"{value!r} is not a date: use YYYY-MM-DD or ISO 8601 such as 2026-11-25T14:30:00Z"
        ) from None


def parse_action(value: str) -> list[str]:
    """One action or several separated by commas; :class:`FilterError` names the valid ones."""
    return _parse_enum(value, Action, "action")


def parse_outcome(value: str) -> list[str]:
    return _parse_enum(value, Outcome, "outcome")


def _parse_enum(value: str, enum: type[Enum], what: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    valid = [m.value for m in enum]
    for item in items:
        if item not in valid:
            raise FilterError(f"unknown {what} {item!r}; one of: {', '.join(valid)}")
    return items


def parse_month(value: str) -> tuple[int, int]:
    """``YYYY-MM`` as ``(year, month)``."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", value.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise FilterError(f"{value!r} is not a month: use YYYY-MM, e.g. 2026-11")
    return int(match.group(1)), int(match.group(2))
