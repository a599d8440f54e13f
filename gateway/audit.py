"""The audit trail: append-only events, chained per organisation with a keyed hash.

Every event is one row of ``audit_events``, written by :meth:`AuditLog.record` in its own short
transaction, committed before the call returns. Rows form one chain per organisation (and a
``"system"`` chain for events without one): row ``seq`` carries the hash of row ``seq - 1`` and
its own HMAC-SHA256 under the chain's key from the keyring, so that :func:`verify` finds any row
that was edited, deleted, inserted or moved. The exact bytes hashed are described in
``docs/audit.md`` and implemented by :func:`row_message`.

Nothing here knows Flask. The web layer answers ``503`` to :class:`AuditUnavailable` and serves
nothing (no audit, no access).
"""
from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .models import AuditChainHead, AuditEvent, utcnow
from .principal import Actor

if TYPE_CHECKING:
    from .services import Services

log = logging.getLogger(__name__)

#: The chain of events that belong to no organisation (e.g. a failed login for an unknown
#: e-mail address, or an operator command run without ``--org``).
SYSTEM_CHAIN = "system"
#: ``prev_hash`` of the first row of every chain.
GENESIS_HASH = "0" * 64
#: The format tag hashed first in every row (see :func:`row_message`).
HASH_FORMAT = "gateway-audit-v1"
#: The fields covered by ``row_hash``, in the order they are hashed.
HASHED_FIELDS: tuple[str, ...] = (
    "chain", "seq", "occurred_at", "org_id", "user_id", "user_email", "role", "action",
    "object_id", "object_path", "outcome", "http_status", "bytes", "client_addr", "user_agent",
    "request_id", "detail",
)
#: The columns of an exported event, in order (CSV header, JSON keys, archive lines).
EXPORT_FIELDS: tuple[str, ...] = ("id", *HASHED_FIELDS, "prev_hash", "row_hash")
ARCHIVE_PREFIX = "audit-archive"
ARCHIVE_FORMAT = "gateway-audit-archive-v1"

_NULL = b"\xff\xff\xff\xff"
_VERIFY_BATCH = 5000
_TEXT_LIMITS = {  # column lengths: longer values are cut so that a long header never fails a write
    "user_email": 320, "role": 16, "object_id": 32, "object_path": 1024, "client_addr": 64,
    "user_agent": 512, "request_id": 64,
}


class Action(str, Enum):
    """What happened. Stored as the value; never renamed (old rows keep their names)."""

    UPLOAD = "upload"  # outcome started, then completed / aborted with the bytes received
    VIEW = "view"  # inline display (outcome started, then completed / aborted)
    DOWNLOAD = "download"  # attachment (outcome started, then completed / aborted)
    RANGE_READ = "range_read"  # a Range request (outcome started, then completed / aborted)
    LIST = "list"
    DELETE = "delete"
    PURGE = "purge"
    RESTORE = "restore"
    LINK_ISSUED = "link_issued"
    LINK_USED = "link_used"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    DENIED = "denied"
    INTEGRITY_FAILURE = "integrity_failure"
    KEY_ROTATE = "key_rotate"
    KEY_REWRAP = "key_rewrap"
    KEY_REENCRYPT = "key_reencrypt"
    KEY_ROTATE_MASTER = "key_rotate_master"
    KEY_MIGRATE_SSEC = "key_migrate_ssec"
    KEY_RETIRE = "key_retire"
    ORG_CREATE = "org_create"
    USER_CREATE = "user_create"
    USER_UPDATE = "user_update"
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"
    STORAGE_RECONCILE = "storage_reconcile"
    DECRYPT = "decrypt"  # `gateway decrypt` run on the server
    AUDIT_QUERY = "audit_query"
    AUDIT_EXPORT = "audit_export"
    AUDIT_ARCHIVE = "audit_archive"
    AUDIT_VERIFY = "audit_verify"


class Outcome(str, Enum):
    """How it ended. Transfers write ``started`` before the first byte, then ``completed`` or
    ``aborted`` with the bytes actually moved."""

    SUCCESS = "success"
    STARTED = "started"
    COMPLETED = "completed"
    ABORTED = "aborted"
    DENIED = "denied"
    FAILURE = "failure"
    INTEGRITY_FAILURE = "integrity_failure"
    ERROR = "error"


class AuditUnavailable(Exception):
    """The event could not be recorded; whatever it was about must not happen (HTTP 503).

    The message is generic; the cause (database or keyring error) is chained for the logs.
    """


class AuditArchiveError(Exception):
    """An archive cannot be written or read (bad month, conflicting archive, broken rows)."""


