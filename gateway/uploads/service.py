"""Resumable uploads: an object that arrives over several requests, encrypted as it comes.

How the bytes map onto the bucket (``docs/uploads.md`` has the whole picture):

- The object is one S3 multipart upload at its final key. Each part holds whole sealed
  segments of the envelope (:data:`SEGMENTS_PER_PART` of them, the first part also the
  header), so that a part boundary is a segment boundary and a checkpoint needs nothing
  but the database row.
- After each part is stored, the row records it with the new offset and the SHA-256 state
  of the plaintext so far (sealed): that offset is acknowledged, whatever happens next.
- When a request ends (the client finished its PATCH, or went away), the plaintext after
  the last part, less than a part, is sealed under a key derived from the upload's data key
  (:mod:`gateway.crypto.interim`) and kept as one small interim object beside the final key;
  the next request opens it and carries on.
- The object enters the catalog only when its last byte is stored: until then it is listed
  nowhere and served to nobody.

Each segment index is sealed once: a part that was sent but not acknowledged (a crash in
between) is sent again only with the same bytes, checked by a fingerprint of the
authentication tags it produced (the same bytes sealed again give the same tags, other bytes
other tags), so no nonce is ever used for two different plaintexts.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..crypto import envelope, interim
from ..db.models import EncryptionMode, ResumableUpload, StoredObject, new_id, utcnow
from ..errors import GatewayError
from ..files import SNIFF_BYTES, ObjectService, TooLarge, normalize_path
from ..files.downloads import plaintext
from ..principal import Actor
from ..storage import MIN_PART_SIZE, ResumableMultipart, StorageError, StorageNotFound
from . import protocol
from .digest import ResumableSha256
from .errors import (
    BadUploadRequest,
    ChecksumMismatch,
    OffsetMismatch,
    UploadExpired,
    UploadLocked,
    UploadNotFound,
)

SEGMENT = envelope.DEFAULT_SEGMENT_SIZE
#: whole segments per multipart part (the plaintext of a part: 6 MiB)
SEGMENTS_PER_PART = 6
#: a PATCH that carries an ``Upload-Checksum`` is held until its checksum is verified
CHECKSUM_PATCH_LIMIT = 16 * 1024 * 1024
#: parts in flight to S3 at once, per request
PARTS_IN_FLIGHT = 2

ACTIVE, COMPLETED, TERMINATED, EXPIRED = "active", "completed", "terminated", "expired"


@dataclass(frozen=True)
class UploadState:
    """What ``HEAD`` answers, and what a ``PATCH`` or a creation leads to."""

    id: str
    offset: int
    length: int
    expires_at: datetime
    path: str
    object: StoredObject | None = None  # set once the last byte is stored


def _state(row: ResumableUpload, obj: StoredObject | None = None) -> UploadState:
    return UploadState(id=row.id, offset=row.offset, length=row.length,
                       expires_at=row.expires_at, path=row.path, object=obj)


@dataclass
class _Part:
    future: Future[dict[str, Any]]
    end: int  # plaintext offset after this part
    digest: bytes | None  # the SHA-256 state at ``end``


class _Run:
    """One request's work on one upload, while it holds the upload's lock."""

    def __init__(self, service: ResumableUploads, actor: Actor, row: ResumableUpload,
                 token: str) -> None:
        self.service = service
        self.actor = actor
        self.row = row
        self.token = token
        objects = service.objects
        self.store = objects.store
        with objects.sessions() as s:
            self.data_key = objects.keyring.unwrap_data_key(
                s, row.org_id, row.storage_id, row.key_version, row.wrapped_data_key)
            self.ssec_key = (objects.keyring.ssec_key(s, row.org_id, row.key_version)
                             if row.encryption == EncryptionMode.SSEC.value else None)
        self.key = interim.interim_key(self.data_key, row.id)
        self.parts: list[dict[str, Any]] = json.loads(row.parts)
        self.sealed: dict[str, str] = json.loads(row.sealed)
        self.multipart = ResumableMultipart(self.store, row.s3_key, sse_c=self.ssec_key,
                                            upload_id=row.multipart_id)
        self.pending = bytearray(self._tail())
        self.base = row.offset - len(self.pending)  # plaintext offset where ``pending`` starts
        self.sha = self._digest()
        self.encryptor = None
        if row.encryption != EncryptionMode.SSEC.value:
            self.encryptor = envelope.Encryptor.resume(
                self.data_key, row.envelope_header, org_id=row.org_id,
                object_id=row.storage_id, segment_index=self.base // SEGMENT)
        self.inflight: deque[_Part] = deque()
        self.content_type = row.content_type
        self.renewed = time.monotonic()
        self.released = False

    # -- the state kept between requests -------------------------------------------------

    @property
    def interim_key(self) -> str:
        return self.row.s3_key + ".interim"

    def _tail(self) -> bytes:
        row = self.row
        if not row.interim_size:
            return b""
        blob = self.store.get_bytes(self.interim_key, sse_c=None)
        base = row.offset - row.interim_size
        tail = interim.unseal(self.key, interim.TAIL, base, blob)
        if len(tail) < row.interim_size:
            raise envelope.DecryptionError("interim upload data failed authentication")
        return tail[:row.interim_size]

    def _digest(self) -> ResumableSha256 | None:
        """The SHA-256 of the plaintext before ``pending`` (``None``: its state was lost, so
        the digest is computed from the stored object at the end)."""
        if self.base == 0:
            return ResumableSha256()
        if self.row.digest_state is None:
            return None
        state = interim.unseal(self.key, interim.DIGEST, self.base, self.row.digest_state)
        try:
            return ResumableSha256(state)
        except ValueError:
            return None

    def _sealed_digest(self, end: int, sha: ResumableSha256 | None) -> bytes | None:
        state = sha.state() if sha is not None else None
        return interim.seal(self.key, interim.DIGEST, end, state) if state is not None else None

    def _save(self, *, release: bool = False, **values: Any) -> None:
        """Update the row, as long as this request still holds the lock (and let the lock go
        with the same write when ``release``)."""
        values["updated_at"] = utcnow()
        if release:
            values.update(lock_token=None, locked_until=None)
        else:
            values["locked_until"] = utcnow() + timedelta(seconds=self.service.lock_seconds)
        with self.service.objects.sessions() as s:
            result = s.execute(update(ResumableUpload).where(
                ResumableUpload.id == self.row.id,
                ResumableUpload.lock_token == self.token).values(**values))
            s.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise UploadLocked("another request took over this upload; ask where it stands")
        self.renewed = time.monotonic()
        self.released = release

    # -- receiving -------------------------------------------------------------------------

    def take(self, chunk: bytes) -> None:
        """Add ``chunk``; send every whole part it completes."""
        self.pending += chunk
        if self.content_type is None:
            self._sniff(final=False)
        if self.content_type is not None:
            part = SEGMENTS_PER_PART * SEGMENT
            # the part holding the last byte waits for finish(), which seals it as the last
            while len(self.pending) >= part and self.base + part < self.row.length:
                self._cut(SEGMENTS_PER_PART)
        self._collect(wait=False)
        if time.monotonic() - self.renewed > self.service.lock_seconds / 3:
            self._save()

    def _sniff(self, *, final: bool) -> None:
        if self.base == 0 and (final or len(self.pending) >= SNIFF_BYTES):
            path = normalize_path(self.row.path)
            self.content_type = self.service.objects.detect_type(
                self.actor, path, bytes(self.pending[:SNIFF_BYTES]), object_id=self.row.object_id)
            self._save(content_type=self.content_type)

    def _cut(self, segments: int, *, last: bool = False) -> None:
        """Seal the first ``segments`` segments of ``pending`` (all of it when ``last``) and
        send them as the next part."""
        size = len(self.pending) if last else segments * SEGMENT
        plain = memoryview(self.pending)[:size]
        if self.encryptor is not None:
            # the part is built in one buffer (a segment at a time), never as a list joined
            data = bytearray(self.encryptor.header if self.base == 0 else b"")
            tags = hashlib.sha256()
            pos = 0
            while True:
                end = min(pos + SEGMENT, size)
                segment = self.encryptor.seal_segment(plain[pos:end], last=last and end == size)
                tags.update(segment[-envelope.TAG_SIZE:])
                data += segment
                del segment
                pos = end
                if pos >= size:
                    break
            fingerprint = tags.hexdigest()[:32]
        else:
            data = bytearray(plain)
            fingerprint = hashlib.sha256(data).hexdigest()[:32]
        if self.sha is not None:
            self.sha.update(plain)
        del plain
        number = len(self.parts) + len(self.inflight) + 1
        previous = self.sealed.get(str(number))
        if previous is not None and previous != fingerprint:
            raise self.service._changed(self.actor, self.row)
        if previous is None:
            self.sealed[str(number)] = fingerprint
            self._save(sealed=json.dumps(self.sealed), multipart_id=self.multipart.start())
        end = self.base + size
        self.inflight.append(_Part(self.multipart.send(number, data), end,
                                   self._sealed_digest(end, self.sha)))
        del self.pending[:size]
        self.base = end
        while len(self.inflight) > PARTS_IN_FLIGHT:
            self._collect(wait=True, one=True)

    def _collect(self, *, wait: bool, one: bool = False, save: bool = True) -> None:
        """Record the parts S3 has stored, oldest first: each one moves the offset on (or,
        without ``save``, only once the caller writes the row)."""
        while self.inflight and (wait or self.inflight[0].future.done()):
            part = self.inflight.popleft()
            self.parts.append(part.future.result())
            if save:
                self._save(parts=json.dumps(self.parts), offset=part.end, interim_size=0,
                           digest_state=part.digest)
                self.row.offset = part.end
            if one:
                return

    # -- ending the request ----------------------------------------------------------------

    def keep(self) -> int:
        """The request ended before the upload did: store what is left, return the offset.

        The parts still in flight, the last whole segments and the tail are all stored
        first; then one write records them and lets the lock go."""
        self._collect(wait=True, save=False)
        whole = len(self.pending) // SEGMENT
        if self.content_type is not None and whole * SEGMENT >= MIN_PART_SIZE:
            self._cut(whole)
            self._collect(wait=True, save=False)
        offset = self.base + len(self.pending)
        if self.pending:
            blob = interim.seal(self.key, interim.TAIL, self.base, self.pending)
            self.store.put_bytes(self.interim_key, blob)
        elif self.row.interim_size:
            self._drop_interim()
        self._save(release=True, parts=json.dumps(self.parts), offset=offset,
                   interim_size=len(self.pending),
                   digest_state=self._sealed_digest(self.base, self.sha))
        self.row.offset = offset
        return offset

    def finish(self) -> StoredObject:
        """The last byte is here: store the last part, join the parts, catalog the object."""
        self._collect(wait=True, save=False)
        if self.content_type is None:
            self._sniff(final=True)
        assert self.content_type is not None
        self._cut(0, last=True)
        self._collect(wait=True, save=False)
        self.multipart.complete(self.parts)
        sha256 = self.sha.hexdigest() if self.sha is not None else self._read_back()
        row = self.row
        try:
            obj = self.service.objects.finish_upload(
                self.actor, normalize_path(row.path), size=row.length, sha256=sha256,
                content_type=self.content_type,
                data_key=self.data_key if self.encryptor is not None else None,
                header=row.envelope_header, object_id=row.object_id,
                storage_id=row.storage_id, s3_key=row.s3_key, overwrite=row.overwrite,
                mode=row.encryption, key_version=row.key_version, via="tus")
        except GatewayError:
            # refused at the last step (the path was taken meanwhile): the stored object
            # is deleted, and so is everything else of the upload
            row.multipart_id = None
            self.service._discard(row)
            raise
        if row.interim_size:
            self._drop_interim()
        self._save(release=True, status=COMPLETED, parts=json.dumps(self.parts),
                   offset=row.length, interim_size=0, digest_state=None, multipart_id=None)
        self.row.offset = row.length
        return obj

    def _read_back(self) -> str:
        """The plaintext SHA-256 from the stored object (when the hash state was lost)."""
        row = self.row
        obj = StoredObject(id=row.object_id, org_id=row.org_id, path=row.path, size=row.length,
                           storage_id=row.storage_id, s3_key=row.s3_key, sha256="")
        data_key = self.data_key if self.encryptor is not None else None
        sha = hashlib.sha256()
        for chunk in plaintext(self.store, obj, data_key, self.ssec_key, None):
            sha.update(chunk)
        return sha.hexdigest()

    def _drop_interim(self) -> None:
        try:
            self.store.delete(self.interim_key)
        except StorageNotFound:
            pass

    def abandon(self) -> None:
        """The request failed: let the parts in flight finish (their bytes are fingerprinted)
        without moving the offset."""
        for part in self.inflight:
            try:
                part.future.result()
            except BaseException:  # noqa: BLE001  (already failing)
                pass
        self.inflight.clear()


class ResumableUploads:
    """Create, continue, inspect, terminate and expire the tus uploads of an organisation.

    :param objects: the object service (its path rules, roles, type check and catalog).
    :param expires_seconds: how long an unfinished upload lives.
    :param lock_seconds: how long a request's hold on an upload lasts without news from it.
    """

    def __init__(self, *, objects: ObjectService, expires_seconds: int,
                 lock_seconds: int = 60) -> None:
        self.objects = objects
        self.expires_seconds = expires_seconds
        self.lock_seconds = lock_seconds

    @property
    def max_size(self) -> int:
        return self.objects.max_upload_bytes

    def _record(self, actor: Actor, action: str, outcome: str, row: ResumableUpload | None, *,
                status: int | None = None, nbytes: int | None = None, **detail: Any) -> None:
        if row is not None:
            detail = {"upload_id": row.id, "object_id": row.object_id, **detail}
        self.objects.audit.record(
            action=action, outcome=outcome, actor=actor, object_id=None,
            object_path=row.path if row is not None else None, http_status=status,
            nbytes=nbytes, detail=detail)

    # -- create ----------------------------------------------------------------------------

    def create(self, actor: Actor, *, length: int, metadata: dict[str, str]) -> UploadState:
        """A new upload of ``length`` bytes at the path ``metadata`` names (refusals audited
        as for ``PUT``: bad path, role, 413 from the length, 409 for a taken path)."""
        try:
            raw = protocol.target_path(metadata)
        except BadUploadRequest as exc:
            self._record(actor, "upload_create", "denied", None, status=400, reason=str(exc))
            raise
        overwrite = protocol.flag(metadata, "overwrite")
        path, target = self.objects.prepare_upload(actor, raw, declared_size=length,
                                                   overwrite=overwrite)
        upload_id, object_id, storage_id = new_id(), new_id(), new_id()
        data_key = envelope.new_data_key()
        header = None
        if target.mode != EncryptionMode.SSEC.value:
            header = envelope.Encryptor(data_key, org_id=actor.org_id,
                                        object_id=storage_id).header
        now = utcnow()
        with self.objects.sessions() as s:
            # The data key seals the interim state (and, client-side, the object). An SSE-C
            # object keeps this version, whose customer key stores its parts; a client-side
            # encrypted object's data key is wrapped again, under the then current version,
            # when the upload finishes.
            version, wrapped = self.objects.keyring.wrap_data_key(
                s, actor.org_id, storage_id, data_key)
            row = ResumableUpload(
                id=upload_id, org_id=actor.org_id, created_by=actor.user_id, path=path.path,
                category=path.category, overwrite=overwrite, length=length, offset=0,
                object_id=object_id, storage_id=storage_id,
                s3_key=f"{actor.org_id}/{path.category}/{storage_id}",
                encryption=target.mode, key_version=version, wrapped_data_key=wrapped,
                envelope_header=header, parts="[]", sealed="{}", interim_size=0,
                status=ACTIVE, created_at=now, updated_at=now,
                expires_at=now + timedelta(seconds=self.expires_seconds))
            s.add(row)
            s.commit()
            s.refresh(row)
            s.expunge(row)
        self._record(actor, "upload_create", "success", row, status=201, length=length,
                     expires_at=row.expires_at.isoformat())
        return _state(row)

    # -- look up ---------------------------------------------------------------------------

    def _owned(self, actor: Actor, upload_id: str, action: str) -> ResumableUpload:
        """The actor's own upload; any other (missing, another user's, another
        organisation's) answers the same 404 with the same audit row."""
        with self.objects.sessions() as s:
            row = s.get(ResumableUpload, upload_id[:64])
            if row is not None:
                s.expunge(row)
        if (row is None or row.org_id != actor.org_id or row.created_by != actor.user_id
                or row.status == TERMINATED):
            self._record(actor, action, "denied", None, status=404, reason="no such upload")
            raise UploadNotFound("no such upload")
        return row

    def _refuse_expired(self, actor: Actor, row: ResumableUpload, action: str) -> None:
        if row.status == EXPIRED or (row.status == ACTIVE and row.expires_at <= utcnow()):
            self._record(actor, action, "denied", row, status=410, reason="expired")
            raise UploadExpired("this upload expired before it was finished; start it again")

    def status(self, actor: Actor, upload_id: str) -> UploadState:
        """Where the upload stands (``HEAD``)."""
        row = self._owned(actor, upload_id, "upload_patch")
        self._refuse_expired(actor, row, "upload_patch")
        return _state(row)

    # -- append ----------------------------------------------------------------------------

    def _lock(self, actor: Actor, row: ResumableUpload, offset: int) -> str:
        token = new_id()
        now = utcnow()
        with self.objects.sessions() as s:
            result = s.execute(update(ResumableUpload).where(
                ResumableUpload.id == row.id, ResumableUpload.status == ACTIVE,
                ResumableUpload.offset == offset,
                or_(ResumableUpload.lock_token.is_(None), ResumableUpload.locked_until < now),
            ).values(lock_token=token, locked_until=now + timedelta(seconds=self.lock_seconds)))
            s.commit()
            if result.rowcount == 1:  # type: ignore[attr-defined]
                fresh = s.get(ResumableUpload, row.id)
                assert fresh is not None
                s.expunge(fresh)
                row.__dict__.update({k: v for k, v in fresh.__dict__.items()
                                     if not k.startswith("_")})
                return token
            fresh = s.get(ResumableUpload, row.id)
        if fresh is not None and fresh.offset != offset:
            self._mismatch(actor, row, offset, fresh.offset)
        self._record(actor, "upload_patch", "denied", row, status=423,
                     reason="another request is adding to this upload")
        raise UploadLocked("another request is adding to this upload; try again in a moment")

    def _unlock(self, upload_id: str, token: str) -> None:
        with self.objects.sessions() as s:
            s.execute(update(ResumableUpload).where(
                ResumableUpload.id == upload_id, ResumableUpload.lock_token == token,
            ).values(lock_token=None, locked_until=None))
            s.commit()

    def _mismatch(self, actor: Actor, row: ResumableUpload, sent: int, actual: int) -> None:
        self._record(actor, "upload_patch", "denied", row, status=409, reason="offset mismatch",
                     sent=sent, offset=actual)
        raise OffsetMismatch(f"the upload stands at byte {actual}, not {sent}; "
                             "ask with HEAD and continue from there")

    def _changed(self, actor: Actor, row: ResumableUpload) -> GatewayError:
        self._record(actor, "upload_patch", "denied", row, status=409,
                     reason="bytes differ from those sent before at this offset")
        self._discard(row)
        return OffsetMismatch("the file changed while it was being uploaded; upload it again")

    def patch(self, actor: Actor, upload_id: str, *, offset: int, body: Iterable[bytes],
              checksum: protocol.Checksum | None = None) -> UploadState:
        """Append ``body`` at ``offset``. The new offset counts only bytes stored in the
        bucket; if the body stops early (the client went away), what came is kept."""
        row = self._owned(actor, upload_id, "upload_patch")
        self._refuse_expired(actor, row, "upload_patch")
        if row.status == COMPLETED:
            if offset == row.length:
                return _state(row)
            self._mismatch(actor, row, offset, row.length)
        if row.offset != offset:
            self._mismatch(actor, row, offset, row.offset)
        token = self._lock(actor, row, offset)
        released = False
        try:
            state, released = self._append(actor, row, token, body, checksum)
            return state
        finally:
            if not released:
                self._unlock(row.id, token)

    def _append(self, actor: Actor, row: ResumableUpload, token: str, body: Iterable[bytes],
                checksum: protocol.Checksum | None) -> tuple[UploadState, bool]:
        """Append; ``(state, whether the lock was let go already)``. A ``started`` row before
        the first byte is taken (so a gateway that dies mid-PATCH leaves a trace), then
        ``completed`` with the from and to offsets once the bytes are stored, or ``aborted``."""
        start = row.offset
        self._record(actor, "upload_patch", "started", row, status=None, offset=start)
        run: _Run | None = None
        received = 0
        try:
            run = _Run(self, actor, row, token)
            held = bytearray() if checksum is not None else None
            verify = checksum.hasher() if checksum is not None else None
            for chunk in body:
                if not chunk:
                    continue
                if start + received + len(chunk) > row.length:
                    raise BadUploadRequest("the body goes past the upload's Upload-Length")
                received += len(chunk)
                if held is not None and verify is not None:
                    if received > CHECKSUM_PATCH_LIMIT:
                        raise TooLarge(
                            "a PATCH with Upload-Checksum may carry at most "
                            f"{CHECKSUM_PATCH_LIMIT // (1024 * 1024)} MiB; send smaller chunks")
                    verify.update(chunk)
                    held += chunk
                else:
                    run.take(chunk)
            if checksum is not None and verify is not None and held is not None:
                if verify.digest() != checksum.digest:
                    raise ChecksumMismatch(
                        "the bytes received do not match Upload-Checksum; none were kept")
                run.take(bytes(held))
                del held
            obj = None
            if start + received == row.length:
                obj = run.finish()
                new_offset = row.length
            else:
                new_offset = run.keep()
        except BaseException as exc:
            if run is not None:
                run.abandon()
            status = exc.status if isinstance(exc, GatewayError) else 400
            self._record(actor, "upload_patch", "aborted", row, status=status, nbytes=received,
                         offset=start, reason=str(exc)[:300] or type(exc).__name__)
            if isinstance(exc, GatewayError) and exc.status == 415:
                self._discard(row)
            raise
        self._record(actor, "upload_patch", "completed", row, status=204, nbytes=received,
                     **{"from": start, "to": new_offset})
        state = UploadState(id=row.id, offset=new_offset, length=row.length,
                            expires_at=row.expires_at, path=row.path, object=obj)
        return state, run.released

    # -- terminate and expire --------------------------------------------------------------

    def terminate(self, actor: Actor, upload_id: str) -> None:
        """Abandon an upload: its parts, its interim object and its state are gone."""
        row = self._owned(actor, upload_id, "upload_terminate")
        if row.status == ACTIVE:
            now = utcnow()
            with self.objects.sessions() as s:
                busy = s.scalar(select(ResumableUpload.id).where(
                    ResumableUpload.id == row.id, ResumableUpload.lock_token.is_not(None),
                    ResumableUpload.locked_until >= now))
            if busy:
                self._record(actor, "upload_terminate", "denied", row, status=423,
                             reason="another request is adding to this upload")
                raise UploadLocked("this upload is busy; try again in a moment")
        self._discard(row, status=TERMINATED)
        self._record(actor, "upload_terminate", "success", row, status=204, offset=row.offset)

    def _discard(self, row: ResumableUpload, *, status: str = TERMINATED) -> None:
        """Abort the multipart upload, delete the interim object, close the row."""
        if row.multipart_id:
            ResumableMultipart(self.objects.store, row.s3_key, sse_c=None,
                               upload_id=row.multipart_id).abort()
        for key in (row.s3_key + ".interim",):
            try:
                self.objects.store.delete(key)
            except StorageError:
                pass
        with self.objects.sessions() as s:
            s.execute(update(ResumableUpload).where(ResumableUpload.id == row.id).values(
                status=status, multipart_id=None, interim_size=0, digest_state=None,
                lock_token=None, locked_until=None, updated_at=utcnow()))
            s.commit()

    def expired(self, session: Session, now: datetime | None = None) -> list[ResumableUpload]:
        """Unfinished uploads past their expiry (and not held by a request)."""
        now = now or utcnow()
        return list(session.scalars(select(ResumableUpload).where(
            ResumableUpload.status == ACTIVE, ResumableUpload.expires_at <= now,
            or_(ResumableUpload.lock_token.is_(None), ResumableUpload.locked_until < now),
        ).order_by(ResumableUpload.expires_at)))

    def expire(self, actor: Actor, row: ResumableUpload) -> None:
        """Expire one upload: nothing stored for it is left (audited in its organisation)."""
        self._discard(row, status=EXPIRED)
        self.objects.audit.record(
            action="upload_expire", outcome="success", actor=actor, org_id=row.org_id,
            object_path=row.path, detail={"upload_id": row.id, "object_id": row.object_id,
                                          "offset": row.offset, "length": row.length})

    def open_keys(self, session: Session) -> tuple[set[str], set[str]]:
        """The S3 keys and multipart upload ids that unfinished uploads still own."""
        keys: set[str] = set()
        uploads: set[str] = set()
        for s3_key, multipart_id in session.execute(select(
                ResumableUpload.s3_key, ResumableUpload.multipart_id).where(
                ResumableUpload.status == ACTIVE)):
            keys.add(s3_key + ".interim")
            if multipart_id:
                uploads.add(multipart_id)
        return keys, uploads
