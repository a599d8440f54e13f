"""Writing the audit trail: append-only events, chained per organisation with a keyed hash.

Every event is one row of ``audit_events``, written by :meth:`AuditLog.record` in its own short
transaction, committed before the call returns. Rows form one chain per organisation (and a
``"system"`` chain for events without one): row ``seq`` carries the hash of row ``seq - 1`` and
its own HMAC-SHA256 under the chain's key from the keyring (:mod:`gateway.audit.chain`), so that
:func:`~gateway.audit.verification.verify` finds any row that was edited, deleted, inserted or
moved.

Nothing here knows Flask. Any failure to record raises :class:`AuditUnavailable` (no audit, no
access).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable, Mapping

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import AuditChainHead, AuditEvent, utcnow
from ..principal import Actor
from .chain import GENESIS_HASH, canonical_json, row_hash
from .events import SYSTEM_CHAIN, Action, AuditUnavailable, Outcome

log = logging.getLogger(__name__)

_TEXT_LIMITS = {  # column lengths: longer values are cut so that a long header never fails a write
    "user_email": 320, "role": 16, "object_id": 32, "object_path": 1024, "client_addr": 64,
    "user_agent": 512, "request_id": 64,
}


def _clean(value: str | None, limit: int | None) -> str | None:
    """A value the database stores exactly as hashed: no NUL, valid UTF-8, within the column."""
    if value is None:
        return None
    value = str(value).replace("\x00", "\ufffd")
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:limit] if limit is not None else value


class AuditLog:
    """Records events. One instance per process, shared by threads.

    :param sessions: the session factory (each event gets its own session and transaction).
    :param keyring: anything with ``audit_key(session, chain) -> bytes`` (32 bytes).
    :param clock: returns the current time (timezone-aware); tests fix it.
    """

    def __init__(self, sessions: sessionmaker[Session], keyring: Any,
                 *, clock: Callable[[], datetime] = utcnow, pipelined: bool = True) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self._clock = clock
        bind = sessions.kw.get("bind")
        #: PostgreSQL through psycopg 3: events are appended in two round trips (see
        #: :meth:`_append_pipelined`); other databases take the portable path.
        self._engine = bind if pipelined and _pipeline_capable(bind) else None
        #: the head this process last wrote to each chain (PostgreSQL path only): the next
        #: event on that chain is tried against it in one statement (:meth:`_append_known`)
        self._heads: dict[str, tuple[int, str]] = {}
        self._heads_lock = threading.Lock()

    @property
    def pipelined(self) -> bool:
        """Whether events take the two-round-trip path (PostgreSQL through psycopg 3)."""
        return self._engine is not None

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
        if self._engine is not None:
            event = self._append_pipelined(chain, fields)
            if event is not None:
                return event
        with self._sessions() as session, session.begin():
            head_seq, head_hash = lock_chain_head(session, chain)
            values = self._chained(self._keyring.audit_key(session, chain), chain, fields,
                                   head_seq, head_hash)
            row_id = session.execute(_INSERT_EVENT, values).scalar_one()
            session.execute(_ADVANCE_HEAD, {"head_chain": chain, "head_seq": values["seq"],
                                            "head_hash": values["row_hash"]})
        return AuditEvent(id=row_id, **values)

    def _chained(self, key: bytes, chain: str, fields: dict[str, object], head_seq: int,
                 head_hash: str) -> dict[str, object]:
        """The row that follows the head ``(head_seq, head_hash)`` of ``chain``: its fields,
        position, time and keyed hash."""
        values = dict(fields, chain=chain, seq=head_seq + 1, occurred_at=self._clock(),
                      prev_hash=head_hash)
        values["row_hash"] = row_hash(key, head_hash, values)
        return values

    def _key(self, chain: str) -> bytes:
        """The chain's key, outside the event's own connection (the keyring caches it: after
        the first event of a process, no query)."""
        with self._sessions() as key_session:
            key = self._keyring.audit_key(key_session, chain)
            key_session.commit()
        return key

    def _append_pipelined(self, chain: str, fields: dict[str, object]) -> AuditEvent | None:
        """The same transaction as the portable path, in one round trip on PostgreSQL when
        the chain's head is the one this process expects, in two otherwise.

        The head this process last wrote (or last saw) is tried first, in one statement
        (:meth:`_append_known`); a head that moved in between is returned by that statement
        and tried once more. Failing both, the head is locked and read
        (:meth:`_append_on`). Either way the row is committed, and so durable, before this
        returns, exactly as on the portable path; if anything fails, the connection is
        discarded and the server rolls the transaction back.

        :returns: ``None`` when the chain has no head yet (its first event takes the portable
            path, which creates it).
        """
        # checked out through SQLAlchemy, so that a database that cannot be reached is
        # translated as everywhere else (DatabaseUnavailable)
        with self._engine.connect() as connection:  # type: ignore[union-attr]
            with self._heads_lock:
                known = self._heads.get(chain)
            event: AuditEvent | None = None
            for _ in range(KNOWN_HEAD_TRIES):
                if known is None:
                    break
                event, known = self._append_known(connection, chain, fields, known)
                if event is not None:
                    break
            if event is None:
                event = self._append_on(connection, chain, fields)
            if event is not None:
                with self._heads_lock:
                    if self._heads.get(chain, (0, ""))[0] < event.seq:
                        self._heads[chain] = (event.seq, event.row_hash)
            return event

    def _append_known(self, connection: Any, chain: str, fields: dict[str, object],
                      known: tuple[int, str]
                      ) -> tuple[AuditEvent | None, tuple[int, str] | None]:
        """Append the event after ``known`` (the chain head's ``(seq, row_hash)`` expected) in
        one statement, one round trip: ``(event, None)``; or, when the head is not
        ``known``, write nothing and return ``(None, the head as the statement saw it)``
        (``None`` for a chain without a head).

        The statement is one transaction (autocommit), bound and prepared by the server. It
        takes the head's row lock before it inserts, as the locking path does, so the two
        never wait on each other in turn; a head another writer moved (or is moving: the
        update waits for its outcome) matches no row, and nothing is inserted.
        """
        import psycopg

        seq, prev = known
        values = self._chained(self._key(chain), chain, fields, seq, prev)
        raw = connection.connection
        try:
            conn = raw.driver_connection
            conn.autocommit = True
            try:
                row = conn.execute(_PG_APPEND_KNOWN, [values["seq"], values["row_hash"], chain,
                                                      seq, prev,
                                                      *(values[c] for c in _PG_COLUMNS), chain],
                                   prepare=True).fetchone()
            finally:
                conn.autocommit = False
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raise RuntimeError("the event's transaction did not end")
        except BaseException:
            connection.invalidate()  # whatever state it is in, the connection is not reused
            raise
        if row is not None and row[0] is not None:
            return AuditEvent(id=row[0], **values), None
        seen = (int(row[1]), str(row[2])) if row is not None else None
        with self._heads_lock:
            if self._heads.get(chain) == known:
                del self._heads[chain]
        return None, seen if seen != known else None

    def _append_on(self, connection: Any, chain: str,
                   fields: dict[str, object]) -> AuditEvent | None:
        import psycopg

        raw = connection.connection
        event: AuditEvent | None = None
        try:
            conn = raw.driver_connection
            conn.autocommit = True
            with psycopg.ClientCursor(conn) as cur:
                cur.execute(_PG_LOCK_HEAD, (chain,))
                cur.nextset()
                head = cur.fetchone()
                if head is None:
                    cur.execute("ROLLBACK")
                else:
                    values = self._chained(self._key(chain), chain, fields, head[0], head[1])
                    cur.execute(_PG_APPEND, [*(values[c] for c in _PG_COLUMNS), values["seq"],
                                             values["row_hash"], chain])
                    row = cur.fetchone()
                    cur.nextset()
                    if row is None or row[0] is None or \
                            conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        raise RuntimeError("the event was not committed")
                    event = AuditEvent(id=row[0], **values)
            conn.autocommit = False
        except BaseException:
            connection.invalidate()  # whatever state it is in, the connection is not reused
            raise
        return event


def _pipeline_capable(bind: Any) -> bool:
    try:
        return bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg"
    except AttributeError:
        return False


_PG_COLUMNS = ("chain", "seq", "occurred_at", "org_id", "user_id", "user_email", "role",
               "action", "object_id", "object_path", "outcome", "http_status", "bytes",
               "client_addr", "user_agent", "request_id", "detail", "prev_hash", "row_hash")
_PG_LOCK_HEAD = "BEGIN; SELECT seq, row_hash FROM audit_chain_heads WHERE chain = %s FOR UPDATE"
_PG_APPEND = (
    f"WITH event AS (INSERT INTO audit_events ({', '.join(_PG_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * len(_PG_COLUMNS))}) RETURNING id) "
    "UPDATE audit_chain_heads SET seq = %s, row_hash = %s WHERE chain = %s "
    "RETURNING (SELECT id FROM event); COMMIT"
)

def _pg_casts() -> str:
    """The placeholders of an ``INSERT ... SELECT``, each cast to its column's type (strings
    to ``text``: a cast to ``varchar(n)`` would cut a long value where the insert refuses it)."""
    from sqlalchemy import String
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()
    columns = AuditEvent.__table__.c
    return ", ".join(
        "%s::text" if isinstance(columns[c].type, String)
        else f"%s::{columns[c].type.compile(dialect=dialect)}" for c in _PG_COLUMNS)


# One statement: move the head from the (seq, row_hash) expected, and only then (from the
# updated row) insert the event. A head that moved matches no row, so nothing is inserted;
# the head as the statement's snapshot saw it is returned beside the new row's id.
_PG_APPEND_KNOWN = (
    "WITH head AS (UPDATE audit_chain_heads SET seq = %s, row_hash = %s "
    "WHERE chain = %s AND seq = %s AND row_hash = %s RETURNING 1), "
    f"event AS (INSERT INTO audit_events ({', '.join(_PG_COLUMNS)}) "
    f"SELECT {_pg_casts()} FROM head RETURNING id) "
    "SELECT (SELECT id FROM event), seq, row_hash FROM audit_chain_heads WHERE chain = %s"
)
#: how many times the one-statement append is tried (with the head it last returned) before
#: the head is locked and read
KNOWN_HEAD_TRIES = 2

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
