"""Verification that sees deletions: a chain deleted whole, a chain whose newest rows were
deleted and whose head was moved back, rows replaced behind an anchor, forged anchors. The
chains are compared with the heads recorded by earlier verifications and archives, and with the
signed head records (anchors) in the bucket, under S3 Object Lock when the bucket has it.

Runs on both databases, against moto's S3 server, with the real keyring.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from click.testing import CliRunner, Result
from sqlalchemy import select, text

from gateway.audit import (
    ANCHOR_RETENTION_DAYS,
    anchor_key,
    bucket_claims,
    newest_anchor,
    verify,
    write_anchors,
)
from gateway.cli.audit import audit
from gateway.db.migrate import alembic_config, upgrade
from gateway.db.models import AuditChainHead, AuditEvent
from gateway.principal import Actor
from gateway.storage import ObjectStore
from tests.stack import Stack

PDF = b"%PDF-1.7\n" + bytes(200)


def run(stack: Stack, *args: str) -> Result:
    return CliRunner().invoke(audit, list(args), obj={"services": stack.services})


def _actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)


def _activity(stack: Stack, n: int = 3) -> None:
    objects = stack.services.objects
    for who in ("staff1", "staff2"):
        for i in range(n):
            objects.upload(_actor(stack, who), f"uploads/a/{secrets.token_hex(3)}.pdf", [PDF])
            objects.list(_actor(stack, who), "uploads/")


def _sql(stack: Stack, statement: str, **params: Any) -> None:
    with stack.services.sessions() as s:
        s.execute(text(statement), params)
        s.commit()


def _as_dba(stack: Stack, tamper: Any) -> None:
    """Lift the append-only triggers, tamper, put them back (what a database admin can do)."""
    url = stack.settings.database_url
    command.downgrade(alembic_config(url), "0001")
    try:
        tamper()
    finally:
        upgrade(url)


def _rows(stack: Stack, chain: str) -> list[AuditEvent]:
    with stack.services.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.chain == chain)
                              .order_by(AuditEvent.seq)))


def _rewind(stack: Stack, chain: str, keep: int) -> None:
    """Delete every row after ``keep`` and point the head at row ``keep``."""
    assert keep >= 1
    last = _rows(stack, chain)[keep - 1]

    def tamper() -> None:
        _sql(stack, "DELETE FROM audit_events WHERE chain = :c AND seq > :k", c=chain, k=keep)
        _sql(stack, "UPDATE audit_chain_heads SET seq = :k, row_hash = :h WHERE chain = :c",
             c=chain, k=keep, h=last.row_hash)
    _as_dba(stack, tamper)


def _faults(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("audit chain altered")]


def test_an_intact_trail_verifies_and_its_heads_are_anchored(stack: Stack) -> None:
    _activity(stack)
    first = run(stack, "verify")
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[0].startswith("audit chain intact:")
    assert lines[1] == "compared with: 0 bucket anchor(s), 0 archive(s), 0 earlier verification(s)"
    assert lines[2] == "anchored 2 chain head(s) in the bucket"  # the two organisations
    anchor = newest_anchor(stack.services, stack.org1)
    assert anchor is not None and anchor.seq == len(_rows(stack, stack.org1))
    again = run(stack, "verify")
    assert again.exit_code == 0, again.output
    assert "compared with: 2 bucket anchor(s), 0 archive(s), 1 earlier verification(s)" in \
        again.output
    assert "anchored 1 chain head(s)" in again.output  # the system chain, with the first's row
    with stack.services.sessions() as s:
        row = s.scalars(select(AuditEvent).where(AuditEvent.action == "audit_verify")
                        .order_by(AuditEvent.id.desc())).first()
    detail = json.loads(row.detail)
    assert detail["heads"][stack.org1][0] == len(_rows(stack, stack.org1))
    assert detail["anchors"] == 2 and detail["anchored"] == 1


@pytest.mark.parametrize("bucket", [True, False])
def test_a_deleted_chain_is_found(stack: Stack, bucket: bool) -> None:
    _activity(stack)
    assert run(stack, "verify").exit_code == 0
    chain = stack.org2

    def tamper() -> None:
        _sql(stack, "DELETE FROM audit_events WHERE chain = :c", c=chain)
        _sql(stack, "DELETE FROM audit_chain_heads WHERE chain = :c", c=chain)
    _as_dba(stack, tamper)
    result = run(stack, "verify", *([] if bucket else ["--no-bucket"]))
    assert result.exit_code == 1, result.output
    assert [f for f in _faults(result) if chain in f and "[chain_missing]" in f], result.output
    assert run(stack, "verify", "--org", stack.org2).exit_code == 1


def test_an_organisation_erased_from_the_database_is_found_by_its_anchor(stack: Stack) -> None:
    """Rows, head, audit key and objects gone: only the bucket still knows the chain."""
    _activity(stack)
    assert run(stack, "verify").exit_code == 0
    chain = stack.org2

    def tamper() -> None:
        for table, column in (("audit_events", "chain"), ("audit_chain_heads", "chain"),
                              ("audit_keys", "chain"), ("objects", "org_id")):
            _sql(stack, f"DELETE FROM {table} WHERE {column} = :c", c=chain)
        # the earlier verification's record goes too (the system chain is rewound)
        _sql(stack, "DELETE FROM audit_events WHERE action = 'audit_verify'")
        with stack.services.sessions() as s:
            last = s.scalars(select(AuditEvent).where(AuditEvent.chain == "system")
                             .order_by(AuditEvent.seq.desc())).first()
            if last is None:
                s.execute(text("DELETE FROM audit_chain_heads WHERE chain = 'system'"))
            else:
                s.execute(text("UPDATE audit_chain_heads SET seq = :s, row_hash = :h "
                               "WHERE chain = 'system'"), {"s": last.seq, "h": last.row_hash})
            s.commit()
    _as_dba(stack, tamper)
    result = run(stack, "verify")
    assert result.exit_code == 1, result.output
    faults = _faults(result)
    assert any(chain in f and ("[chain_missing]" in f or "[anchor_invalid]" in f)
               for f in faults), result.output


@pytest.mark.parametrize("erase_verify_rows", [False, True])
def test_a_rewound_chain_is_found(stack: Stack, erase_verify_rows: bool) -> None:
    _activity(stack, n=4)
    stack.services.audit.record(action="login_failed", outcome="denied",
                                actor=Actor(org_id=None, email="nobody@example.test"))
    assert run(stack, "verify").exit_code == 0
    chain = stack.org1
    total = len(_rows(stack, chain))
    _rewind(stack, chain, total - 3)
    if erase_verify_rows:  # the verification's own record in the system chain, too
        verified = [r.seq for r in _rows(stack, "system") if r.action == "audit_verify"]
        _rewind(stack, "system", verified[0] - 1)
    result = run(stack, "verify")
    assert result.exit_code == 1, result.output
    expected = f"chain {chain}, seq {total - 2}: the chain ends before a head recorded earlier"
    assert any(expected in f and "[rewound]" in f for f in _faults(result)), result.output
    # without the bucket, only the database's records remain
    offline = run(stack, "verify", "--no-bucket")
    assert offline.exit_code == (0 if erase_verify_rows else 1), offline.output
    # the anchor command refuses to anchor the shorter chain
    anchor = run(stack, "anchor", "--org", chain)
    assert anchor.exit_code == 1 and "[rewound]" in anchor.output


def test_rows_replaced_behind_an_anchor_are_found(stack: Stack) -> None:
    """Truncate, then let the gateway append again until the chain is longer than before:
    every hash is right, but the row at the anchored seq is not the one anchored."""
    _activity(stack)
    chain = stack.org1
    assert run(stack, "anchor").exit_code == 0
    anchored = newest_anchor(stack.services, chain)
    assert anchored is not None
    _rewind(stack, chain, anchored.seq - 2)
    _activity(stack)  # new rows, validly chained
    with stack.services.sessions() as s:  # the database alone: every hash is right
        assert verify(s, stack.services.keyring, chain).ok
    result = run(stack, "verify", "--org", chain)
    assert result.exit_code == 1, result.output
    assert any(f"seq {anchored.seq}" in f and "[anchor_mismatch]" in f
               for f in _faults(result)), result.output


def test_a_forged_anchor_is_refused(stack: Stack) -> None:
    _activity(stack)
    assert run(stack, "anchor").exit_code == 0
    chain = stack.org1
    seq = len(_rows(stack, chain))
    forged = {"anchored_at": "2026-01-01T00:00:00.000000Z", "chain": chain,
              "format": "gateway-audit-anchor-v1", "mac": "0" * 64, "row_hash": "a" * 64,
              "seq": seq + 50}
    stack.services.store.put_bytes(anchor_key(chain, seq + 50), json.dumps(forged).encode())
    result = run(stack, "verify")
    assert result.exit_code == 1
    assert any(chain in f and "[anchor_invalid]" in f and "fails its signature" in f
               for f in _faults(result)), result.output


def test_an_archive_in_the_bucket_is_an_anchor_too(stack: Stack) -> None:
    from gateway.audit import archive_month

    _activity(stack)
    now = datetime.now(timezone.utc)
    archive_month(stack.services, stack.org1, now.year, now.month,
                  Actor.cli(stack.org1, "audit archive"))
    with stack.services.sessions() as s:
        names = list(s.scalars(select(AuditChainHead.chain)))
    claims = bucket_claims(stack.services, names)
    archived = [c for c in claims if c.source.startswith("archive ")]
    assert [c.chain for c in archived] == [stack.org1] and archived[0].row_hash
    _rewind(stack, stack.org1, archived[0].seq - 1)
    result = run(stack, "verify", "--org", stack.org1)
    assert result.exit_code == 1
    assert any("[rewound]" in f for f in _faults(result)), result.output


def test_anchors_are_locked_when_the_bucket_has_object_lock(stack: Stack) -> None:
    bucket = f"gw-lock-{secrets.token_hex(4)}"
    locked = ObjectStore(bucket, endpoint_url=stack.settings.s3_endpoint_url)
    locked.client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    assert locked.object_lock_enabled()
    assert not stack.services.store.object_lock_enabled()
    stack.services._cache["store"] = locked
    _activity(stack, n=1)
    results = write_anchors(stack.services)
    assert results and all(r.status == "written" for r in results)
    mode, until = locked.retention(results[0].key)  # type: ignore[misc]
    assert mode == "COMPLIANCE"
    assert until > datetime.now(timezone.utc) + timedelta(days=ANCHOR_RETENTION_DAYS - 2)
    assert write_anchors(stack.services)[0].status == "unchanged"


def test_an_organisation_with_a_rotated_key_must_have_a_chain(stack: Stack) -> None:
    """A rotation is recorded in the organisation's chain; a new organisation's first key
    version is not an event, and no chain is asked of it."""
    assert run(stack, "verify", "--no-bucket").exit_code == 0  # three organisations, no events
    with stack.services.sessions() as s:
        stack.services.keyring.create_org_key(s, stack.org_ssec)  # a rotation nobody recorded
        s.commit()
    result = run(stack, "verify", "--no-bucket")
    assert result.exit_code == 1
    assert any(stack.org_ssec in f and "[chain_missing]" in f for f in _faults(result)), \
        result.output
