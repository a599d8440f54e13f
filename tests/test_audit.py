"""The audit trail: recorded fields, the keyed chain and what verify finds, the append-only
triggers, concurrent writers, failing closed, queries, exports, archives and the HTTP API."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest
from alembic import command
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from gateway.audit import (
    GENESIS_HASH,
    SYSTEM_CHAIN,
    Action,
    AuditArchiveError,
    AuditLog,
    AuditUnavailable,
    FilterError,
    Outcome,
    archive_key,
    archive_month,
    cursor_after,
    iter_query,
    parse_action,
    parse_month,
    parse_time,
    query,
    query_page,
    row_hash,
    row_message,
    to_csv,
    to_jsonl,
    verify,
    verify_archive,
)
from gateway.audit import verification as audit_module
from gateway.db import make_engine, make_session_factory
from gateway.db.migrate import alembic_config, upgrade
from gateway.db.models import AuditChainHead, AuditEvent
from gateway.principal import Actor
from tests.services import free_port

ORG_A = "a" * 32
ORG_B = "b" * 32
T0 = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=timezone.utc)
NURSE = Actor(org_id=ORG_A, user_id=7, email="Nurse@Example.test", role="staff",
              client_addr="192.0.2.10", user_agent="Mozilla/5.0", request_id="req-1")


class FakeKeyring:
    """Stands in for :class:`gateway.keyring.Keyring`: a fixed audit key per chain."""

    def __init__(self) -> None:
        self.broken = False

    def audit_key(self, session: Session, chain: str) -> bytes:
        if self.broken:
            raise RuntimeError("keyring offline")
        return hashlib.sha256(b"test audit key " + chain.encode()).digest()


class Clock:
    """A clock that moves forward by ``step`` each time it is read."""

    def __init__(self, start: datetime = T0, step: timedelta = timedelta(minutes=1)) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        value = self.now
        self.now += self.step
        return value


@dataclass
class Db:
    url: str
    sessions: sessionmaker[Session]

    @property
    def dialect(self) -> str:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"

    def execute(self, sql: str, **params: Any) -> None:
        with self.sessions() as s:
            s.execute(text(sql), params)
            s.commit()

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.sessions() as s:
            return s.execute(text(sql), params).scalar()

    def drop_triggers(self) -> None:
        """What an attacker with the database's admin rights does first."""
        command.downgrade(alembic_config(self.url), "0001")

    def rows(self, chain: str = ORG_A) -> list[AuditEvent]:
        with self.sessions() as s:
            return list(s.scalars(select(AuditEvent).where(AuditEvent.chain == chain)
                                  .order_by(AuditEvent.seq)))


