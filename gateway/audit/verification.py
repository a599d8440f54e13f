"""Verifying the audit chains: every row against its keyed hash, its predecessor and the head;
every chain against what was recorded of it earlier (claims); every organisation that should
have a chain against the chains there are."""
from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ..db.models import (
    AuditChainHead,
    AuditEvent,
    AuditKey,
    OrgKeyVersion,
    StoredObject,
)
from .chain import GENESIS_HASH, HASHED_FIELDS, row_fields, row_hash

_VERIFY_BATCH = 5000

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
    "chain_missing": "no rows for a chain that must exist (the chain was deleted)",
    "rewound": "the chain ends before a head recorded earlier (newest rows deleted, head "
               "moved back)",
    "anchor_mismatch": "the row at a recorded head differs from the record (rows replaced)",
    "anchor_invalid": "a head record outside the database fails its check (forged or altered)",
}

#: how many of the newest ``audit_verify`` rows are read for the heads they recorded
RECORDED_VERIFICATIONS = 20
#: how many of the newest ``audit_archive`` rows are read for the last rows they archived
RECORDED_ARCHIVES = 200


@dataclass(frozen=True)
class Claim:
    """A chain held at least ``seq`` rows, row ``seq`` hashing to ``row_hash`` (``None``:
    not recorded): an earlier verification, an archive, or an anchor in the bucket says so.

    ``problem``: the record itself failed its check (a forged or altered anchor).
    """

    chain: str
    seq: int
    row_hash: str | None
    source: str
    problem: str | None = None


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
    #: the claims the chains were compared with, and where they came from
    claims: list[Claim] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.chains)

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.chains)

    @property
    def first_fault(self) -> ChainFault | None:
        return next((c.fault for c in self.chains if c.fault is not None), None)

#: The columns a check of the chain reads.
CHAIN_COLUMNS = [AuditEvent.__table__.c[name] for name in ("id", *HASHED_FIELDS,
                                                           "prev_hash", "row_hash")]


def verify(session: Session, keyring: Any, chain: str | None = None, *,
           claims: Iterable[Claim] = ()) -> VerifyReport:
    """Check every row of one chain (or of all chains) against its keyed hash and order, and
    each chain against what was recorded of it before.

    Needs only the database (a copy will do) and the keyring. Reads in batches and ends the
    session's transaction between them (on SQLite every transaction holds the write lock), so
    pass a session with no pending changes. Rows appended while it runs are checked too, or
    ignored when they come after the head read at the end.

    Besides the rows: every chain that must exist (one with an audit key, an organisation
    with objects, a chain some claim names) must have rows (``chain_missing``), and no chain
    may end before, or differ at, a head recorded earlier (``rewound``, ``anchor_mismatch``):
    the heads that the newest ``audit_verify`` rows recorded, the last rows that
    ``audit_archive`` rows archived, and ``claims`` from outside the database (the bucket's
    anchors and archives, :func:`gateway.audit.anchors.bucket_claims`).

    Stops each chain at its first fault; ``report.first_fault`` names it.
    """
    outside = list(claims)
    recorded = recorded_claims(session)
    expected = expected_chains(session) | {c.chain for c in outside} | \
        {c.chain for c in recorded}
    if chain is not None:
        chains = [chain]
    else:
        chains = sorted(
            set(session.scalars(select(AuditEvent.chain).distinct()))
            | set(session.scalars(select(AuditChainHead.chain)))
            | expected
        )
    session.commit()
    report = VerifyReport()
    by_chain: dict[str, list[Claim]] = {}
    for claim in [*recorded, *outside]:
        if chain is None or claim.chain == chain:
            by_chain.setdefault(claim.chain, []).append(claim)
            report.claims.append(claim)
    for name in chains:
        result = _verify_chain(session, keyring, name)
        if result.ok:
            _check_claims(session, result, by_chain.get(name, []), name in expected)
        report.chains.append(result)
    return report