# --------------------------------------------------------------------------------------------
# The chain: exact bytes and the keyed hash


def format_time(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the UTC form hashed and exported (always microseconds)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in the audit trail")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field_bytes(value: object) -> bytes:
    if value is None:
        return _NULL
    if isinstance(value, datetime):
        text = format_time(value)
    elif isinstance(value, bool):  # never stored; refuse rather than hash "True"
        raise TypeError("boolean in an audit field")
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} audit field")
    data = text.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def row_message(prev_hash: str, fields: Mapping[str, object]) -> bytes:
    """The exact bytes whose HMAC is a row's ``row_hash``.

    ``prev_hash`` (64 ASCII hex digits), then the format tag and each of :data:`HASHED_FIELDS`
    in order, each as a 4-byte big-endian length and its UTF-8 bytes; ``NULL`` is the length
    ``0xFFFFFFFF`` with no bytes. Integers are written in decimal, ``occurred_at`` by
    :func:`format_time`, ``detail`` as the stored JSON text.
    """
    if len(prev_hash) != 64:
        raise ValueError("prev_hash must be 64 hex digits")
    parts = [prev_hash.encode("ascii"), _field_bytes(HASH_FORMAT)]
    parts.extend(_field_bytes(fields[name]) for name in HASHED_FIELDS)
    return b"".join(parts)


def row_hash(key: bytes, prev_hash: str, fields: Mapping[str, object]) -> str:
    """HMAC-SHA256 of :func:`row_message` under the chain's key, as 64 hex digits."""
    return hmac.new(key, row_message(prev_hash, fields), hashlib.sha256).hexdigest()


def canonical_json(value: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 characters kept: the stored form of ``detail``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)


def _clean(value: str | None, limit: int | None) -> str | None:
    """A value the database stores exactly as hashed: no NUL, valid UTF-8, within the column."""
    if value is None:
        return None
    value = str(value).replace("\x00", "\ufffd")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit] if limit is not None else value


# --------------------------------------------------------------------------------------------
# Writing


class AuditLog:
    """Records events. One instance per process, shared by threads.

    :param sessions: the session factory (each event gets its own session and transaction).
    :param keyring: anything with ``audit_key(session, chain) -> bytes`` (32 bytes).
    :param clock: returns the current time (timezone-aware); tests fix it.
    """

    def __init__(self, sessions: sessionmaker[Session], keyring: Any,
                 *, clock: Callable[[], datetime] = utcnow) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock

    def record(
        self,
        *,
        action: Action | str,
        outcome: Outcome | str,
        actor: Actor,
        object_id: str | None = None,
        object_path: str | None = None,
        http_status: int | None = None,
        nbytes: int | None = None,
        detail: Mapping[str, Any] | None = None,
        org_id: str | None = None,
    ) -> AuditEvent:
        """Append one event to its organisation's chain and commit it.

        :param org_id: the chain; defaults to ``actor.org_id`` (``None``: the system chain).
        :returns: the committed row (detached; its ``id``, ``seq`` and hashes are set).
        :raises ValueError: for an unknown action or outcome, or a detail that is not JSON.
        :raises AuditUnavailable: when the event could not be recorded, for whatever reason.
        """
        org = org_id if org_id is not None else actor.org_id
        fields: dict[str, object] = {
            "org_id": org,
            "user_id": actor.user_id,
            "user_email": actor.email,
            "role": actor.role,
            "action": Action(action).value,
            "object_id": object_id,
            "object_path": object_path,
            "outcome": Outcome(outcome).value,
            "http_status": int(http_status) if http_status is not None else None,
            "bytes": int(nbytes) if nbytes is not None else None,
            "client_addr": actor.client_addr,
            "user_agent": actor.user_agent,
            "request_id": actor.request_id,
            "detail": canonical_json(detail) if detail is not None else None,
        }
        for name, limit in _TEXT_LIMITS.items():
            fields[name] = _clean(fields[name], limit)  # type: ignore[arg-type]
        fields["detail"] = _clean(fields["detail"], None)  # type: ignore[arg-type]
        chain = org or SYSTEM_CHAIN
        try:
            return self._append(chain, fields)
        except Exception as exc:  # noqa: BLE001  (any failure: fail closed)
            log.error("audit event %s/%s not recorded: %s", fields["action"], fields["outcome"],
                      type(exc).__name__)
            raise AuditUnavailable("the audit log is unavailable") from exc

    def _append(self, chain: str, fields: dict[str, object]) -> AuditEvent:
        with self._sessions() as session, session.begin():
            head_seq, head_hash = lock_chain_head(session, chain)
            key = self._keyring.audit_key(session, chain)
            values = dict(fields, chain=chain, seq=head_seq + 1, occurred_at=self._clock(),
                          prev_hash=head_hash)
            values["row_hash"] = row_hash(key, head_hash, values)
            row_id = session.execute(_INSERT_EVENT, values).scalar_one()
            session.execute(_ADVANCE_HEAD, {"head_chain": chain, "head_seq": values["seq"],
                                            "head_hash": values["row_hash"]})
        return AuditEvent(id=row_id, **values)


