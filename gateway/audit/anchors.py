"""Chain heads anchored outside the database: signed head records in the bucket.

Someone with full rights on the database can delete a chain's newest rows and move its head
back, or delete a whole organisation's chain: what is left still hashes right. An anchor is a
small record of a chain's head (``seq`` and ``row_hash``) written to the bucket, signed with
the chain's own audit key (HMAC-SHA256, so that it cannot be forged from the database alone)
and, when the bucket has S3 Object Lock enabled, locked in compliance mode so that nobody can
delete or overwrite it before its retention ends. ``gateway audit verify`` compares every
chain with its newest anchor: a chain that ends before it, or holds another row at its
``seq``, or is gone, is named.

Layout: ``audit-anchors/{chain}/{9999999999999999999 - seq:019d}.json``. The key counts
down, so that S3's ascending listing gives the highest ``seq`` first (one request finds the
newest anchor, however many there are). The body is canonical JSON::

    {"anchored_at": "...Z", "chain": "...", "format": "gateway-audit-anchor-v1",
     "mac": HMAC-SHA256(audit key, canonical JSON of the other five fields), "row_hash": "...",
     "seq": N}
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import AuditChainHead, utcnow
from ..storage import ObjectStore, StorageNotFound
from .chain import canonical_json, format_time
from .verification import Claim

ANCHOR_PREFIX = "audit-anchors"
ANCHOR_FORMAT = "gateway-audit-anchor-v1"
#: how long an anchor is locked when the bucket has Object Lock (six years: the retention
#: HIPAA asks of documentation)
ANCHOR_RETENTION_DAYS = 6 * 365
_SPAN = 10**19 - 1
_FIELDS = ("anchored_at", "chain", "format", "row_hash", "seq")


class AnchorServices(Protocol):
    sessions: sessionmaker[Session]
    keyring: Any
    store: ObjectStore


@dataclass(frozen=True)
class Anchor:
    chain: str
    seq: int
    row_hash: str
    anchored_at: str
    key: str


@dataclass
class AnchorResult:
    chain: str
    seq: int
    status: str  # written | unchanged | behind (the head is below the newest anchor)
    key: str
    newest_seq: int | None = None  # the newest anchor's seq before this run


def anchor_key(chain: str, seq: int) -> str:
    """``audit-anchors/{chain}/{inverted seq}.json`` (see the module's text)."""
    if not 0 <= seq <= _SPAN:
        raise ValueError("seq out of range")
    return f"{ANCHOR_PREFIX}/{chain}/{_SPAN - seq:019d}.json"


def _mac(key: bytes, fields: dict[str, Any]) -> str:
    message = canonical_json({name: fields[name] for name in _FIELDS}).encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def anchor_body(key: bytes, chain: str, seq: int, row_hash: str, anchored_at: datetime) -> bytes:
    """The signed record of a chain head."""
    fields: dict[str, Any] = {"anchored_at": format_time(anchored_at), "chain": chain,
                              "format": ANCHOR_FORMAT, "row_hash": row_hash, "seq": seq}
    return canonical_json(dict(fields, mac=_mac(key, fields))).encode("utf-8")


class AnchorInvalid(ValueError):
    """An anchor that is not one: unreadable, for another chain, or failing its signature."""


def parse_anchor(key: bytes, data: bytes, chain: str, object_key: str) -> Anchor:
    """Check and read an anchor. :raises AnchorInvalid: with what is wrong."""
    try:
        fields = json.loads(data.decode("utf-8"))
        if not isinstance(fields, dict) or fields.get("format") != ANCHOR_FORMAT:
            raise AnchorInvalid(f"{object_key} is not an audit anchor")
        good = hmac.compare_digest(_mac(key, fields), str(fields.get("mac", "")))
        seq = fields["seq"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise AnchorInvalid(f"{object_key} is not readable ({type(exc).__name__})") from None
    if not good:
        raise AnchorInvalid(f"{object_key} fails its signature (forged or altered)")
    if fields["chain"] != chain or not isinstance(seq, int) or anchor_key(chain, seq) != object_key:
        raise AnchorInvalid(f"{object_key} names another chain or seq than its key")
    return Anchor(chain=chain, seq=seq, row_hash=str(fields["row_hash"]),
                  anchored_at=str(fields["anchored_at"]), key=object_key)


def _audit_key(services: AnchorServices, chain: str) -> bytes:
    with services.sessions() as session:
        key = services.keyring.audit_key(session, chain)
        session.commit()
    return key


def newest_anchor(services: AnchorServices, chain: str) -> Anchor | None:
    """The anchor with the highest ``seq`` of a chain, checked; ``None`` if it has none.

    :raises AnchorInvalid: when the newest object under the chain's prefix is no valid anchor.
    :raises StorageError: when the bucket cannot be read.
    """
    object_key = services.store.first_key(f"{ANCHOR_PREFIX}/{chain}/")
    if object_key is None:
        return None
    try:
        data = services.store.get_bytes(object_key)
    except StorageNotFound:
        return None  # deleted between the listing and the read: as if never there
    return parse_anchor(_audit_key(services, chain), data, chain, object_key)


def anchored_chains(services: AnchorServices) -> list[str]:
    """Every chain with at least one anchor in the bucket."""
    prefix = ANCHOR_PREFIX + "/"
    return sorted(p[len(prefix):].strip("/") for p in services.store.list_prefixes(prefix))


def write_anchors(services: AnchorServices,
                  chains: Iterable[str] | None = None) -> list[AnchorResult]:
    """Anchor the current head of each chain (or of ``chains``) in the bucket.

    A head already anchored is left alone (``unchanged``). A head *below* the chain's newest
    anchor is not anchored (``behind``): the chain lost rows since, and the caller says so.
    Object Lock (compliance mode, :data:`ANCHOR_RETENTION_DAYS`) is used when the bucket has
    it enabled.

    :raises StorageError: when the bucket cannot be written.
    """
    with services.sessions() as session:
        stmt = select(AuditChainHead.chain, AuditChainHead.seq, AuditChainHead.row_hash)
        if chains is not None:
            wanted = list(chains)
            if not wanted:
                return []
            stmt = stmt.where(AuditChainHead.chain.in_(wanted))
        heads = [tuple(row) for row in session.execute(stmt.order_by(AuditChainHead.chain))]
    locked = services.store.object_lock_enabled()
    now = utcnow()
    retain_until = now + timedelta(days=ANCHOR_RETENTION_DAYS) if locked else None
    results: list[AnchorResult] = []
    for chain, seq, row_hash in heads:
        if seq < 1:
            continue
        key = anchor_key(chain, seq)
        try:
            newest = newest_anchor(services, chain)
        except AnchorInvalid:
            newest = None  # verify names it; a valid anchor of the head is still worth writing
        if newest is not None and newest.seq > seq:
            results.append(AnchorResult(chain, seq, "behind", key, newest.seq))
            continue
        if newest is not None and newest.seq == seq and newest.row_hash == row_hash:
            results.append(AnchorResult(chain, seq, "unchanged", key, newest.seq))
            continue
        body = anchor_body(_audit_key(services, chain), chain, seq, row_hash, now)
        services.store.put_bytes_retained(key, body, retain_until=retain_until,
                                          metadata={"format": ANCHOR_FORMAT})
        results.append(AnchorResult(chain, seq, "written", key,
                                    newest.seq if newest is not None else None))
    return results


def bucket_claims(services: AnchorServices, chains: Iterable[str]) -> list[Claim]:
    """What the bucket says each chain held at least: its newest anchor, and the last row
    of its newest monthly archive. Chains with anchors in the bucket are included even when
    the database no longer names them. An anchor that fails its check is a claim with a
    ``problem``.

    :raises StorageError: when the bucket cannot be read.
    """
    from .archives import ARCHIVE_PREFIX, archive_claim

    names = sorted(set(chains) | set(anchored_chains(services)))
    claims: list[Claim] = []
    for chain in names:
        try:
            anchor = newest_anchor(services, chain)
        except AnchorInvalid as exc:
            claims.append(Claim(chain, 0, None, "bucket anchor", problem=str(exc)))
            anchor = None
        if anchor is not None:
            claims.append(Claim(chain, anchor.seq, anchor.row_hash,
                                f"bucket anchor {anchor.key} ({anchor.anchored_at})"))
    archived = services.store.list_prefixes(ARCHIVE_PREFIX + "/")
    for prefix in archived:
        chain = prefix[len(ARCHIVE_PREFIX) + 1:].strip("/")
        claim = archive_claim(services, chain)
        if claim is not None:
            claims.append(claim)
    return claims