def expected_chains(session: Session) -> set[str]:
    """Chains that must have rows: each with an audit key (created with a chain's first
    row, in the same transaction), each organisation with objects (live or deleted: an
    upload is always recorded), and each organisation whose key was rotated (a rotation is
    recorded in its chain; a new organisation's first key version is not an event)."""
    keyed = set(session.scalars(select(AuditKey.chain)))
    with_objects = set(session.scalars(select(StoredObject.org_id).distinct()))
    rotated = set(session.scalars(select(OrgKeyVersion.org_id).group_by(OrgKeyVersion.org_id)
                                  .having(func.count() > 1)))
    return keyed | with_objects | rotated


def recorded_claims(session: Session) -> list[Claim]:
    """The heads recorded in the database by the newest successful ``audit_verify`` rows
    (``detail.heads``) and the last rows of the newest ``audit_archive`` rows."""
    claims: list[Claim] = []
    rows = session.execute(
        select(AuditEvent.chain, AuditEvent.seq, AuditEvent.detail)
        .where(AuditEvent.action == "audit_verify", AuditEvent.outcome == "success")
        .order_by(AuditEvent.id.desc()).limit(RECORDED_VERIFICATIONS)).all()
    for chain, seq, detail in rows:
        heads = _json(detail).get("heads")
        if isinstance(heads, dict):
            for name, head in heads.items():
                if isinstance(head, list) and len(head) == 2 and isinstance(head[0], int):
                    claims.append(Claim(str(name), head[0], str(head[1]),
                                        f"audit_verify row seq {seq} of chain {chain}"))
    rows = session.execute(
        select(AuditEvent.chain, AuditEvent.seq, AuditEvent.detail)
        .where(AuditEvent.action == "audit_archive", AuditEvent.outcome == "completed")
        .order_by(AuditEvent.id.desc()).limit(RECORDED_ARCHIVES)).all()
    for chain, seq, detail in rows:
        data = _json(detail)
        if isinstance(data.get("last_seq"), int):
            claims.append(Claim(chain, data["last_seq"], data.get("last_row_hash"),
                                f"audit_archive row seq {seq} ({data.get('key')})"))
    return claims


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _check_claims(session: Session, result: ChainResult, claims: list[Claim],
                  expected: bool) -> None:
    """Compare a chain whose rows verified with what was recorded of it."""
    chain = result.chain
    last = result.rows  # rows verified 1..last without a gap

    def fault(reason: str, seq: int | None, detail: str) -> None:
        message = f"chain {chain}, seq {seq}: {REASONS[reason]} ({detail})"
        result.fault = ChainFault(chain, seq, None, reason, message)

    for claim in claims:
        if claim.problem is not None:
            return fault("anchor_invalid", None, claim.problem)
    if last == 0 and (expected or claims):
        return fault("chain_missing", None, "no rows and no head, but " + (
            claims[0].source + " names it" if claims else
            "it has an audit key or objects"))
    strongest = max(claims, key=lambda c: c.seq, default=None)
    if strongest is not None and strongest.seq > last:
        return fault("rewound", last + 1, f"the rows end at seq {last}, {strongest.source} "
                     f"recorded seq {strongest.seq}")
    hashed = [c for c in claims if c.row_hash and 0 < c.seq <= last]
    if not hashed:
        return None
    stored = dict(session.execute(select(AuditEvent.seq, AuditEvent.row_hash).where(
        AuditEvent.chain == chain, AuditEvent.seq.in_({c.seq for c in hashed}))).all())
    session.commit()
    for claim in sorted(hashed, key=lambda c: c.seq):
        if stored.get(claim.seq) != claim.row_hash:
            return fault("anchor_mismatch", claim.seq, f"{claim.source} recorded another "
                         "row_hash for this seq")
    return None


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
        stmt = select(*CHAIN_COLUMNS).where(AuditEvent.chain == chain)
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
            if not hmac.compare_digest(row_hash(key, row.prev_hash, row_fields(row)),
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