_EVENTS = AuditEvent.__table__
_HEADS = AuditChainHead.__table__
# Statements built once, so that each event only binds its values.
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.id)
_SELECT_HEAD = select(_HEADS.c.seq, _HEADS.c.row_hash).where(
    _HEADS.c.chain == bindparam("head_chain"))
_SELECT_HEAD_FOR_UPDATE = _SELECT_HEAD.with_for_update()
_ADVANCE_HEAD = (
    update(_HEADS)
    .where(_HEADS.c.chain == bindparam("head_chain"))
    .values(seq=bindparam("head_seq"), row_hash=bindparam("head_hash"))
)


def lock_chain_head(session: Session, chain: str) -> tuple[int, str]:
    """The chain head's ``(seq, row_hash)``, locked until the transaction ends.

    PostgreSQL: ``SELECT ... FOR UPDATE``; a missing head is inserted with ``ON CONFLICT DO
    NOTHING`` (which waits for a concurrent insert of the same head) and read again. SQLite:
    the ``BEGIN IMMEDIATE`` of :mod:`gateway.db` already serialises writers.
    """
    dialect = session.get_bind().dialect.name
    stmt = _SELECT_HEAD if dialect == "sqlite" else _SELECT_HEAD_FOR_UPDATE
    head = session.execute(stmt, {"head_chain": chain}).first()
    if head is not None:
        return head[0], head[1]
    values = {"chain": chain, "seq": 0, "row_hash": GENESIS_HASH}
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        session.execute(dialect_insert(_HEADS).values(**values)
                        .on_conflict_do_nothing(index_elements=["chain"]))
    else:  # another backend: insert, and on a lost race read the winner's row
        try:
            with session.begin_nested():
                session.execute(insert(_HEADS).values(**values))
        except IntegrityError:
            pass
    head = session.execute(stmt, {"head_chain": chain}).one()
    return head[0], head[1]


def _row_fields(row: Any) -> dict[str, object]:
    return {name: getattr(row, name) for name in HASHED_FIELDS}


# --------------------------------------------------------------------------------------------
# Verification


@dataclass(frozen=True)
class ChainFault:
    """The first bad row of a chain (or a bad head) and why."""

    chain: str
    seq: int | None
    row_id: int | None
    reason: str  # one of REASONS
    message: str


#: Fault reasons and what each one means.
REASONS = {
    "hash_mismatch": "row edited or forged (its keyed hash does not match its content)",
    "seq_gap": "rows missing before this one (deleted)",
    "seq_duplicate": "a sequence number used twice, or below 1 (row inserted)",
    "prev_hash_mismatch": "row does not follow its predecessor (reordered, inserted or edited)",
    "out_of_order": "row ids out of sequence order (rows reordered)",
    "head_mismatch": "chain head does not match the last row (tail deleted or head edited)",
    "head_missing": "rows without a chain head (head deleted)",
    "beyond_head": "rows past the chain head (appended behind the head's back)",
}


@dataclass
class ChainResult:
    chain: str
    rows: int
    head_seq: int | None
    fault: ChainFault | None = None

    @property
    def ok(self) -> bool:
        return self.fault is None


@dataclass
class VerifyReport:
    chains: list[ChainResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.chains)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chains)

    @property
    def first_fault(self) -> ChainFault | None:
        return next((c.fault for c in self.chains if c.fault is not None), None)


_VERIFY_COLUMNS = [AuditEvent.__table__.c[name] for name in ("id", *HASHED_FIELDS,
                                                            "prev_hash", "row_hash")]


def verify(session: Session, keyring: Any, chain: str | None = None) -> VerifyReport:
    """Check every row of one chain (or of all chains) against its keyed hash and order.

    Needs only the database (a copy will do) and the keyring. Reads in batches and ends the
    session's transaction between them (on SQLite every transaction holds the write lock), so
    pass a session with no pending changes. Rows appended while it runs are checked too, or
    ignored when they come after the head read at the end.

    Stops each chain at its first bad row; ``report.first_fault`` names it.
    """
    if chain is not None:
        chains = [chain]
    else:
        chains = sorted(
            set(session.scalars(select(AuditEvent.chain).distinct()))
            | set(session.scalars(select(AuditChainHead.chain)))
        )
        session.commit()
    report = VerifyReport()
    for name in chains:
        report.chains.append(_verify_chain(session, keyring, name))
    return report


