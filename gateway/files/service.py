"""The object service: authorise → key → encrypt → store → audit, and back.

Nothing here knows Flask or botocore. Every method takes the :class:`~gateway.principal.Actor`
whose organisation is the only one it can touch; the organisation never comes from the
request. Each method audits before bytes flow (and again when a transfer ends), and raises
:mod:`gateway.files.errors` (and the other rooms' :class:`~gateway.errors.GatewayError`), which
the edges translate once.

Database sessions are short: each step opens and closes its own, so no transaction stays open
while bytes stream to or from a client.
"""
from __future__ import annotations

import hashlib
import itertools
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Iterable, Iterator, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..audit import AuditLog
from ..crypto import envelope
from ..db.models import EncryptionMode, Organisation, Role, StoredObject, new_id, utcnow
from ..db.prefix import prefix_condition
from ..errors import GatewayError
from ..keys import Keyring
from ..principal import Actor
from ..storage import (
    ObjectStore,
    OffloadedHash,
    StorageNotFound,
    UploadWriter,
    read_ahead,
)
from . import downloads
from .downloads import Download, etag_of, plaintext
from .errors import BadRange, Conflict, Forbidden, NotFound, TooLarge, UnsupportedType
from .paths import ObjectPath, PathError, folded_name, normalize_path, normalize_prefix
from .ranges import (
    ByteRange,
    RangeNotSatisfiable,
    RangeSetRefused,
    if_range_allows,
    parse_ranges,
)
from .sniff import SNIFF_BYTES, check_upload

T = TypeVar("T")

READ_ROLES = frozenset({Role.STAFF.value, Role.ADMIN.value})
WRITE_ROLES = frozenset({Role.STAFF.value, Role.ADMIN.value})
#: plaintext segments decrypted ahead of the writes to the client
DOWNLOAD_AHEAD = 4
#: how many times a download follows its row to a new S3 key (a rotation job moved it)
MOVED_RETRIES = 2
#: the reason of every 404's audit row (missing, deleted, or another organisation's: alike)
NOT_FOUND_REASON = "no such object in your organisation"


@dataclass(frozen=True)
class _Target:
    """Where an upload goes, read in one short transaction before any byte is received."""

    mode: str  # the organisation's encryption mode
    version: int  # its current key version
    ssec_key: bytes | None
    existing: StoredObject | None  # the live object at the path, if any


@dataclass
class _Stored:
    """What streaming an upload into the bucket produced."""

    size: int
    sha256: str
    content_type: str
    data_key: bytes | None  # None for SSE-C objects
    salt: bytes | None


def _rejoined(head: bytearray, rest: Iterator[bytes]) -> Iterator[bytes | bytearray]:
    """The body again: the sniffed ``head`` (dropped once yielded), then the ``rest``."""
    yield head
    del head
    yield from rest