@pytest.fixture
def db(db_url: str) -> Iterator[Db]:
    upgrade(db_url)
    engine = make_engine(db_url)
    yield Db(db_url, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def keyring() -> FakeKeyring:
    return FakeKeyring()


@pytest.fixture
def log(db: Db, keyring: FakeKeyring) -> AuditLog:
    return AuditLog(db.sessions, keyring, clock=Clock())


def key_of(chain: str) -> bytes:
    return FakeKeyring().audit_key(None, chain)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Recording


def test_record_writes_every_field_and_chains_it(db: Db, log: AuditLog) -> None:
    event = log.record(
        action="range_read", outcome="started", actor=NURSE, object_id="f" * 32,
        object_path="uploads/forms/201/field_7/scan.pdf", http_status=206, nbytes=0,
        detail={"range": "bytes=0-99", "note": "é"},
    )
    (row,) = db.rows()
    assert row.id == event.id
    assert (row.chain, row.seq, row.org_id) == (ORG_A, 1, ORG_A)
    assert row.occurred_at == T0 and row.occurred_at.tzinfo is not None  # microseconds kept
    assert (row.user_id, row.user_email, row.role) == (7, "Nurse@Example.test", "staff")
    assert (row.client_addr, row.user_agent, row.request_id) == ("192.0.2.10", "Mozilla/5.0",
                                                                 "req-1")
    assert (row.action, row.outcome, row.http_status, row.bytes) == ("range_read", "started",
                                                                     206, 0)
    assert row.object_path == "uploads/forms/201/field_7/scan.pdf"
    assert row.detail == '{"note":"é","range":"bytes=0-99"}'  # canonical JSON
    assert row.prev_hash == GENESIS_HASH
    fields = {name: getattr(row, name) for name in ("chain", "seq", "occurred_at", "org_id",
              "user_id", "user_email", "role", "action", "object_id", "object_path", "outcome",
              "http_status", "bytes", "client_addr", "user_agent", "request_id", "detail")}
    assert row.row_hash == row_hash(key_of(ORG_A), GENESIS_HASH, fields) == event.row_hash

    second = log.record(action="range_read", outcome="completed", actor=NURSE, nbytes=100)
    assert (second.seq, second.prev_hash) == (2, row.row_hash)


def test_each_organisation_has_its_own_chain(db: Db, log: AuditLog) -> None:
    a1 = log.record(action="view", outcome="started", actor=NURSE)
    b1 = log.record(action="view", outcome="started", actor=Actor(org_id=ORG_B, user_id=9))
    a2 = log.record(action="list", outcome="success", actor=NURSE)
    sys1 = log.record(action="login_failed", outcome="denied",
                      actor=Actor(org_id=None, email="who@example.test"))
    admin = log.record(action="key_rotate", outcome="success", actor=Actor.cli(), org_id=ORG_B)
    assert [(e.chain, e.seq) for e in (a1, b1, a2, sys1, admin)] == [
        (ORG_A, 1), (ORG_B, 1), (ORG_A, 2), (SYSTEM_CHAIN, 1), (ORG_B, 2)]
    assert sys1.org_id is None and admin.org_id == ORG_B
    with db.sessions() as s:
        heads = {h.chain: (h.seq, h.row_hash) for h in s.scalars(select(AuditChainHead))}
    assert heads == {ORG_A: (2, a2.row_hash), ORG_B: (2, admin.row_hash),
                     SYSTEM_CHAIN: (1, sys1.row_hash)}


def test_every_action_and_outcome_fits_its_column(db: Db, log: AuditLog) -> None:
    columns = AuditEvent.__table__.c
    assert max(len(a.value) for a in Action) <= columns.action.type.length
    assert max(len(o.value) for o in Outcome) <= columns.outcome.type.length
    longest = max(Outcome, key=lambda o: len(o.value))
    assert log.record(action="integrity_failure", outcome=longest, actor=NURSE).seq == 1


def test_unknown_action_or_outcome_is_refused_before_writing(db: Db, log: AuditLog) -> None:
    with pytest.raises(ValueError):
        log.record(action="peek", outcome="success", actor=NURSE)
    with pytest.raises(ValueError):
        log.record(action="view", outcome="fine", actor=NURSE)
    assert db.rows() == []


def test_long_or_odd_values_are_stored_exactly_as_hashed(db: Db, log: AuditLog,
                                                         keyring: FakeKeyring) -> None:
    odd = Actor(org_id=ORG_A, user_id=1, email="x@example.test", user_agent="A\x00" * 600,
                client_addr="2001:db8::1" * 10, request_id="r" * 100)
    log.record(action="view", outcome="denied", actor=odd, object_path="p/" + "\udcff" * 3)
    (row,) = db.rows()
    assert len(row.user_agent) == 512 and "\x00" not in row.user_agent
    assert len(row.client_addr) == 64 and len(row.request_id) == 64
    with db.sessions() as s:
        assert verify(s, keyring).ok


def test_row_hash_known_answer() -> None:
    """The vector of docs/audit.md: a verifier written from the document must agree."""
    fields = dict(
        chain="0123456789abcdef0123456789abcdef", seq=1,
        occurred_at=datetime(2026, 11, 25, 14, 30, 0, 123456, tzinfo=timezone.utc),
        org_id="0123456789abcdef0123456789abcdef", user_id=42, user_email="nurse@example.test",
        role="staff", action="view", object_id="fedcba9876543210fedcba9876543210",
        object_path="uploads/forms/201/field_7/scan.pdf", outcome="started", http_status=200,
        bytes=None, client_addr="192.0.2.10", user_agent="Mozilla/5.0", request_id="req-1",
        detail='{"range":"bytes=0-99"}')
    message = row_message(GENESIS_HASH, fields)
    assert message.startswith(b"0" * 64 + b"\x00\x00\x00\x10gateway-audit-v1\x00\x00\x00\x20")
    assert b"\x00\x00\x00\x03200\xff\xff\xff\xff\x00\x00\x00\x0a192.0.2.10" in message
    assert len(message) == 397
    first = row_hash(bytes(range(32)), GENESIS_HASH, fields)
    assert first == "69305bfb1c7196302b29c86bfb6d337af35716f470ec37ec820c0021baa86d3d"
    second = dict(fields, seq=2, occurred_at=datetime(2026, 11, 25, 14, 30, 1, tzinfo=timezone.utc),
                  outcome="completed", bytes=100, detail=None)
    assert row_hash(bytes(range(32)), first, second) == (
        "246b33376eec5d0f7aa64794d83bbe99a634ff778ccad1f1604db1390bef0cbd")


# --------------------------------------------------------------------------------------------
# Verification: what an attacker with database rights (but not the key) can do is found


# Each tampering takes the database and the chain it alters (five rows, seq 1 to 5).


def _sql(statement: str) -> Callable[[Db, str], None]:
    return lambda db, chain: db.execute(statement, c=chain)


def _swap_seqs(db: Db, chain: str) -> None:
    for statement in ("UPDATE audit_events SET seq = -1 WHERE chain = :c AND seq = 2",
                      "UPDATE audit_events SET seq = 2 WHERE chain = :c AND seq = 3",
                      "UPDATE audit_events SET seq = 3 WHERE chain = :c AND seq = -1"):
        db.execute(statement, c=chain)


def _swap_ids(db: Db, chain: str) -> None:
    ids = {r.seq: r.id for r in db.rows(chain)}
    db.execute("UPDATE audit_events SET id = 999999 WHERE id = :i", i=ids[2])
    db.execute("UPDATE audit_events SET id = :i WHERE id = :j", i=ids[2], j=ids[3])
    db.execute("UPDATE audit_events SET id = :j WHERE id = 999999", j=ids[3])


def _forge(db: Db, chain: str, seq: int, prev_hash: str) -> None:
    """Insert a made-up row; without the key its hash can only be a guess."""
    db.execute(
        "INSERT INTO audit_events (chain, seq, occurred_at, org_id, action, outcome, "
        "prev_hash, row_hash) VALUES (:c, :s, :t, :c, 'view', 'success', :p, :h)",
        c=chain, s=seq, t=T0.replace(tzinfo=None), p=prev_hash, h="e" * 64)


def _insert_in_middle(db: Db, chain: str) -> None:
    db.execute("UPDATE audit_events SET seq = -seq WHERE chain = :c AND seq >= 3", c=chain)
    db.execute("UPDATE audit_events SET seq = 1 - seq WHERE chain = :c AND seq < 0", c=chain)
    _forge(db, chain, 3, db.rows(chain)[1].row_hash)
    db.execute("UPDATE audit_chain_heads SET seq = 6 WHERE chain = :c", c=chain)


def _append_forged(db: Db, chain: str) -> None:
    _forge(db, chain, 6, db.rows(chain)[-1].row_hash)
    db.execute("UPDATE audit_chain_heads SET seq = 6, row_hash = :h WHERE chain = :c",
               c=chain, h="e" * 64)


# how -> (tampering, first bad seq, reason)
TAMPERING: dict[str, tuple[Callable[[Db, str], None], int, str]] = {
    "edit a field": (_sql("UPDATE audit_events SET user_email = 'x@else.test' "
                          "WHERE chain = :c AND seq = 3"), 3, "hash_mismatch"),
    "edit and rehash with a guessed key": (_sql(
        "UPDATE audit_events SET bytes = 1, row_hash = "
        "'5f2b6e01bd5ee4c2a3fa34e6a04be2ba5fbbbeb5b5d7e0c0b2f7f0d2a1c4b3e9' "
        "WHERE chain = :c AND seq = 3"), 3, "hash_mismatch"),
    "delete a middle row": (_sql("DELETE FROM audit_events WHERE chain = :c AND seq = 3"),
                            4, "seq_gap"),
    "delete the first row": (_sql("DELETE FROM audit_events WHERE chain = :c AND seq = 1"),
                             2, "seq_gap"),
    "delete the last row": (_sql("DELETE FROM audit_events WHERE chain = :c AND seq = 5"),
                            5, "head_mismatch"),
    "swap two rows' sequence numbers": (_swap_seqs, 2, "prev_hash_mismatch"),
    "swap two rows' ids": (_swap_ids, 3, "out_of_order"),
    "insert a row in the middle": (_insert_in_middle, 3, "hash_mismatch"),
    "append a forged row": (_append_forged, 6, "hash_mismatch"),
    "insert a row numbered 0": (lambda db, chain: _forge(db, chain, 0, GENESIS_HASH),
                                0, "seq_duplicate"),
    "edit the head": (_sql("UPDATE audit_chain_heads SET row_hash = 'ff' WHERE chain = :c"),
                      5, "head_mismatch"),
    "delete the head": (_sql("DELETE FROM audit_chain_heads WHERE chain = :c"),
                        5, "head_missing"),
}


def test_verify_finds_the_first_altered_row(db: Db, log: AuditLog, keyring: FakeKeyring,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kind of tampering, on a chain of its own, is named at the first row it touched."""
    monkeypatch.setattr(audit_module, "_VERIFY_BATCH", 2)  # cross batch boundaries too
    chains = {how: f"{n:032x}" for n, how in enumerate(TAMPERING, start=1)}
    for chain in [ORG_B, *chains.values()]:
        for i in range(5):
            log.record(action="download", outcome="completed", actor=Actor(org_id=chain),
                       nbytes=i)
    with db.sessions() as s:
        intact = verify(s, keyring)
    assert intact.ok and intact.rows == 5 * (len(chains) + 1)

    db.drop_triggers()  # what an attacker with the database's admin rights does first
    for how, chain in chains.items():
        TAMPERING[how][0](db, chain)
    with db.sessions() as s:
        report = verify(s, keyring)
    results = {r.chain: r for r in report.chains}
    assert results[ORG_B].ok and not report.ok
    for how, chain in chains.items():
        _, seq, reason = TAMPERING[how]
        fault = results[chain].fault
        assert fault is not None, how
        assert (fault.seq, fault.reason) == (seq, reason), f"{how}: {fault.message}"
        assert fault.message.startswith(f"chain {chain}, seq {seq}"), how
    assert report.first_fault == results[chains["edit a field"]].fault


def test_verify_while_events_are_appended(db: Db, keyring: FakeKeyring,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows committed while verify reads are checked or left for the next run, never flagged."""
    monkeypatch.setattr(audit_module, "_VERIFY_BATCH", 3)
    log = AuditLog(db.sessions, keyring)
    log.record(action="view", outcome="started", actor=NURSE)
    stop = threading.Event()

    def append() -> None:
        while not stop.is_set():
            log.record(action="view", outcome="started", actor=NURSE)
            time.sleep(0.002)  # requests, not a tight loop: SQLite's lock is not fair

    writer = threading.Thread(target=append)
    writer.start()
    try:
        while len(db.rows()) < 5:
            time.sleep(0.01)
        reports = []
        for _ in range(5):
            with db.sessions() as s:
                reports.append(verify(s, keyring, ORG_A))
    finally:
        stop.set()
        writer.join()
    assert all(r.ok for r in reports), [r.first_fault for r in reports]
    assert reports[-1].rows >= 5


def test_verify_one_chain_and_an_empty_database(db: Db, log: AuditLog,
                                                keyring: FakeKeyring) -> None:
    with db.sessions() as s:
        empty = verify(s, keyring)
    assert empty.ok and empty.rows == 0 and empty.chains == []
    log.record(action="view", outcome="started", actor=NURSE)
    log.record(action="view", outcome="started", actor=Actor(org_id=ORG_B))
    with db.sessions() as s:
        only_b = verify(s, keyring, ORG_B)
    assert [(c.chain, c.rows, c.head_seq) for c in only_b.chains] == [(ORG_B, 1, 1)]


def test_a_chain_verified_with_the_wrong_key_fails_at_its_first_row(db: Db, log: AuditLog) -> None:
    log.record(action="view", outcome="started", actor=NURSE)

    class OtherKeyring(FakeKeyring):
        def audit_key(self, session: Session, chain: str) -> bytes:
            return b"\x01" * 32

    with db.sessions() as s:
        report = verify(s, OtherKeyring())
    assert report.first_fault is not None and report.first_fault.reason == "hash_mismatch"


# --------------------------------------------------------------------------------------------
# The database refuses changes


def test_the_database_refuses_to_change_or_remove_audit_rows(db: Db, log: AuditLog,
                                                              keyring: FakeKeyring) -> None:
    log.record(action="view", outcome="started", actor=NURSE)
    log.record(action="view", outcome="completed", actor=NURSE, nbytes=10)
    statements = [
        "UPDATE audit_events SET bytes = 0",
        "DELETE FROM audit_events",
        "UPDATE audit_chain_heads SET seq = 1",
        "UPDATE audit_chain_heads SET row_hash = 'x'",
        "DELETE FROM audit_chain_heads",
    ]
    if db.dialect == "postgresql":
        statements += ["TRUNCATE audit_events", "TRUNCATE audit_chain_heads"]
    for statement in statements:
        with pytest.raises(DBAPIError, match="append-only|only move forward"):
            db.execute(statement)
    assert len(db.rows()) == 2
    log.record(action="view", outcome="started", actor=NURSE)  # appending still works
    with db.sessions() as s:
        assert verify(s, keyring).ok

    db.drop_triggers()  # the downgrade removes the triggers...
    db.execute("UPDATE audit_events SET bytes = 0 WHERE seq = 3")
    upgrade(db.url)  # ...and the upgrade puts them back
    with pytest.raises(DBAPIError, match="append-only"):
        db.execute("DELETE FROM audit_events")


# --------------------------------------------------------------------------------------------
# Concurrent writers


def test_concurrent_threads_keep_every_chain_whole(db: Db, keyring: FakeKeyring) -> None:
    log = AuditLog(db.sessions, keyring)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write(org: str) -> None:
        try:
            start.wait()
            for i in range(15):
                log.record(action="view", outcome="success", actor=Actor(org_id=org), nbytes=i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(org,)) for org in (ORG_A, ORG_A, ORG_B, ORG_B)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for chain in (ORG_A, ORG_B):
        assert [r.seq for r in db.rows(chain)] == list(range(1, 31))
    with db.sessions() as s:
        report = verify(s, keyring)
    assert report.ok and report.rows == 60


def test_two_logs_taking_turns_on_one_chain_keep_it_whole(db: Db, keyring: FakeKeyring) -> None:
    """Two processes' logs (each with its own idea of the chain's head) writing in turn: on
    PostgreSQL each tries the head it last wrote, finds it moved by the other, writes nothing
    then, and appends after the real head; the chain stays whole and verifies."""
    first, second = AuditLog(db.sessions, keyring), AuditLog(db.sessions, keyring)
    written = []
    for i in range(12):
        log = first if i % 3 else second  # runs of two on one log, then a turn of the other
        written.append(log.record(action="view", outcome="success", actor=Actor(org_id=ORG_A),
                                  nbytes=i).seq)
    assert written == list(range(1, 13))
    rows = db.rows(ORG_A)
    assert [r.seq for r in rows] == list(range(1, 13))
    assert [r.bytes for r in rows] == list(range(12))
    with db.sessions() as s:
        report = verify(s, keyring)
    assert report.ok and report.rows == 12
    if first.pipelined:
        assert first._heads[ORG_A] == (12, rows[-1].row_hash)  # it wrote the last one


def _write_events(url: str, org: str, count: int, start_at: float) -> int:
    """A separate process appending to a chain (spawned, so nothing is shared)."""
    engine = make_engine(url)
    log = AuditLog(make_session_factory(engine), FakeKeyring())
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(count):
        log.record(action="download", outcome="completed", actor=Actor(org_id=org), nbytes=i)
    engine.dispose()
    return count


def test_concurrent_processes_keep_every_chain_whole(db: Db, keyring: FakeKeyring) -> None:
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0  # all three start appending at once, to a chain none created
    with ctx.Pool(3) as pool:
        done = pool.starmap(_write_events, [(db.url, ORG_A, 40, start_at)] * 3, chunksize=1)
    assert done == [40, 40, 40]
    assert [r.seq for r in db.rows(ORG_A)] == list(range(1, 121))
    with db.sessions() as s:
        report = verify(s, keyring)
    assert report.ok and report.rows == 120


# --------------------------------------------------------------------------------------------
# No audit, no access: every failure is AuditUnavailable


def test_unreachable_database_is_audit_unavailable(keyring: FakeKeyring) -> None:
    engine = make_engine(f"postgresql+psycopg://gw@127.0.0.1:{free_port()}/gw",
                         connect_args={"connect_timeout": 2})
    log = AuditLog(make_session_factory(engine), keyring)
    with pytest.raises(AuditUnavailable) as info:
        log.record(action="view", outcome="started", actor=NURSE)
    assert str(info.value) == "the audit log is unavailable"
    assert isinstance(info.value.__cause__, DBAPIError)
    engine.dispose()


def test_database_without_the_audit_tables_is_audit_unavailable(tmp_path, keyring) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(AuditUnavailable):
        AuditLog(make_session_factory(engine), keyring).record(
            action="view", outcome="started", actor=NURSE)
    engine.dispose()


def test_dropped_table_is_audit_unavailable(db: Db, log: AuditLog) -> None:
    log.record(action="view", outcome="started", actor=NURSE)
    db.execute("DROP TABLE audit_events")
    with pytest.raises(AuditUnavailable):
        log.record(action="view", outcome="completed", actor=NURSE)


def test_keyring_failure_is_audit_unavailable_and_writes_nothing(
        db: Db, log: AuditLog, keyring: FakeKeyring) -> None:
    keyring.broken = True
    with pytest.raises(AuditUnavailable) as info:
        log.record(action="view", outcome="started", actor=NURSE)
    assert "offline" not in str(info.value) and isinstance(info.value.__cause__, RuntimeError)
    assert db.rows() == []
    keyring.broken = False
    assert log.record(action="view", outcome="started", actor=NURSE).seq == 1
    with db.sessions() as s:
        assert verify(s, keyring).ok


# --------------------------------------------------------------------------------------------
# Queries


def _seed_for_queries(log: AuditLog) -> None:
    a7 = NURSE
    a8 = Actor(org_id=ORG_A, user_id=8, email="doctor@example.test", role="staff")
    b9 = Actor(org_id=ORG_B, user_id=9, email="other@example.test", role="auditor")
    plan = [  # (actor, action, outcome, object id, path)
        (a7, "upload", "completed", "o1", "uploads/forms/1/a_b.pdf"),
        (a7, "view", "started", "o1", "uploads/forms/1/a_b.pdf"),
        (a8, "download", "completed", "o2", "documents/x.pdf"),
        (a8, "denied", "denied", "o3", "uploads/forms/1axb.pdf"),
        (b9, "view", "started", "o9", "uploads/forms/1/a_b.pdf"),
        (a7, "delete", "success", "o1", "uploads/forms/1/a_b.pdf"),
        (Actor(org_id=None, email="x@y.test"), "login_failed", "denied", None, None),
    ]
    for actor, action, outcome, object_id, path in plan:
        log.record(action=action, outcome=outcome, actor=actor, object_id=object_id,
                   object_path=path)
    # times: T0 + 0..6 minutes, one per event


def test_query_filters_and_never_leaves_the_organisation(db: Db, log: AuditLog) -> None:
    _seed_for_queries(log)

    def seqs(**kw: Any) -> list[tuple[str | None, int]]:
        with db.sessions() as s:
            return [(e.org_id, e.seq) for e in query(s, **kw)]

    assert seqs(org_id=ORG_A) == [(ORG_A, n) for n in (1, 2, 3, 4, 5)]
    assert seqs(org_id=ORG_B) == [(ORG_B, 1)]
    assert seqs(org_id=SYSTEM_CHAIN) == [(None, 1)]
    assert len(seqs(org_id=None, all_orgs=True)) == 7
    with pytest.raises(ValueError, match="one organisation"):
        seqs(org_id=None)
    # B's user and object never show through A
    assert seqs(org_id=ORG_A, user=9) == [] and seqs(org_id=ORG_A, object_id="o9") == []
    assert seqs(org_id=ORG_A, user=7) == seqs(org_id=ORG_A, user="7") == [
        (ORG_A, 1), (ORG_A, 2), (ORG_A, 5)]
    assert seqs(org_id=ORG_A, user="NURSE@example.test") == [(ORG_A, 1), (ORG_A, 2), (ORG_A, 5)]
    with pytest.raises(ValueError, match="user id or an e-mail"):
        seqs(org_id=ORG_A, user="nurse")
    assert seqs(org_id=ORG_A, object_id="o1") == [(ORG_A, 1), (ORG_A, 2), (ORG_A, 5)]
    assert seqs(org_id=ORG_A, object_path="uploads/forms/1/a_b.pdf") == [
        (ORG_A, 1), (ORG_A, 2), (ORG_A, 5)]
    # a prefix: "_" is a character, not a LIKE wildcard
    assert seqs(org_id=ORG_A, object_path="uploads/forms/1/a_*") == [
        (ORG_A, 1), (ORG_A, 2), (ORG_A, 5)]
    assert seqs(org_id=ORG_A, object_path="uploads/*") == [(ORG_A, n) for n in (1, 2, 4, 5)]
    # a prefix matches exactly, on SQLite as on PostgreSQL: case, "%" and "\\" are characters
    assert seqs(org_id=ORG_A, object_path="uploads/FORMS/*") == []
    assert seqs(org_id=ORG_A, object_path="UPLOADS/*") == []
    assert seqs(org_id=ORG_A, object_path="uploads/%*") == []
    assert seqs(org_id=ORG_A, object_path="uploads/forms/1\\*") == []
    assert seqs(org_id=ORG_A, object_path="*") == [(ORG_A, n) for n in (1, 2, 3, 4, 5)]
    assert seqs(org_id=ORG_A, action="view") == [(ORG_A, 2)]
    assert seqs(org_id=ORG_A, action=["view", "denied"]) == [(ORG_A, 2), (ORG_A, 4)]
    assert seqs(org_id=ORG_A, outcome="denied") == [(ORG_A, 4)]
    with pytest.raises(ValueError):
        seqs(org_id=ORG_A, action="peek")
    # since inclusive, until exclusive
    assert seqs(org_id=ORG_A, since=T0 + timedelta(minutes=1),
                until=T0 + timedelta(minutes=3)) == [(ORG_A, 2), (ORG_A, 3)]
    with pytest.raises(ValueError, match="timezone"):
        seqs(org_id=ORG_A, since=datetime(2026, 1, 1))


def test_query_pages_by_keyset(db: Db, log: AuditLog) -> None:
    for i in range(7):
        log.record(action="list", outcome="success", actor=NURSE, nbytes=i)
    with db.sessions() as s:
        first = query_page(s, org_id=ORG_A, limit=3)
        assert [e.seq for e in first.events] == [1, 2, 3] and first.next == 3
        second = query_page(s, org_id=ORG_A, limit=3, after=first.next)
        third = query_page(s, org_id=ORG_A, limit=3, after=second.next)
        assert [e.seq for e in second.events + third.events] == [4, 5, 6, 7]
        assert third.next is None
        exact = query_page(s, org_id=ORG_A, limit=7)
        assert exact.next is None
        newest = query_page(s, org_id=ORG_A, limit=4, descending=True)
        older = query_page(s, org_id=ORG_A, limit=4, descending=True, after=newest.next)
        assert [e.seq for e in newest.events + older.events] == [7, 6, 5, 4, 3, 2, 1]
        assert cursor_after(s, org_id=ORG_A, limit=3) == first.next
        assert cursor_after(s, org_id=ORG_A, limit=7) is None
    every = list(iter_query(db.sessions, org_id=ORG_A, batch_size=2))
    assert [e.seq for e in every] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in iter_query(db.sessions, org_id=ORG_A, batch_size=2, limit=5)] == [
        1, 2, 3, 4, 5]


def test_pages_of_one_organisation_count_only_its_own_events(db: Db, log: AuditLog) -> None:
    """The cursor is the chain's seq: another organisation's events between two of ours change
    nothing an answer shows (a global row id would count them in its gaps)."""
    other = Actor(org_id=ORG_B, user_id=9, email="b@example.test", role="staff")
    for i in range(4):
        log.record(action="list", outcome="success", actor=NURSE)
        for _ in range(i * 3):
            log.record(action="view", outcome="started", actor=other)
    with db.sessions() as s:
        first = query_page(s, org_id=ORG_A, limit=2)
        assert [e.seq for e in first.events] == [1, 2] and first.next == 2
        rest = query_page(s, org_id=ORG_A, limit=2, after=first.next)
        assert [e.seq for e in rest.events] == [3, 4] and rest.next is None
        # an operator's query across every chain pages on the row id
        everything = query_page(s, org_id=None, all_orgs=True, limit=3)
        assert everything.next == everything.events[-1].id
        with pytest.raises(FilterError):
            query(s, org_id=ORG_A, after=2**63)
        with pytest.raises(FilterError):
            query(s, org_id=ORG_A, user=2**31)
        with pytest.raises(FilterError):
            query(s, org_id=ORG_A, user="99999999999999999999999")


# --------------------------------------------------------------------------------------------
# Exports


def _event(**overrides: Any) -> AuditEvent:
    values: dict[str, Any] = dict(
        id=1, chain=ORG_A, seq=1, occurred_at=T0, org_id=ORG_A, user_id=7,
        user_email="nurse@example.test", role="staff", action="view", object_id="o1",
        object_path="uploads/a, \"b\".pdf", outcome="started", http_status=200, bytes=None,
        client_addr="192.0.2.10", user_agent="=HYPERLINK(\"http://evil\")", request_id="r1",
        detail='{"range":"bytes=0-9"}', prev_hash=GENESIS_HASH, row_hash="1" * 64)
    values.update(overrides)
    return AuditEvent(**values)


def test_csv_export_quotes_and_defuses_formulas() -> None:
    lines = list(to_csv([_event(), _event(id=2, seq=2, detail=None, user_agent="-1+1")]))
    assert len(lines) == 3 and all(line.endswith("\r\n") for line in lines)
    rows = list(csv.DictReader(io.StringIO("".join(lines))))
    assert rows[0]["occurred_at"] == "2026-03-02T09:00:00.123456Z"
    assert rows[0]["object_path"] == 'uploads/a, "b".pdf'
    assert rows[0]["user_agent"] == "'=HYPERLINK(\"http://evil\")"  # never a live formula
    assert rows[1]["user_agent"] == "'-1+1"
    assert rows[0]["detail"] == '{"range":"bytes=0-9"}' and rows[1]["detail"] == ""
    assert rows[0]["bytes"] == "" and rows[0]["http_status"] == "200"
    assert list(rows[0]) == lines[0].strip().split(",")


def test_jsonl_export_is_one_object_per_line() -> None:
    lines = list(to_jsonl([_event(), _event(id=2, seq=2, detail=None)]))
    first, second = (json.loads(line) for line in lines)
    assert first["detail"] == {"range": "bytes=0-9"} and second["detail"] is None
    assert first["user_agent"] == "=HYPERLINK(\"http://evil\")"  # exact in JSON
    assert first["occurred_at"] == "2026-03-02T09:00:00.123456Z" and first["bytes"] is None


def test_parsing_dates_actions_and_months() -> None:
    assert parse_time("2026-11-25") == datetime(2026, 11, 25, tzinfo=timezone.utc)
    assert parse_time("2026-11-25", end=True) == datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert parse_time("2026-11-25T14:30:00Z") == datetime(2026, 11, 25, 14, 30,
                                                          tzinfo=timezone.utc)
    assert parse_time("2026-11-25T15:30:00+01:00") == datetime(2026, 11, 25, 14, 30,
                                                               tzinfo=timezone.utc)
    assert parse_time("2026-11-25 14:30") == datetime(2026, 11, 25, 14, 30, tzinfo=timezone.utc)
    for bad in ("yesterday", "2026-13-01", "25/11/2026", ""):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            parse_time(bad)
    assert parse_action("view, download") == ["view", "download"]
    with pytest.raises(ValueError, match="unknown action 'peek'; one of: upload, view"):
        parse_action("peek")
    assert parse_month("2026-03") == (2026, 3)
    for bad in ("2026-3", "2026-13", "March"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_month(bad)


# --------------------------------------------------------------------------------------------
# Monthly archives (real keyring, envelope and S3 store)


def _use_clock(stack: Any, clock: Clock) -> AuditLog:
    services = stack.services
    services._cache["audit"] = AuditLog(services.sessions, services.keyring, clock=clock)
    return services.audit


def test_archive_month_is_encrypted_verifiable_and_rerunnable(sqlite_stack: Any) -> None:
    services = sqlite_stack.services
    march = Clock(datetime(2026, 3, 31, 23, 58, tzinfo=timezone.utc))
    log = _use_clock(sqlite_stack, march)
    nurse = Actor(org_id=sqlite_stack.org1, user_id=1, email="nurse@example.test", role="staff")
    for i in range(4):  # 23:58, 23:59, then two in April
        log.record(action="view", outcome="started", actor=nurse, object_path=f"uploads/p{i}")
    log.record(action="view", outcome="started", actor=Actor(org_id=sqlite_stack.org2))
    march.now = datetime.now(timezone.utc)  # the archive's own events land today
    operator = Actor.cli(sqlite_stack.org1, "audit archive")

    result = archive_month(services, sqlite_stack.org1, 2026, 3, operator)
    key = f"audit-archive/{sqlite_stack.org1}/2026/03.jsonl.gz"
    assert (result.status, result.key, result.rows) == ("written", key, 2)
    assert (result.first_seq, result.last_seq) == (1, 2)
    info = services.store.head(key)
    meta = info.metadata
    assert meta["rows"] == "2" and meta["last-seq"] == "2" and meta["key-version"] == "1"
    assert meta["last-row-hash"] == result.last_row_hash and meta["wrapped-key"]
    body = services.store.get_bytes(key)
    assert not body.startswith(b"\x1f\x8b") and b"nurse@example.test" not in body
    assert b"nurse" not in json.dumps(meta).encode()

    report = verify_archive(services, sqlite_stack.org1, 2026, 3, actor=operator)
    assert report.ok and report.rows == 2, report.problems
    again = archive_month(services, sqlite_stack.org1, 2026, 3, operator)
    assert again.status == "unchanged"
    assert archive_month(services, sqlite_stack.org1, 2026, 2, operator).status == "empty"
    with pytest.raises(AuditArchiveError, match="has not begun"):
        archive_month(services, sqlite_stack.org1, 2999, 1, operator)

    with services.sessions() as s:
        actions = [(e.action, e.outcome) for e in query(
            s, org_id=sqlite_stack.org1, action=["audit_archive", "audit_verify"])]
    assert actions[:4] == [("audit_archive", "started"), ("audit_archive", "completed"),
                           ("audit_verify", "success"), ("audit_archive", "started")]


def test_archive_finds_rows_deleted_after_archiving(sqlite_stack: Any) -> None:
    services = sqlite_stack.services
    org = sqlite_stack.org1
    log = _use_clock(sqlite_stack, Clock(datetime(2026, 3, 10, tzinfo=timezone.utc)))
    for i in range(3):
        log.record(action="download", outcome="completed", actor=Actor(org_id=org), nbytes=i)
    operator = Actor.cli(org, "audit archive")
    # three downloads and the archive's own "started" row
    assert archive_month(services, org, 2026, 3, operator).rows == 4

    # An attacker with database rights deletes the newest rows and rewrites the head to
    # match: the chain alone cannot tell (a truncated hash chain is still a valid chain)...
    db = Db(services.settings.database_url, services.sessions)
    db.drop_triggers()
    last_kept = db.rows(org)[1]
    db.execute("DELETE FROM audit_events WHERE chain = :c AND seq > 2", c=org)
    db.execute("UPDATE audit_chain_heads SET seq = 2, row_hash = :h WHERE chain = :c",
               c=org, h=last_kept.row_hash)
    with services.sessions() as s:
        assert verify(s, services.keyring, org).ok
    # ...but the archive in the bucket still holds them.
    report = verify_archive(services, org, 2026, 3)
    assert not report.ok
    assert "seq 3" in report.problems[0] and "missing from the database" in report.problems[0]
    with pytest.raises(AuditArchiveError, match="not overwritten"):
        archive_month(services, org, 2026, 3, operator)

    # Altered archive bytes do not decrypt.
    key = archive_key(org, 2026, 3)
    body = bytearray(services.store.get_bytes(key))
    body[-5] ^= 1
    services.store.put_bytes(key, bytes(body), metadata=services.store.head(key).metadata)
    report = verify_archive(services, org, 2026, 3)
    assert not report.ok and "cannot be decrypted" in report.problems[0]


# --------------------------------------------------------------------------------------------
# HTTP API


def _get(client: Any, stack: Any, who: str, url: str) -> Any:
    return client.get(url, headers={"Authorization": f"Bearer {stack.users[who].token}"})


def _seed_http(stack: Any) -> None:
    log = stack.services.audit
    staff1 = stack.users["staff1"]
    staff2 = stack.users["staff2"]
    for i in range(3):
        log.record(action="view", outcome="started", object_id=f"obj{i}",
                   object_path=f"uploads/forms/{i}/scan.pdf",
                   actor=Actor(org_id=stack.org1, user_id=staff1.user_id, email=staff1.email,
                               role="staff"))
    log.record(action="download", outcome="completed", object_id="secret", nbytes=5,
               actor=Actor(org_id=stack.org2, user_id=staff2.user_id, email=staff2.email))


def test_api_answers_auditors_and_admins_of_their_own_organisation_only(
        client: Any, sqlite_stack: Any) -> None:
    stack = sqlite_stack
    _seed_http(stack)
    resp = _get(client, stack, "auditor1", f"/api/v1/audit?org={stack.org2}&limit=1000")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    events = resp.get_json()["events"]
    assert events and {e["org_id"] for e in events} == {stack.org1}
    assert "secret" not in resp.get_data(as_text=True)
    assert resp.get_json()["next"] is None
    admin2 = _get(client, stack, "admin2", "/api/v1/audit?action=download").get_json()["events"]
    assert [e["object_id"] for e in admin2] == ["secret"]
    assert _get(client, stack, "staff1", "/api/v1/audit").status_code == 403
    assert client.get("/api/v1/audit").status_code == 401
    other = _get(client, stack, "auditor1",
                 f"/api/v1/audit/users/{stack.users['staff2'].user_id}").get_json()
    assert other["events"] == []
    assert _get(client, stack, "auditor1", "/api/v1/audit/objects/secret").get_json()[
        "events"] == []
    with stack.services.sessions() as s:
        queries = query(s, org_id=stack.org1, action="audit_query",
                        user=stack.users["auditor1"].user_id)
    assert len(queries) == 3 and all(q.http_status == 200 for q in queries)


def test_api_filters_pages_and_exports(client: Any, sqlite_stack: Any) -> None:
    stack = sqlite_stack
    _seed_http(stack)
    staff1 = stack.users["staff1"].user_id
    page1 = _get(client, stack, "auditor1", "/api/v1/audit?action=view&limit=2").get_json()
    assert [e["object_id"] for e in page1["events"]] == ["obj2", "obj1"]  # newest first
    page2 = _get(client, stack, "auditor1",
                 f"/api/v1/audit?action=view&limit=2&after={page1['next']}").get_json()
    assert [e["object_id"] for e in page2["events"]] == ["obj0"] and page2["next"] is None
    by_user = _get(client, stack, "auditor1",
                   f"/api/v1/audit/users/{staff1}?order=asc").get_json()["events"]
    assert [e["object_id"] for e in by_user] == ["obj0", "obj1", "obj2"]
    by_object = _get(client, stack, "auditor1", "/api/v1/audit/objects/obj1").get_json()
    assert [e["object_path"] for e in by_object["events"]] == ["uploads/forms/1/scan.pdf"]
    prefix = _get(client, stack, "auditor1", "/api/v1/audit?path=uploads/forms/2/*").get_json()
    assert [e["object_id"] for e in prefix["events"]] == ["obj2"]

    exported = _get(client, stack, "admin1", "/api/v1/audit?format=csv&action=view&limit=2")
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    assert "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [r["object_id"] for r in rows] == ["obj0", "obj1"]  # exports run oldest first
    assert exported.headers["X-Next-Cursor"] == rows[-1]["seq"]
    lines = _get(client, stack, "admin1",
                 "/api/v1/audit?format=jsonl&action=view").get_data(as_text=True).splitlines()
    assert [json.loads(line)["object_id"] for line in lines] == ["obj0", "obj1", "obj2"]
    with stack.services.sessions() as s:
        assert [e.detail for e in query(s, org_id=stack.org1, action="audit_export")] != []

    for bad in ("format=xml", "limit=0", "limit=5000", "after=x", "since=yesterday",
                "action=peek", "user=nobody", "since=2026-02-01&until=2026-01-01"):
        resp = _get(client, stack, "auditor1", f"/api/v1/audit?{bad}")
        assert resp.status_code == 400, bad
        assert resp.get_json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize("url", [
    "/api/v1/audit?until=9999-12-31",
    "/api/v1/audit?since=9999-12-31T23:59:59-14:00",
    "/api/v1/audit?since=0001-01-01T00:00:00%2B14:00",
    "/api/v1/audit?until=0001-01-01T05:00:00%2B14:00&format=csv",
    "/api/v1/audit?after=9223372036854775808",
    "/api/v1/audit?after=" + "9" * 5000,
    "/api/v1/audit?user=9223372036854775808",
    "/api/v1/audit?user=2147483648&format=jsonl",
    "/api/v1/audit?user=%EF%BC%91",  # a fullwidth digit is no user id
    "/api/v1/audit/users/9223372036854775808",
    "/api/v1/audit/users/2147483648",
    "/api/v1/audit/users/-1",
    "/api/v1/audit/objects/x?until=9999-12-31",
])
def test_api_refuses_filters_beyond_the_columns_and_the_calendar(client: Any, sqlite_stack: Any,
                                                                   url: str) -> None:
    resp = _get(client, sqlite_stack, "auditor1", url)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == "bad_request"


def test_api_answers_name_events_by_their_chain_and_seq_only(client: Any,
                                                             sqlite_stack: Any) -> None:
    """No global row id leaves the gateway: its gaps count other organisations' events."""
    stack = sqlite_stack
    _seed_http(stack)
    events = _get(client, stack, "auditor1", "/api/v1/audit?order=asc").get_json()["events"]
    assert events and all("id" not in e for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    header = _get(client, stack, "auditor1", "/api/v1/audit?format=csv").get_data(
        as_text=True).splitlines()[0].split(",")
    assert "id" not in header and header[:2] == ["chain", "seq"]
    line = _get(client, stack, "auditor1", "/api/v1/audit?format=jsonl").get_data(
        as_text=True).splitlines()[0]
    assert "id" not in json.loads(line)


def test_api_serves_nothing_when_the_audit_log_is_down(client: Any, sqlite_stack: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _seed_http(sqlite_stack)
    log = sqlite_stack.services.audit

    def down(**kwargs: Any) -> None:
        raise AuditUnavailable("the audit log is unavailable")

    monkeypatch.setattr(log, "record", down)
    for url in ("/api/v1/audit", "/api/v1/audit?format=csv", "/api/v1/audit/objects/obj1"):
        resp = _get(client, sqlite_stack, "auditor1", url)
        assert resp.status_code == 503, url
        assert resp.get_json()["error"]["code"] == "audit_unavailable"
        assert "obj1" not in resp.get_data(as_text=True)
