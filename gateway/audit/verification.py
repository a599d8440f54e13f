"""Verifying the audit chains: every row against its keyed hash, its predecessor and the head."""
from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..db.models import AuditChainHead, AuditEvent
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

#: The columns a check of the chain reads.
CHAIN_COLUMNS = [AuditEvent.__table__.c[name] for name in ("id", *HASHED_FIELDS,
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