class ObjectService:
    """Upload, download, list and delete an organisation's objects.

    :param sessions: the database session factory.
    :param keyring: organisation keys and data-key wrapping.
    :param store: the bucket.
    :param audit: the audit log every access is recorded in.
    :param max_upload_bytes: the largest upload accepted.
    """

    def __init__(self, *, sessions: sessionmaker[Session], keyring: Keyring, store: ObjectStore,
                 audit: AuditLog, max_upload_bytes: int) -> None:
        self.sessions = sessions
        self.keyring = keyring
        self.store = store
        self.audit = audit
        self.max_upload_bytes = max_upload_bytes

    # -- helpers ---------------------------------------------------------------------------

    def _record(self, actor: Actor, action: str, outcome: str, *, obj: StoredObject | None = None,
                path: str | None = None, status: int | None = None, nbytes: int | None = None,
                detail: dict | None = None) -> None:
        self.audit.record(
            action=action, outcome=outcome, actor=actor,
            object_id=obj.id if obj is not None else None,
            object_path=obj.path if obj is not None else path,
            http_status=status, nbytes=nbytes, detail=detail,
        )

    def _path(self, actor: Actor, raw: str, action: str) -> ObjectPath:
        try:
            return normalize_path(raw)
        except PathError as exc:
            self._record(actor, "denied", "denied", path=raw[:1024], status=400,
                         detail={"reason": str(exc), "attempted": action})
            raise

    def _require_role(self, actor: Actor, roles: frozenset[str], action: str, path: str | None) -> None:
        if actor.role not in roles:
            self._record(actor, "denied", "denied", path=path, status=403,
                         detail={"reason": f"role {actor.role} may not {action}"})
            raise Forbidden(f"your role ({actor.role}) does not allow this")

    def _live(self, session: Session, org_id: str | None, path: str) -> StoredObject | None:
        return session.scalar(select(StoredObject).where(
            StoredObject.org_id == org_id, StoredObject.path == path,
            StoredObject.deleted_at.is_(None)))

    def _not_found(self, actor: Actor, action: str, *, path: str | None = None,
                   object_id: str | None = None) -> NotFound:
        """404, audited as denied: one and the same row whether the object never existed, was
        deleted, or belongs to another organisation.

        Nothing here asks whether another organisation holds the path or id. The answer, the
        requester's audit row and the work done (and so the time taken) must not depend on
        other organisations' objects, or a requester could learn from their own trail or their
        clock that another clinic holds ``.../JohnDoe_1970/hiv_result.pdf``. An operator finds
        such probes afterwards from the rows themselves (docs/audit.md).
        """
        self._record(actor, action, "denied", path=path, status=404,
                     detail={"reason": NOT_FOUND_REASON,
                             **({"object_id": object_id} if object_id is not None else {})})
        return NotFound("no such object")

    def find(self, actor: Actor, raw_path: str, action: str) -> StoredObject:
        """The live object at ``raw_path`` in the actor's organisation, or :class:`NotFound`."""
        path = self._path(actor, raw_path, action)
        self._require_role(actor, READ_ROLES, action, path.path)
        with self.sessions() as s:
            obj = self._live(s, actor.org_id, path.path)
        if obj is None:
            raise self._not_found(actor, action, path=path.path)
        return obj

    def get_by_id(self, actor: Actor, object_id: str, action: str) -> StoredObject:
        """The live object with this id in the actor's organisation, or :class:`NotFound`."""
        self._require_role(actor, READ_ROLES, action, None)
        with self.sessions() as s:
            obj = s.scalar(select(StoredObject).where(
                StoredObject.id == object_id, StoredObject.org_id == actor.org_id,
                StoredObject.deleted_at.is_(None)))
        if obj is None:
            raise self._not_found(actor, action, object_id=object_id)
        return obj

    def writable_path(self, actor: Actor, raw_path: str, action: str, *,
                      doing: str | None = None) -> ObjectPath:
        """``raw_path`` normalised, once the actor may write there (refusals audited as
        ``action``; ``doing`` names what a refused role may not do, ``action`` by default)."""
        path = self._path(actor, raw_path, action)
        self._require_role(actor, WRITE_ROLES, doing or action, path.path)
        return path

    # -- list ------------------------------------------------------------------------------

    def list(self, actor: Actor, raw_prefix: str = "") -> list[StoredObject]:
        """The organisation's live objects under ``raw_prefix``, by path."""
        try:
            prefix = normalize_prefix(raw_prefix)
        except PathError as exc:
            self._record(actor, "denied", "denied", path=raw_prefix[:1024], status=400,
                         detail={"reason": str(exc), "attempted": "list"})
            raise
        self._require_role(actor, READ_ROLES, "list", prefix)
        with self.sessions() as s:
            stmt = select(StoredObject).where(StoredObject.org_id == actor.org_id,
                                              StoredObject.deleted_at.is_(None))
            if prefix:  # exact on every backend (SQLite's LIKE ignores ASCII case)
                stmt = stmt.where(prefix_condition(StoredObject.path, prefix))
            rows = list(s.scalars(stmt.order_by(StoredObject.path).limit(10_000)))
        self._record(actor, "list", "success", path=prefix or None, status=200,
                     detail={"count": len(rows)})
        return rows

    # -- upload ----------------------------------------------------------------------------

    def upload(
        self,
        actor: Actor,
        raw_path: str,
        body: Iterable[bytes],
        *,
        overwrite: bool = False,
        declared_size: int | None = None,
        via: str = "put",
        object_id: str | None = None,
    ) -> StoredObject:
        """Encrypt ``body`` into the bucket and catalog it.

        The body is read piece by piece; memory stays bounded whatever its size. On any
        failure the upload is aborted: no object, no catalog row, no open multipart upload.
        ``object_id`` is the new object's id when the caller fixed it beforehand (an upload
        link); a second upload with the same id is refused as a conflict.
        """
        path = self.writable_path(actor, raw_path, "upload")
        self._refuse_declared_size(actor, path, declared_size)
        target = self._upload_target(actor, path)
        self._refuse_existing(actor, target.existing, overwrite)

        object_id = object_id or new_id()
        storage_id = new_id()
        s3_key = f"{actor.org_id}/{path.category}/{storage_id}"
        self._record(actor, "upload", "started", path=path.path, status=None,
                     detail={"object_id": object_id, "via": via, "declared_size": declared_size})
        stored = self._store(actor, path, body, target, s3_key, storage_id, object_id)
        obj = self._catalog(actor, path, stored, target, object_id=object_id,
                            storage_id=storage_id, s3_key=s3_key, overwrite=overwrite)
        self._record(actor, "upload", "completed", obj=obj, status=201, nbytes=stored.size,
                     detail={"content_type": stored.content_type, "encryption": target.mode,
                             "key_version": obj.key_version, "via": via})
        return obj

    # -- the steps of an upload, for uploads that arrive in several requests ----------------

    def prepare_upload(self, actor: Actor, raw_path: str, *, declared_size: int | None,
                       overwrite: bool) -> tuple[ObjectPath, _Target]:
        """The checks :meth:`upload` makes before any byte (path, role, size, the object
        already there), each refusal audited: the path and where the upload goes."""
        path = self.writable_path(actor, raw_path, "upload")
        self._refuse_declared_size(actor, path, declared_size)
        target = self._upload_target(actor, path)
        self._refuse_existing(actor, target.existing, overwrite)
        return path, target

    def detect_type(self, actor: Actor, path: ObjectPath, head: bytes, *,
                    object_id: str) -> str:
        """The content type of a body starting with ``head``; :class:`UnsupportedType`
        (audited) when it is not accepted."""
        verdict = check_upload(bytes(head[:SNIFF_BYTES]), path.filename)
        if verdict.content_type is None:
            self._record(actor, "upload", "aborted", path=path.path, status=415, nbytes=0,
                         detail={"object_id": object_id, "reason": verdict.reason,
                                 "message": verdict.message})
            raise UnsupportedType(verdict.message)
        return verdict.content_type

    def finish_upload(self, actor: Actor, path: ObjectPath, *, size: int, sha256: str,
                      content_type: str, data_key: bytes | None, header: bytes | None,
                      object_id: str, storage_id: str, s3_key: str, overwrite: bool,
                      mode: str, key_version: int, via: str) -> StoredObject:
        """Catalog an object whose bytes are already in the bucket at ``s3_key`` (the last
        step of :meth:`upload`): the existing object is checked again, the data key wrapped
        under the current key version, the row added and the ``completed`` row recorded.
        On a refusal the stored bytes are deleted. ``mode`` and ``key_version`` are those
        the bytes were stored with (an SSE-C object's key version)."""
        target = replace(self._upload_target(actor, path), mode=mode, version=key_version)
        try:
            self._refuse_existing(actor, target.existing, overwrite)
        except GatewayError:
            self._discard(s3_key)
            raise
        salt = envelope.parse_header(header).salt if header is not None else None
        stored = _Stored(size=size, sha256=sha256, content_type=content_type,
                         data_key=data_key, salt=salt)
        obj = self._catalog(actor, path, stored, target, object_id=object_id,
                            storage_id=storage_id, s3_key=s3_key, overwrite=overwrite)
        self._record(actor, "upload", "completed", obj=obj, status=201, nbytes=size,
                     detail={"content_type": content_type, "encryption": target.mode,
                             "key_version": obj.key_version, "via": via})
        return obj

    def _too_large(self) -> TooLarge:
        return TooLarge(f"the file is larger than the limit of {self.max_upload_bytes} bytes")

    def _refuse_declared_size(self, actor: Actor, path: ObjectPath, declared: int | None) -> None:
        if declared is not None and declared > self.max_upload_bytes:
            self._record(actor, "upload", "denied", path=path.path, status=413,
                         detail={"reason": "declared size over the limit", "declared": declared})
            raise self._too_large()

    def _upload_target(self, actor: Actor, path: ObjectPath) -> _Target:
        with self.sessions() as s:
            org = s.get(Organisation, actor.org_id)
            existing = self._live(s, actor.org_id, path.path)
            mode = org.encryption_mode if org else EncryptionMode.CSE.value
            version = self.keyring.current_version(s, actor.org_id)
            ssec_key = self.keyring.ssec_key(s, actor.org_id, version) \
                if mode == EncryptionMode.SSEC.value else None
            s.commit()
        return _Target(mode=mode, version=version, ssec_key=ssec_key, existing=existing)

    def _refuse_existing(self, actor: Actor, existing: StoredObject | None, overwrite: bool) -> None:
        if existing is None:
            return
        if not overwrite:
            self._record(actor, "upload", "denied", obj=existing, status=409,
                         detail={"reason": "path exists"})
            raise Conflict("an object already exists at this path; add ?overwrite=true to replace it")
        if actor.role != Role.ADMIN.value and existing.created_by != actor.user_id:
            self._record(actor, "upload", "denied", obj=existing, status=403,
                         detail={"reason": "only the uploader or an admin may overwrite"})
            raise Forbidden("only the uploader or an admin may replace this object")

    def _store(self, actor: Actor, path: ObjectPath, body: Iterable[bytes], target: _Target,
               s3_key: str, storage_id: str, object_id: str) -> _Stored:
        """Sniff, encrypt and stream ``body`` into ``s3_key``; on any failure abort and audit."""
        received = 0
        writer: UploadWriter | None = None
        try:
            chunks = iter(body)
            head = self._sniff_head(chunks)
            verdict = check_upload(bytes(head[:SNIFF_BYTES]), path.filename)
            if verdict.content_type is None:
                raise UnsupportedType(verdict.message)
            content_type = verdict.content_type
            writer = self.store.writer(s3_key, sse_c=target.ssec_key)
            data_key = encryptor = None
            if target.mode != EncryptionMode.SSEC.value:
                data_key = envelope.new_data_key()
                encryptor = envelope.Encryptor(data_key, org_id=actor.org_id, object_id=storage_id)
                writer.write(encryptor.header)
            pieces = _rejoined(head, chunks)
            del head  # the body's first bytes are released once sent
            sha = OffloadedHash(hashlib.sha256())  # hashed beside the encryption
            for piece in self._limited(pieces):
                received += len(piece)
                sha.update(piece)
                writer.write(encryptor.update(piece) if encryptor else piece)
            if encryptor is not None:
                writer.write(encryptor.finalize())
            writer.close()
        except BaseException as exc:
            if writer is not None:
                writer.abort()
            status = exc.status if isinstance(exc, GatewayError) else 400
            self._record(actor, "upload", "aborted", path=path.path, status=status, nbytes=received,
                         detail={"object_id": object_id, "reason": str(exc)[:300] or type(exc).__name__})
            raise
        salt = envelope.parse_header(encryptor.header).salt if encryptor else None
        return _Stored(size=received, sha256=sha.hexdigest(), content_type=content_type,
                       data_key=data_key, salt=salt)

    def _sniff_head(self, chunks: Iterator[bytes]) -> bytearray:
        """The first :data:`SNIFF_BYTES` (or more) of the body, for the type check."""
        head = bytearray()
        for chunk in chunks:
            head += chunk
            if len(head) >= SNIFF_BYTES:
                break
        if len(head) > self.max_upload_bytes:
            raise self._too_large()
        return head

    def _limited(self, pieces: Iterable[bytes | bytearray]) -> Iterator[bytes | bytearray]:
        """``pieces`` (empty ones dropped), stopped with :class:`TooLarge` past the limit."""
        total = 0
        for piece in pieces:
            if not piece:
                continue
            total += len(piece)
            if total > self.max_upload_bytes:
                raise self._too_large()
            yield piece

    def _catalog(self, actor: Actor, path: ObjectPath, stored: _Stored, target: _Target, *,
                 object_id: str, storage_id: str, s3_key: str, overwrite: bool) -> StoredObject:
        """Wrap the data key and add the catalog row (replacing the old one on overwrite)."""
        try:
            with self.sessions() as s:
                version, wrapped = target.version, None
                if stored.data_key is not None:
                    version, wrapped = self.keyring.wrap_data_key(
                        s, actor.org_id, storage_id, stored.data_key)
                obj = StoredObject(
                    id=object_id, org_id=actor.org_id, path=path.path, category=path.category,
                    size=stored.size, content_type=stored.content_type, sha256=stored.sha256,
                    encryption=target.mode, key_version=version, wrapped_data_key=wrapped,
                    envelope_salt=stored.salt, storage_id=storage_id, s3_key=s3_key,
                    created_by=actor.user_id, created_at=utcnow(),
                    name_folded=folded_name(path.filename),
                )
                if overwrite:
                    old = self._live(s, actor.org_id, path.path)
                    if old is not None:  # kept as an earlier version of the path
                        old.deleted_at = utcnow()
                        old.deleted_by = actor.user_id
                        old.replaced_by = object_id
                        s.flush()
                s.add(obj)
                s.commit()
        except BaseException as exc:
            self._discard(s3_key)
            self._record(actor, "upload", "aborted", path=path.path, nbytes=stored.size,
                         status=409 if isinstance(exc, IntegrityError) else 503,
                         detail={"object_id": object_id, "reason": type(exc).__name__})
            if isinstance(exc, IntegrityError):
                raise Conflict("an object was stored at this path at the same time") from None
            raise
        return obj

    def _discard(self, s3_key: str) -> None:
        try:
            self.store.delete(s3_key)
        except Exception:  # noqa: BLE001  (best effort; reconcile reports leftovers)
            pass


    # -- download --------------------------------------------------------------------------

    def open(
        self,
        actor: Actor,
        obj: StoredObject,
        *,
        range_header: str | None = None,
        if_range: str | None = None,
        head: bool = False,
        download: bool = False,
        via: str | None = None,
    ) -> Download:
        """Prepare a GET/HEAD answer; keys are unwrapped and the first bytes authenticated first.

        The audit row is written here, before any byte flows; the body iterator writes the
        closing row with the bytes actually sent, or an integrity-failure row. Several ranges
        are answered ``206 multipart/byteranges``, each part read and authenticated like a
        single range.
        """
        etag = etag_of(obj)
        ranges = self._requested_range(actor, obj, range_header, if_range, etag)
        byte_range = ranges[0] if ranges and len(ranges) == 1 else None
        multi = ranges if ranges and len(ranges) > 1 else []
        action = "range_read" if ranges else ("download" if download else "view")
        status = 206 if ranges else 200
        length = byte_range.length if byte_range else obj.size
        content_type = None
        boundary = ""
        detail: dict = {"method": "HEAD" if head else "GET"}
        if via:
            detail["via"] = via
        if ranges:
            detail["range"] = ",".join(f"{r.start}-{r.end}" for r in ranges)
        if multi:
            boundary = downloads.boundary()
            content_type = f"multipart/byteranges; boundary={boundary}"
            length = downloads.multipart_length(boundary, obj.content_type, multi)

        sse_key, data_key = self._keys(actor, obj)
        if head:
            self._record(actor, action, "success", obj=obj, status=status, nbytes=0, detail=detail)
            return Download(obj, status, length, byte_range, None, etag, multi, content_type)

        if multi:
            def opener(o: StoredObject, dk: bytes | None, sk: bytes | None) -> Iterator[bytes]:
                openers = downloads.open_ranges(self.store, o, dk, sk, multi)
                return downloads.multipart(boundary, o.content_type, multi, openers)
        else:
            def opener(o: StoredObject, dk: bytes | None, sk: bytes | None) -> Iterator[bytes]:
                return plaintext(self.store, o, dk, sk, byte_range)
        # The bucket is asked while the opening row is written: the two overlap, and nothing
        # reaches the client before the row is on record (if it cannot be written, the bytes
        # fetched are dropped).
        early = downloads.OPENING.submit(opener, obj, data_key, sse_key)
        self._record(actor, action, "started", obj=obj, status=status, detail=detail)
        obj, body = self._first_bytes(actor, obj, action, detail, sse_key, data_key, opener,
                                      early)
        return Download(obj, status, length, byte_range,
                        self._audited(actor, obj, action, status, detail, body, length), etag,
                        multi, content_type)

    def _requested_range(self, actor: Actor, obj: StoredObject, range_header: str | None,
                         if_range: str | None, etag: str) -> list[ByteRange] | None:
        """The ranges to serve (``None``: the whole object); a 416 is audited."""
        try:
            if if_range_allows(if_range, etag, obj.created_at):
                return parse_ranges(range_header, obj.size)
            return None
        except RangeNotSatisfiable as exc:
            refused = isinstance(exc, RangeSetRefused)
            detail = {"range": (range_header or "")[:100]}
            if refused:
                detail["reason"] = exc.reason  # type: ignore[attr-defined]
            self._record(actor, "range_read", "denied" if refused else "failure", obj=obj,
                         status=416, detail=detail)
            raise BadRange(exc.message if refused else "the requested range is not satisfiable",
                           headers={"Content-Range": f"bytes */{obj.size}"}) from None

    def _first_bytes(self, actor: Actor, obj: StoredObject, action: str, detail: dict,
                     sse_key: bytes | None, data_key: bytes | None,
                     opener: Callable[[StoredObject, bytes | None, bytes | None], T],
                     early: Future[T] | None = None) -> tuple[StoredObject, T]:
        """Open the plaintext before any byte is sent: ``(object, opener's result)``;
        ``early`` is the first attempt, already under way.

        A rotation job may have moved the object to a new S3 key (and deleted the old one)
        since the row was read: the row is followed, up to :data:`MOVED_RETRIES` times. An
        object gone from the bucket while its row is live is an integrity failure (502).
        Failures are audited (``aborted``, or an integrity failure) and raised.
        """
        for attempt in range(MOVED_RETRIES + 1):
            try:
                if attempt == 0 and early is not None:
                    return obj, early.result()
                return obj, opener(obj, data_key, sse_key)
            except StorageNotFound:
                moved = self._moved(obj) if attempt < MOVED_RETRIES else None
                if moved is None:
                    self._integrity_failure(actor, obj, 0, "object missing from the bucket",
                                            missing=True)
                    raise envelope.DecryptionError(
                        f"object {obj.id} is missing from the bucket") from None
                obj = moved
                sse_key, data_key = self._keys(actor, obj)
            except envelope.DecryptionError:
                self._integrity_failure(actor, obj, 0, "object header or first segment failed "
                                        "authentication")
                raise
            except BaseException as exc:
                self._record(actor, action, "aborted", obj=obj, status=502, nbytes=0,
                             detail={**detail, "reason": type(exc).__name__})
                raise
        raise AssertionError("unreachable")  # the last attempt returns or raises

    def _keys(self, actor: Actor, obj: StoredObject) -> tuple[bytes | None, bytes | None]:
        """(SSE-C key, data key) of an object: one of them, the other ``None``."""
        try:
            with self.sessions() as s:
                if obj.encryption == EncryptionMode.SSEC.value:
                    return self.keyring.ssec_key(s, obj.org_id, obj.key_version), None
                return None, self.keyring.unwrap_data_key(
                    s, obj.org_id, obj.storage_id, obj.key_version, obj.wrapped_data_key)
        except envelope.DecryptionError:
            self._integrity_failure(actor, obj, 0, "wrapped data key failed authentication")
            raise

    def _moved(self, obj: StoredObject) -> StoredObject | None:
        """The object's row again, if it now names another S3 object with the same bytes."""
        with self.sessions() as s:
            row = s.get(StoredObject, obj.id)
        if (row is None or row.deleted_at is not None or row.s3_key == obj.s3_key
                or row.sha256 != obj.sha256 or row.size != obj.size):
            return None
        return row

    def _audited(self, actor: Actor, obj: StoredObject, action: str, status: int, detail: dict,
                 body: Iterator[bytes], expected: int) -> Iterator[bytes]:
        """Yield ``body`` (``expected`` bytes); record how the transfer ended.

        The closing row is written before the last bytes are released: if the audit log
        cannot take it, the response is cut short and the client never holds a complete copy
        whose delivery is not on record. Decryption (and an SSE-C object's hashing) run in a
        thread a few segments ahead of the writes to the client
        (:func:`~gateway.storage.streams.read_ahead`), so the two overlap.
        """
        sent = 0
        closed = False  # the closing row was written (or attempted: never twice)

        def close(outcome: str, reason: str = "", nbytes: int | None = None) -> None:
            nonlocal closed
            closed = True
            self._record(actor, action, outcome, obj=obj, status=status,
                         nbytes=sent if nbytes is None else nbytes,
                         detail={**detail, **({"reason": reason} if reason else {})})

        # The first chunk is ready (the stream was opened and authenticated beforehand): it goes
        # out from this thread at once, the read-ahead thread starts with the second.
        body = iter(body)
        rest = read_ahead(body, DOWNLOAD_AHEAD)
        try:
            for chunk in itertools.chain(itertools.islice(body, 1), rest):
                if sent + len(chunk) >= expected:
                    close("completed", nbytes=sent + len(chunk))
                sent += len(chunk)
                yield chunk
            if not closed:
                close("completed")
        except envelope.DecryptionError:
            closed = True
            self._integrity_failure(actor, obj, sent, "segment or checksum failed authentication")
            raise
        except StorageNotFound:
            closed = True
            self._integrity_failure(actor, obj, sent, "object missing from the bucket",
                                    missing=True)
            raise
        except GeneratorExit:
            if not closed:
                close("aborted", "client went away")
            raise
        except BaseException as exc:
            if not closed:
                close("aborted", type(exc).__name__)
            raise
        finally:
            rest.close()  # type: ignore[attr-defined]

    def _integrity_failure(self, actor: Actor, obj: StoredObject, sent: int, reason: str, *,
                           missing: bool = False) -> None:
        detail = {"reason": reason, "s3_key": obj.s3_key}
        if missing:
            detail["missing"] = True
        self._record(actor, "integrity_failure", "integrity_failure", obj=obj, status=502,
                     nbytes=sent, detail=detail)

    # -- delete ----------------------------------------------------------------------------

    def delete(self, actor: Actor, raw_path: str) -> StoredObject:
        """Mark an object deleted (recoverable until purged); admin or its uploader."""
        path = self._path(actor, raw_path, "delete")
        self._require_role(actor, WRITE_ROLES, "delete", path.path)
        with self.sessions() as s:
            obj = self._live(s, actor.org_id, path.path)
        if obj is None:
            raise self._not_found(actor, "delete", path=path.path)
        if actor.role != Role.ADMIN.value and obj.created_by != actor.user_id:
            self._record(actor, "delete", "denied", obj=obj, status=403,
                         detail={"reason": "only the uploader or an admin may delete"})
            raise Forbidden("only the uploader or an admin may delete this object")
        self._record(actor, "delete", "success", obj=obj, status=204)
        with self.sessions() as s:
            row = s.get(StoredObject, obj.id)
            if row is not None and row.deleted_at is None:
                row.deleted_at = utcnow()
                row.deleted_by = actor.user_id
                s.commit()
        return obj

    def restore(self, actor: Actor, object_id: str) -> StoredObject:
        """Undo a delete, unless another object now lives at the path."""
        with self.sessions() as s:
            obj = s.get(StoredObject, object_id)
            if obj is None or obj.org_id != actor.org_id or obj.deleted_at is None:
                raise NotFound("no deleted object with this id")
            if self._live(s, obj.org_id, obj.path) is not None:
                raise Conflict("another object now lives at this path")
        self._record(actor, "restore", "success", obj=obj)
        with self.sessions() as s:
            row = s.get(StoredObject, object_id)
            row.deleted_at = None
            row.deleted_by = None
            s.commit()
            return row

    def purge(self, actor: Actor, *, older_than: datetime) -> int:
        """Remove deleted objects for good (bucket, then catalog); returns how many."""
        count = 0
        with self.sessions() as s:
            stmt = select(StoredObject).where(StoredObject.deleted_at.is_not(None),
                                              StoredObject.deleted_at <= older_than)
            if actor.org_id is not None:
                stmt = stmt.where(StoredObject.org_id == actor.org_id)
            doomed = list(s.scalars(stmt))
        for obj in doomed:
            self._record(Actor(**{**actor.__dict__, "org_id": obj.org_id}), "purge", "success",
                         obj=obj)
            self._discard(obj.s3_key)
            with self.sessions() as s:
                row = s.get(StoredObject, obj.id)
                if row is not None:
                    s.delete(row)
                    s.commit()
            count += 1
        return count
