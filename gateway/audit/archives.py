"""Monthly archives of an organisation's chain in the bucket, and their verification.

An archive is the month's rows as JSON lines, gzip-compressed in memory and encrypted like any
object (:mod:`gateway.crypto.envelope`) under a fresh data key wrapped by the organisation key.
The functions take the services they use (``sessions``, ``keyring``, ``store``, ``audit``) as
one object, :class:`ArchiveServices`.
"""
from __future__ import annotations

import base64
import gzip
import hmac
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ..crypto import envelope
from ..db.models import AuditEvent, utcnow
from ..principal import Actor
from ..storage import ObjectStore, StorageNotFound
from .chain import ARCHIVE_FIELDS, canonical_json, row_fields, row_hash
from .events import Action, AuditArchiveError, AuditUnavailable, Outcome
from .exports import event_to_dict
from .log import AuditLog
from .queries import parse_time
from .verification import CHAIN_COLUMNS, REASONS, Claim

ARCHIVE_PREFIX = "audit-archive"
ARCHIVE_FORMAT = "gateway-audit-archive-v1"


class ArchiveServices(Protocol):
    """What the archive functions use (the application's services provide it)."""

    sessions: sessionmaker[Session]
    keyring: Any
    store: ObjectStore
    audit: AuditLog


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
                select(*CHAIN_COLUMNS)
                .where(AuditEvent.chain == org_id, AuditEvent.seq > last,
                       AuditEvent.occurred_at >= start, AuditEvent.occurred_at < end)
                .order_by(AuditEvent.seq).limit(batch_size)
            ).all()
        yield from batch
        if len(batch) < batch_size:
            return
        last = batch[-1].seq


def _audit_key(services: ArchiveServices, org_id: str) -> bytes:
    with services.sessions() as session:
        key = services.keyring.audit_key(session, org_id)
        session.commit()
    return key


def archive_month(services: ArchiveServices, org_id: str, year: int, month: int,
                  actor: Actor) -> ArchiveResult:
    """Write the org's events of one month to ``audit-archive/{org}/{yyyy}/{mm}.jsonl.gz``.

    Rows are checked against their hashes, written as JSON lines (``detail`` as stored), gzip
    compressed in memory (never on disk) and encrypted like any object, under a fresh data key
    wrapped by the org key. Re-runnable: an archive already holding exactly these rows is left
    as it is; one holding a subset (the month was archived before it ended) is replaced; one
    holding rows the database no longer has is never overwritten (:class:`AuditArchiveError`).
    Audited as ``audit_archive`` (started, then completed or failure).
    """
    start, end = month_bounds(year, month)
    if start > utcnow():
        raise AuditArchiveError(f"{year:04d}-{month:02d} has not begun")
    key = archive_key(org_id, year, month)
    month_text = f"{year:04d}-{month:02d}"
    services.audit.record(action=Action.AUDIT_ARCHIVE, outcome=Outcome.STARTED, actor=actor,
                          org_id=org_id, detail={"month": month_text, "key": key})
    try:
        result = _write_archive(services, org_id, year, month, key)
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
                "first_seq": result.first_seq, "last_seq": result.last_seq,
                "last_row_hash": result.last_row_hash},
    )
    return result


def _write_archive(services: ArchiveServices, org_id: str, year: int, month: int,
                   key: str) -> ArchiveResult:
    start, end = month_bounds(year, month)
    chain_key = _audit_key(services, org_id)
    result = ArchiveResult(org_id=org_id, key=key, status="written", rows=0)
    buffer = io.BytesIO()
    hashes: dict[int, str] = {}
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz:
        for row in _month_rows(services.sessions, org_id, start, end):
            if not hmac.compare_digest(row_hash(chain_key, row.prev_hash, row_fields(row)),
                                       row.row_hash):
                raise AuditArchiveError(
                    f"row seq {row.seq} (id {row.id}) of {org_id} fails its hash; "
                    "run `gateway audit verify` before archiving")
            gz.write(canonical_json(event_to_dict(row, raw_detail=True,
                                                  fields=ARCHIVE_FIELDS)).encode("utf-8") + b"\n")
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
    except StorageNotFound:
        existing = None
    if existing is not None:
        meta = _metadata(existing)
        old_rows = _read_archive(services, org_id, year, month)
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


def archive_claim(services: ArchiveServices, org_id: str) -> Claim | None:
    """The last row of the organisation's newest archive, from its S3 metadata (``None``
    without archives). Read in the bucket, it is an anchor the database cannot rewind."""
    prefix = f"{ARCHIVE_PREFIX}/{org_id}/"
    keys = [key for key, _size in services.store.list_keys(prefix) if key.endswith(".jsonl.gz")]
    if not keys:
        return None
    newest = max(keys)
    meta = _metadata(services.store.head(newest))
    try:
        seq = int(meta["last-seq"])
    except (KeyError, ValueError):
        return Claim(org_id, 0, None, f"archive {newest}",
                     problem=f"{newest} has no readable last-seq in its metadata")
    return Claim(org_id, seq, meta.get("last-row-hash") or None, f"archive {newest}")


def _metadata(info: Any) -> dict[str, str]:
    meta = info.get("metadata") if isinstance(info, Mapping) else getattr(info, "metadata", None)
    return {str(k).lower(): str(v) for k, v in (meta or {}).items()}


def _read_archive(services: ArchiveServices, org_id: str, year: int,
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


def verify_archive(services: ArchiveServices, org_id: str, year: int, month: int,
                   *, actor: Actor | None = None) -> ArchiveReport:
    """Check an archive: decrypts, every row hashes right, chains, and matches the database.

    A row the database no longer holds, or holds differently, is reported; so is metadata that
    disagrees with the content. Audited as ``audit_verify`` when ``actor`` is given.
    """
    key = archive_key(org_id, year, month)
    report = ArchiveReport(org_id=org_id, key=key)
    try:
        rows = _read_archive(services, org_id, year, month)
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


def _check_archive_rows(services: ArchiveServices, org_id: str, rows: list[dict[str, Any]],
                        report: ArchiveReport) -> None:
    chain_key = _audit_key(services, org_id)
    by_seq: dict[int, Any] = {}
    seqs = [r.get("seq") for r in rows]
    with services.sessions() as session:
        for i in range(0, len(seqs), 500):
            part = [s for s in seqs[i:i + 500] if isinstance(s, int)]
            for db_row in session.execute(select(*CHAIN_COLUMNS).where(
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