def _head(session: Session, chain: str) -> tuple[int, str] | None:
    head = session.execute(
        select(AuditChainHead.seq, AuditChainHead.row_hash).where(AuditChainHead.chain == chain)
    ).first()
    return (head[0], head[1]) if head else None


def _verify_chain(session: Session, keyring: Any, chain: str) -> ChainResult:
    start_head = _head(session, chain)
    key = keyring.audit_key(session, chain)
    session.commit()
    result = ChainResult(chain=chain, rows=0, head_seq=start_head[0] if start_head else None)

    def fault(reason: str, seq: int | None, row_id: int | None, detail: str = "") -> ChainResult:
        where = f"chain {chain}, seq {seq}" + (f", row id {row_id}" if row_id is not None else "")
        message = f"{where}: {REASONS[reason]}" + (f" ({detail})" if detail else "")
        result.fault = ChainFault(chain, seq, row_id, reason, message)
        return result

    expected, prev_hash, last_id = 1, GENESIS_HASH, -1
    position: tuple[int, int] | None = None  # (seq, id) of the last row read
    while True:
        stmt = select(*_VERIFY_COLUMNS).where(AuditEvent.chain == chain)
        if position is not None:  # the first batch has no lower bound: a seq of 0 is a fault
            stmt = stmt.where(or_(AuditEvent.seq > position[0],
                                  and_(AuditEvent.seq == position[0], AuditEvent.id > position[1])))
        batch = session.execute(
            stmt.order_by(AuditEvent.seq, AuditEvent.id).limit(_VERIFY_BATCH)).all()
        session.commit()
        for row in batch:
            if row.seq != expected:
                if row.seq < expected:
                    return fault("seq_duplicate", row.seq, row.id)
                return fault("seq_gap", row.seq, row.id, f"expected seq {expected}")
            if row.prev_hash != prev_hash:
                return fault("prev_hash_mismatch", row.seq, row.id)
            if row.id <= last_id:
                return fault("out_of_order", row.seq, row.id)
            if not hmac.compare_digest(row_hash(key, row.prev_hash, _row_fields(row)),
                                       row.row_hash):
                return fault("hash_mismatch", row.seq, row.id)
            if start_head and row.seq == start_head[0] and row.row_hash != start_head[1]:
                return fault("head_mismatch", row.seq, row.id, "the head holds another hash")
            expected, prev_hash, last_id = row.seq + 1, row.row_hash, row.id
            result.rows += 1
        if len(batch) < _VERIFY_BATCH:
            break
        position = (batch[-1].seq, batch[-1].id)

    last = expected - 1
    end_head = _head(session, chain)
    session.commit()
    result.head_seq = end_head[0] if end_head else None
    if start_head is not None and last < start_head[0]:
        return fault("head_mismatch", last + 1, None,
                     f"the head is at seq {start_head[0]}, the rows end at seq {last}")
    if end_head is None:
        return fault("head_missing", last, None) if last else result
    if last > end_head[0]:
        return fault("beyond_head", end_head[0] + 1, None, f"the head is at seq {end_head[0]}")
    if last == end_head[0] and end_head[1] != prev_hash:
        return fault("head_mismatch", last, last_id if last else None,
                     "the head holds another hash")
    # last < end_head: rows committed after the scan passed; the head moved while we read.
    return result


# --------------------------------------------------------------------------------------------
# Querying and exporting


def _as_values(value: Any, enum: type[Enum]) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, Enum)) else list(value)
    return [enum(v).value for v in items]


def user_condition(user: str | int) -> ColumnElement[bool]:
    """A user given as an id (``42`` or ``"42"``) or an e-mail address (case-insensitive)."""
    if isinstance(user, int) and not isinstance(user, bool):
        return AuditEvent.user_id == user
    text = str(user).strip()
    if text.isdigit():
        return AuditEvent.user_id == int(text)
    if "@" in text:
        return func.lower(AuditEvent.user_email) == text.lower()
    raise ValueError(f"user must be a user id or an e-mail address, not {user!r}")


def _conditions(
    *, org_id: str | None, all_orgs: bool = False, user: str | int | None = None,
    object_id: str | None = None, object_path: str | None = None, action: Any = None,
    outcome: Any = None, since: datetime | None = None, until: datetime | None = None,
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if org_id is None:
        if not all_orgs:
            raise ValueError("an audit query is restricted to one organisation")
    elif org_id == SYSTEM_CHAIN:
        conds.append(AuditEvent.chain == SYSTEM_CHAIN)
    else:
        conds.append(AuditEvent.org_id == org_id)
    if user is not None and user != "":
        conds.append(user_condition(user))
    if object_id:
        conds.append(AuditEvent.object_id == object_id)
    if object_path:
        if object_path.endswith("*"):
            prefix = object_path[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conds.append(AuditEvent.object_path.like(prefix + "%", escape="\\"))
        else:
            conds.append(AuditEvent.object_path == object_path)
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
    after_id: int | None = None,
    descending: bool = False,
    all_orgs: bool = False,
) -> list[AuditEvent]:
    """One page of events, oldest first (or newest first with ``descending``).

    :param org_id: the organisation whose events are returned (the caller passes the acting
        user's); :data:`SYSTEM_CHAIN` for events without one. ``None`` only with ``all_orgs``
        (an operator on the server).
    :param user: a user id or e-mail address.
    :param object_path: an exact path, or a prefix ending in ``*``.
    :param since: inclusive; ``until``: exclusive. Timezone-aware.
    :param after_id: keyset cursor: the last id of the previous page.
    :raises ValueError: for an unknown action, outcome or user form, or a missing org.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    conds = _conditions(org_id=org_id, all_orgs=all_orgs, user=user, object_id=object_id,
                        object_path=object_path, action=action, outcome=outcome, since=since,
                        until=until)
    if after_id is not None:
        conds.append(AuditEvent.id < after_id if descending else AuditEvent.id > after_id)
    order = AuditEvent.id.desc() if descending else AuditEvent.id
    return list(session.scalars(select(AuditEvent).where(*conds).order_by(order).limit(limit)))


def cursor_after(session: Session, *, limit: int, after_id: int | None = None,
                 descending: bool = False, all_orgs: bool = False, **filters: Any) -> int | None:
    """The cursor that follows a page of ``limit`` events, or None when no event follows it.

    Asks for ids only, so that an export can send it as a header before streaming the page.
    """
    conds = _conditions(all_orgs=all_orgs, **filters)
    if after_id is not None:
        conds.append(AuditEvent.id < after_id if descending else AuditEvent.id > after_id)
    order = AuditEvent.id.desc() if descending else AuditEvent.id
    ids = list(session.scalars(select(AuditEvent.id).where(*conds).order_by(order)
                               .offset(limit - 1).limit(2)))
    return ids[0] if len(ids) == 2 else None


@dataclass
class Page:
    events: list[AuditEvent]
    next: int | None  # cursor (``after_id``) of the next page, None on the last page


def query_page(session: Session, *, limit: int = 100, **filters: Any) -> Page:
    """:func:`query`, plus the cursor of the next page (``None`` when this one is the last)."""
    rows = query(session, limit=limit + 1, **filters)
    if len(rows) > limit:
        return Page(rows[:limit], rows[limit - 1].id)
    return Page(rows, None)


def iter_query(sessions: sessionmaker[Session], *, limit: int | None = None,
               batch_size: int = 1000, **filters: Any) -> Iterator[AuditEvent]:
    """Every matching event (up to ``limit``), read in keyset batches, one session per batch."""
    after = filters.pop("after_id", None)
    remaining = limit
    while remaining is None or remaining > 0:
        size = batch_size if remaining is None else min(batch_size, remaining)
        with sessions() as session:
            rows = query(session, limit=size, after_id=after, **filters)
        yield from rows
        if len(rows) < size:
            return
        after = rows[-1].id
        if remaining is not None:
            remaining -= len(rows)


def event_to_dict(event: Any, *, raw_detail: bool = False) -> dict[str, Any]:
    """An event as exported: :data:`EXPORT_FIELDS`, times in ISO 8601 UTC.

    ``detail`` is the decoded JSON object, or with ``raw_detail`` the stored text (what the
    hash covers; archives keep it).
    """
    out: dict[str, Any] = {}
    for name in EXPORT_FIELDS:
        value = getattr(event, name)
        if name == "occurred_at":
            value = format_time(value)
        elif name == "detail" and value is not None and not raw_detail:
            value = json.loads(value)
        out[name] = value
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # a spreadsheet must not run a user agent or path as a formula
    return "" if value is None else value


def to_csv(rows: Iterable[Any]) -> Iterator[str]:
    """A header line, then one CSV line per event (``detail`` as its JSON text).

    Text cells that a spreadsheet would treat as a formula get a leading ``'``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def line(values: Iterable[Any]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(EXPORT_FIELDS)
    for row in rows:
        data = event_to_dict(row, raw_detail=True)
        yield line(_csv_cell(data[name]) for name in EXPORT_FIELDS)


def to_jsonl(rows: Iterable[Any]) -> Iterator[str]:
    """One JSON object per line per event."""
    for row in rows:
        yield json.dumps(event_to_dict(row), ensure_ascii=False, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------------------------
# Parsing filters (shared by the command line and the HTTP API)

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_time(value: str, *, end: bool = False) -> datetime:
    """An ISO 8601 time or a ``YYYY-MM-DD`` date, as aware UTC; naive times are UTC.

    A date alone means its start, or with ``end`` the start of the next day (so ``until
    2026-11-30`` includes the whole of that day).
    :raises ValueError: with a message fit for the user.
    """
    text = value.strip()
    try:
        if _DATE_ONLY.match(text):
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time.min, tzinfo=timezone.utc)
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a date: use YYYY-MM-DD or ISO 8601 such as 2026-11-25T14:30:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def parse_action(value: str) -> list[str]:
    """One action or several separated by commas; :class:`ValueError` names the valid ones."""
    return _parse_enum(value, Action, "action")


def parse_outcome(value: str) -> list[str]:
    return _parse_enum(value, Outcome, "outcome")


def _parse_enum(value: str, enum: type[Enum], what: str) -> list[str]:
    items = [v.strip().lower() for v in value.split(",") if v.strip()]
    valid = [m.value for m in enum]
    for item in items:
        if item not in valid:
            raise ValueError(f"unknown {what} {item!r}; one of: {', '.join(valid)}")
    return items


def parse_month(value: str) -> tuple[int, int]:
    """``YYYY-MM`` as ``(year, month)``."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", value.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"{value!r} is not a month: use YYYY-MM, e.g. 2026-11")
    return int(match.group(1)), int(match.group(2))


# --------------------------------------------------------------------------------------------
# Monthly archives in the bucket


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """``[first instant, first instant of the next month)`` in UTC."""
    if not 1 <= month <= 12 or not 1970 <= year <= 9999:
        raise AuditArchiveError(f"no such month: {year:04d}-{month:02d}")
    start = datetime(year, month, 1, tzinfo=timezone.utc)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def archive_key(org_id: str, year: int, month: int) -> str:
    """``audit-archive/{org_id}/{yyyy}/{mm}.jsonl.gz``."""
    return f"{ARCHIVE_PREFIX}/{org_id}/{year:04d}/{month:02d}.jsonl.gz"


def archive_storage_id(org_id: str, year: int, month: int) -> str:
    """The id the archive's ciphertext and wrapped key are bound to."""
    return f"audit-archive-{org_id}-{year:04d}-{month:02d}"


@dataclass
class ArchiveResult:
    org_id: str
    key: str
    status: str  # written | replaced | unchanged | empty
    rows: int
    first_seq: int | None = None
    last_seq: int | None = None
    last_row_hash: str | None = None
    nbytes: int = 0


@dataclass
class ArchiveReport:
    org_id: str
    key: str
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _month_rows(sessions: sessionmaker[Session], org_id: str, start: datetime, end: datetime,
                batch_size: int = 2000) -> Iterator[Any]:
    """The org's rows of the month, by seq, read in batches (one session each)."""
    last = 0
    while True:
        with sessions() as session:
            batch = session.execute(
                select(*_VERIFY_COLUMNS)
                .where(AuditEvent.chain == org_id, AuditEvent.seq > last,
                       AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end)
                .order_by(AuditEvent.seq).limit(batch_size)
            ).all()
        yield from batch
        if len(batch) < batch_size:
            return
        last = batch[-1].seq


def _audit_key(services: Services, org_id: str) -> bytes:
    with services.sessions() as session:
        key = services.keyring.audit_key(session, org_id)
        session.commit()
    return key


def archive_month(services: Services, org_id: str, year: int, month: int,
                  actor: Actor) -> ArchiveResult:
    """Write the org's events of one month to ``audit-archive/{org}/{yyyy}/{mm}.jsonl.gz``.

    Rows are checked against their hashes, written as JSON lines (``detail`` as stored), gzip
    compressed in memory (never on disk) and encrypted like any object, under a fresh data key
    wrapped by the org key. Re-runnable: an archive already holding exactly these rows is left
    as it is; one holding a subset (the month was archived before it ended) is replaced; one
    holding rows the database no longer has is never overwritten (:class:`AuditArchiveError`).
    Audited as ``audit_archive`` (started, then completed or failure).
    """
    from . import envelope
    from .storage import StorageNotFound

    start, end = month_bounds(year, month)
    if start > utcnow():
        raise AuditArchiveError(f"{year:04d}-{month:02d} has not begun")
    key = archive_key(org_id, year, month)
    month_text = f"{year:04d}-{month:02d}"
    services.audit.record(action=Action.AUDIT_ARCHIVE, outcome=Outcome.STARTED, actor=actor,
                          org_id=org_id, detail={"month": month_text, "key": key})
    try:
        result = _write_archive(services, envelope, StorageNotFound, org_id, year, month, key)
    except Exception as exc:
        try:
            services.audit.record(action=Action.AUDIT_ARCHIVE, outcome=Outcome.FAILURE,
                                  actor=actor, org_id=org_id,
                                  detail={"month": month_text, "key": key,
                                          "error": type(exc).__name__})
        except AuditUnavailable:
            pass
        raise
    services.audit.record(
        action=Action.AUDIT_ARCHIVE, outcome=Outcome.COMPLETED, actor=actor, org_id=org_id,
        nbytes=result.nbytes,
        detail={"month": month_text, "key": key, "status": result.status, "rows": result.rows,
                "first_seq": result.first_seq, "last_seq": result.last_seq},
    )
    return result


def _write_archive(services: Services, envelope: Any, not_found: type[Exception],
                   org_id: str, year: int, month: int, key: str) -> ArchiveResult:
    start, end = month_bounds(year, month)
    chain_key = _audit_key(services, org_id)
    result = ArchiveResult(org_id=org_id, key=key, status="written", rows=0)
    buffer = io.BytesIO()
    hashes: dict[int, str] = {}
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        for row in _month_rows(services.sessions, org_id, start, end):
            if not hmac.compare_digest(row_hash(chain_key, row.prev_hash, _row_fields(row)),
                                       row.row_hash):
                raise AuditArchiveError(
                    f"row seq {row.seq} (id {row.id}) of {org_id} fails its hash; "
                    "run `gateway audit verify` before archiving")
            gz.write(canonical_json(event_to_dict(row, raw_detail=True)).encode("utf-8") + b"\n")
            if result.first_seq is None:
                result.first_seq = row.seq
            result.last_seq, result.last_row_hash = row.seq, row.row_hash
            hashes[row.seq] = row.row_hash
            result.rows += 1
    if result.rows == 0:
        result.status = "empty"
        return result

    try:
        existing = services.store.head(key)
    except not_found:
        existing = None
    if existing is not None:
        meta = _metadata(existing)
        old_rows = _read_archive(services, envelope, org_id, year, month)
        missing = [r["seq"] for r in old_rows if hashes.get(r["seq"]) != r["row_hash"]]
        if missing:
            raise AuditArchiveError(
                f"{key} already holds {len(missing)} row(s) that the database does not (first "
                f"seq {missing[0]}); not overwritten: run `gateway audit verify-archive`")
        if len(old_rows) == result.rows and meta.get("last-row-hash") == result.last_row_hash:
            result.status = "unchanged"
            return result
        result.status = "replaced"

    storage_id = archive_storage_id(org_id, year, month)
    data_key = envelope.new_data_key()
    with services.sessions() as session:
        version, wrapped = services.keyring.wrap_data_key(session, org_id, storage_id, data_key)
        session.commit()
    ciphertext = envelope.encrypt(data_key, buffer.getvalue(), org_id=org_id,
                                  object_id=storage_id)
    services.store.put_bytes(key, ciphertext, metadata={
        "format": ARCHIVE_FORMAT,
        "wrapped-key": base64.b64encode(wrapped).decode("ascii"),
        "key-version": str(version),
        "rows": str(result.rows),
        "first-seq": str(result.first_seq),
        "last-seq": str(result.last_seq),
        "last-row-hash": str(result.last_row_hash),
    })
    result.nbytes = len(ciphertext)
    return result


def _metadata(info: Any) -> dict[str, str]:
    meta = info.get("metadata") if isinstance(info, Mapping) else getattr(info, "metadata", None)
    return {str(k).lower(): str(v) for k, v in (meta or {}).items()}


def _read_archive(services: Services, envelope: Any, org_id: str, year: int,
                  month: int) -> list[dict[str, Any]]:
    """Download, unwrap, decrypt and parse an archive. :raises AuditArchiveError: if unreadable."""
    key = archive_key(org_id, year, month)
    storage_id = archive_storage_id(org_id, year, month)
    meta = _metadata(services.store.head(key))
    if meta.get("format") != ARCHIVE_FORMAT:
        raise AuditArchiveError(f"{key} is not an audit archive (metadata format missing)")
    try:
        wrapped = base64.b64decode(meta["wrapped-key"], validate=True)
        version = int(meta["key-version"])
    except (KeyError, ValueError) as exc:
        raise AuditArchiveError(f"{key}: bad metadata ({type(exc).__name__})") from None
    ciphertext = services.store.get_bytes(key)
    with services.sessions() as session:
        data_key = services.keyring.unwrap_data_key(session, org_id, storage_id, version, wrapped)
        session.commit()
    try:
        plaintext = b"".join(envelope.decrypt_stream(data_key, [ciphertext], org_id=org_id,
                                                     object_id=storage_id))
        lines = gzip.decompress(plaintext).decode("utf-8").splitlines()
        return [json.loads(line) for line in lines if line]
    except (envelope.DecryptionError, OSError, EOFError, ValueError) as exc:
        raise AuditArchiveError(f"{key} cannot be decrypted or read: it was altered "
                                f"({type(exc).__name__})") from None


def verify_archive(services: Services, org_id: str, year: int, month: int,
                   *, actor: Actor | None = None) -> ArchiveReport:
    """Check an archive: decrypts, every row hashes right, chains, and matches the database.

    A row the database no longer holds, or holds differently, is reported; so is metadata that
    disagrees with the content. Audited as ``audit_verify`` when ``actor`` is given.
    """
    from . import envelope

    key = archive_key(org_id, year, month)
    report = ArchiveReport(org_id=org_id, key=key)
    try:
        rows = _read_archive(services, envelope, org_id, year, month)
    except AuditArchiveError as exc:
        report.problems.append(str(exc))
        rows = []
    if rows:
        _check_archive_rows(services, org_id, rows, report)
    if not report.problems:
        meta = _metadata(services.store.head(key))
        expected = {"rows": str(len(rows)), "first-seq": str(rows[0]["seq"]) if rows else "None",
                    "last-seq": str(rows[-1]["seq"]) if rows else "None",
                    "last-row-hash": rows[-1]["row_hash"] if rows else "None"}
        for name, value in expected.items():
            if meta.get(name) != value:
                report.problems.append(f"metadata {name} is {meta.get(name)!r}, content says "
                                       f"{value!r}")
    report.rows = len(rows)
    if actor is not None:
        services.audit.record(
            action=Action.AUDIT_VERIFY, outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
            actor=actor, org_id=org_id,
            detail={"archive": key, "rows": report.rows, "problems": report.problems[:5]},
        )
    return report


def _check_archive_rows(services: Services, org_id: str, rows: list[dict[str, Any]],
                        report: ArchiveReport) -> None:
    chain_key = _audit_key(services, org_id)
    by_seq: dict[int, Any] = {}
    seqs = [r.get("seq") for r in rows]
    with services.sessions() as session:
        for i in range(0, len(seqs), 500):
            part = [s for s in seqs[i:i + 500] if isinstance(s, int)]
            for db_row in session.execute(select(*_VERIFY_COLUMNS).where(
                    AuditEvent.chain == org_id, AuditEvent.seq.in_(part))):
                by_seq[db_row.seq] = db_row
    previous: dict[str, Any] | None = None
    for data in rows:
        seq = data.get("seq")
        try:
            fields = dict(data)
            fields["occurred_at"] = parse_time(data["occurred_at"])
            good = hmac.compare_digest(
                row_hash(chain_key, data["prev_hash"], fields), data["row_hash"])
        except (KeyError, TypeError, ValueError):
            good = False
        if data.get("chain") != org_id or not good:
            report.problems.append(f"archived row seq {seq}: {REASONS['hash_mismatch']}")
            return
        if previous is not None:
            if seq <= previous["seq"]:
                report.problems.append(f"archived row seq {seq}: {REASONS['out_of_order']}")
                return
            if seq == previous["seq"] + 1 and data["prev_hash"] != previous["row_hash"]:
                report.problems.append(f"archived row seq {seq}: {REASONS['prev_hash_mismatch']}")
                return
        db_row = by_seq.get(seq)
        if db_row is None:
            report.problems.append(f"archived row seq {seq} (id {data.get('id')}) is missing "
                                   "from the database (deleted after archiving)")
        elif db_row.row_hash != data["row_hash"] or db_row.id != data.get("id"):
            report.problems.append(f"archived row seq {seq} differs from the database row "
                                   f"(id {db_row.id}): edited after archiving")
        previous = data
