"""Key rotation jobs: rewrap, re-encrypt, and SSE-C → client-side migration.

Three jobs move an organisation's objects from one key to another. Each is **resumable**,
**idempotent** and **safe alongside traffic**: at every moment each catalog row points at an S3
object that its own key fields decrypt, so uploads and downloads continue while a job runs.

``rewrap``
    Moves every object onto its organisation's current key version. For a client-side
    (``cse``) object only the wrapped data key changes: it is unwrapped under the old version
    and wrapped under the current one, and the row is updated with a guarded ``UPDATE ...
    WHERE id = ? AND key_version = <old>``. No object data is read or written, so the rate does
    not depend on object size. A reader that fetched the row just before keeps working: the old
    version stays ``active`` until it is retired, which :meth:`~gateway.keys.keyring.Keyring.
    retire_version` refuses while any row uses it. An ``ssec`` object is *re-keyed*: a
    server-side copy to a new S3 key (copy-source key = old version's SSE-C key, destination key =
    current version's), the row switched to the new S3 key, then the old S3 object deleted.
    Where the backend does not implement SSE-C copies (Ceph RGW 16 answers ``501``), the object is
    streamed instead: GET with the old key, PUT with the new one, the plaintext SHA-256 checked
    against the catalog on the way.
``reencrypt``
    For a suspected leak of data keys: every ``cse`` object of the organisation gets a fresh
    data key and a fresh storage id; the old object is decrypted, re-encrypted and uploaded to a
    new S3 key while the plaintext SHA-256 is checked against the catalog (a mismatch aborts that
    object before its last segment is written and is recorded as an integrity failure), then the
    row is switched and the old S3 object deleted.
``migrate_ssec``
    Sets the organisation's encryption mode to ``cse`` (new uploads are client-side at once),
    then moves each ``ssec`` object to client-side encryption the same way.

**Progress** lives in the ``jobs`` table: kind, organisation, ``params`` (JSON), state
(``running`` / ``done`` / ``failed``), ``cursor`` (the last object id handled, objects being
taken in id order), counts and bytes. Running a job of the same kind, organisation and
parameters again continues the unfinished one from its cursor. Each object is handled in its
own short transaction (its row change and the job's progress commit together), so a ``SIGKILL``
at any point loses at most the object in flight, which is simply done again.

Objects that move to a new S3 key (re-key, re-encrypt, migrate) follow one protocol:

1. record in the job row which object is in flight, its old S3 key and its new one (a fresh
   random storage id, never derived from anything);
2. write the new S3 object (never the old one: the row must always point at a readable
   object);
3. in one transaction: switch the row with a guarded update (``WHERE id = ? AND s3_key =
   <old>``) and advance the job's cursor;
4. delete the old S3 object.

A run that was killed between 1 and 4 is tidied at the next start: whichever of the two keys
the row does not point at (and no other row does) is deleted. If the row changed under the
job (a concurrent purge, another job), the new object is deleted and the object skipped.

The job row's ``params`` holds the job's parameters and, under keys starting with ``_``, its
private state (``_inflight`` as above, ``_owner``: host and process running it). A job whose
owner process is still alive on this host, or that another host updated in the last
:data:`STALE_SECONDS`, is not taken over: :class:`JobBusy`.

Every run is audited (``key_rewrap`` / ``key_reencrypt`` / ``key_migrate_ssec``): ``started``,
then ``completed`` (or ``failure`` when objects failed, ``aborted`` when interrupted), and one
``failure`` (or ``integrity_failure``) row per object that failed, in the object's organisation
chain. ``dry_run`` counts what a run would touch and changes nothing (no job, no audit row).

This module knows neither Flask nor click; the ``gateway keys`` commands live in
:mod:`gateway.cli.rotation`.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import aliased

from ..crypto import envelope
from ..db.models import (
    EncryptionMode,
    Job,
    KeyState,
    Organisation,
    OrgKeyVersion,
    StoredObject,
)
from ..principal import Actor
from ..storage import StorageError, ssec_params
from .jobs import (
    BATCH,
    MIGRATE_SSEC,
    OBJECT_COLUMNS,
    REENCRYPT,
    REWRAP,
    JobBusy,
    JobObject,
    JobResult,
    JobRun,
    JobServices,
    ObjectFailed,
    Progress,
    ProgressCallback,
    RotationError,
    count_and_bytes,
    count_only,
    guarded,
    is_not_implemented,
    job_object,
    run_job,
)

__all__ = [
    "COPY_LIMIT",
    "COPY_PART_SIZE",
    "JobBusy",
    "JobResult",
    "Progress",
    "RotationError",
    "migrate_ssec",
    "reencrypt",
    "rewrap",
    "rotate_org",
]

_OBJECTS = StoredObject.__table__

#: Largest object a single CopyObject may copy (S3's limit); larger ones use UploadPartCopy.
COPY_LIMIT = 5 * 1024**3
#: Part size of a multipart (UploadPartCopy) copy.
COPY_PART_SIZE = 512 * 1024**2


# --------------------------------------------------------------------------------------------
# Selection of the objects each job handles


def _rewrap_query(org_id: str | None, columns: Callable[[Any], tuple[Any, ...]]) -> Any:
    """Objects whose key version is not their organisation's current one.

    :param columns: ``(current) -> columns``, ``current`` being the aliased current version.
    """
    current = aliased(OrgKeyVersion)
    stmt = select(*columns(current)).select_from(StoredObject).join(
        current,
        and_(current.org_id == StoredObject.org_id, current.state == KeyState.CURRENT.value),
    ).where(StoredObject.key_version != current.version)
    if org_id is not None:
        stmt = stmt.where(StoredObject.org_id == org_id)
    return stmt


def _reencrypt_query(org_id: str, columns: Any, before: datetime | None) -> Any:
    stmt = select(*columns).where(
        StoredObject.org_id == org_id, StoredObject.encryption == EncryptionMode.CSE.value
    )
    if before is not None:
        stmt = stmt.where(StoredObject.created_at <= before)
    return stmt


def _migrate_query(org_id: str, columns: Any) -> Any:
    return select(*columns).where(
        StoredObject.org_id == org_id, StoredObject.encryption == EncryptionMode.SSEC.value
    )


# --------------------------------------------------------------------------------------------
# Streaming helpers


def _copy_through(chunks: Iterator[bytes], obj: JobObject, sink: Callable[[bytes], None]) -> None:
    """Feed plaintext ``chunks`` to ``sink`` while checking size and SHA-256 against ``obj``.

    The check happens before the caller writes the end of the new object, so a mismatch never
    produces a complete object.
    """
    sha = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > obj.size:
            raise ObjectFailed("the object is longer than the catalog says", integrity=True)
        sha.update(chunk)
        sink(chunk)
    if size != obj.size or sha.hexdigest() != obj.sha256:
        raise ObjectFailed("plaintext SHA-256 differs from the catalog; object left as it was",
                            integrity=True)


def _write_cse(services: JobServices, obj: JobObject, plaintext: Iterator[bytes], new_storage_id: str,
               new_key: str) -> dict[str, Any]:
    """Encrypt ``plaintext`` under a fresh data key into ``new_key``; checked as it streams."""
    data_key = envelope.new_data_key()
    encryptor = envelope.Encryptor(data_key, org_id=obj.org_id, object_id=new_storage_id)
    writer = services.store.writer(new_key)
    try:
        writer.write(encryptor.header)

        def sink(chunk: bytes) -> None:
            out = encryptor.update(chunk)
            if out:
                writer.write(out)

        _copy_through(plaintext, obj, sink)
        writer.write(encryptor.finalize())
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return {"data_key": data_key, "salt": envelope.parse_header(encryptor.header).salt}


def _cse_switch(services: JobServices, obj: JobObject) -> Callable[..., dict[str, Any]]:
    def switch(s: Any, new_storage_id: str, new_key: str, info: dict[str, Any]) -> dict[str, Any]:
        version, wrapped = services.keyring.wrap_data_key(
            s, obj.org_id, new_storage_id, info["data_key"])
        return {"encryption": EncryptionMode.CSE.value, "storage_id": new_storage_id,
                "s3_key": new_key, "wrapped_data_key": wrapped, "key_version": version,
                "envelope_salt": info["salt"]}

    return switch


# --------------------------------------------------------------------------------------------
# rewrap


def rewrap(services: JobServices, org_id: str | None = None, *, dry_run: bool = False,
           progress: ProgressCallback | None = None, command: str = "keys rewrap") -> JobResult:
    """Move every object (of one organisation, or of all) onto its current key version.

    ``cse`` objects: the data key is rewrapped, no data moves. ``ssec`` objects: re-keyed by a
    server-side copy (or streamed where copies are not implemented). See the module docstring.

    :raises JobBusy: if another live process runs the same job.
    :raises RotationError: if the run had to stop (keyring or storage unavailable); the job
        stays resumable.
    """
    if dry_run:
        with services.sessions() as s:
            count, nbytes = s.execute(_rewrap_query(org_id, count_and_bytes)).one()
            copies = s.scalar(_rewrap_query(org_id, count_only).where(
                StoredObject.encryption == EncryptionMode.SSEC.value))
        return JobResult(kind=REWRAP, org_id=org_id, dry_run=True, objects=int(count),
                         bytes=int(nbytes), copied=int(copies or 0))

    if not services.settings.s3_bucket:
        with services.sessions() as s:
            ssec = int(s.scalar(_rewrap_query(org_id, count_only).where(
                StoredObject.encryption == EncryptionMode.SSEC.value)) or 0)
        if ssec:
            raise RotationError(f"{ssec} SSE-C object(s) must be re-keyed in the bucket: set "
                                "GATEWAY_S3_BUCKET (and GATEWAY_S3_ENDPOINT_URL if needed)")
    run = JobRun(services, REWRAP, org_id, {}, progress, command)

    def fetch(s: Any, after: str | None) -> list[JobObject]:
        stmt = _rewrap_query(org_id, lambda current: (*OBJECT_COLUMNS, current.version))
        if after is not None:
            stmt = stmt.where(StoredObject.id > after)
        rows = s.execute(stmt.order_by(StoredObject.id).limit(BATCH)).all()
        return [job_object(r, target=int(r[-1])) for r in rows]

    def remaining() -> int:
        with run.sessions() as s:
            stmt = _rewrap_query(org_id, count_only)
            if run.cursor is not None:
                stmt = stmt.where(StoredObject.id > run.cursor)
            return int(s.scalar(stmt) or 0)

    @guarded
    def work(obj: JobObject) -> None:
        if obj.encryption == EncryptionMode.SSEC.value:
            _rekey_ssec(services, run, obj)
        else:
            _rewrap_cse(services, run, obj)

    def body() -> None:
        # objects rotated or uploaded behind the cursor during a pass are taken by the next
        run.passes(fetch, work, remaining)

    return run_job(run, {"org": org_id or "all"}, body)


def _rewrap_cse(services: JobServices, run: JobRun, obj: JobObject) -> None:
    assert obj.target is not None and obj.wrapped_data_key is not None
    with run.sessions() as s, s.begin():
        wrapped = services.keyring.rewrap_data_key(
            s, obj.org_id, obj.storage_id, obj.key_version, obj.wrapped_data_key, obj.target)
        res = s.execute(update(_OBJECTS).where(
            _OBJECTS.c.id == obj.id,
            _OBJECTS.c.key_version == obj.key_version,
            _OBJECTS.c.storage_id == obj.storage_id,
        ).values(wrapped_data_key=wrapped, key_version=obj.target))
        changed = res.rowcount == 1
        if changed:
            run._advance(s, obj, done=True, nbytes=obj.size)
    if not changed:
        run.skip(obj)
        return
    run._after_commit(obj)
    run.result.objects += 1
    run.result.bytes += obj.size


def _rekey_ssec(services: JobServices, run: JobRun, obj: JobObject) -> None:
    """Re-key an SSE-C object: copy to a new S3 key under the current version's key."""
    assert obj.target is not None
    store = services.store
    with run.sessions() as s:
        old_key = services.keyring.ssec_key(s, obj.org_id, obj.key_version)
        new_key_material = services.keyring.ssec_key(s, obj.org_id, obj.target)

    def write(_new_storage_id: str, new_key: str) -> dict[str, Any]:
        if not run.copy_unsupported:
            try:
                if obj.size > COPY_LIMIT:
                    _multipart_copy(store, obj.s3_key, new_key, obj.size, old_key,
                                    new_key_material)
                else:
                    store.copy(obj.s3_key, new_key, src_sse_c=old_key,
                               dst_sse_c=new_key_material)
                size = store.head(new_key, sse_c=new_key_material).size
                if size != obj.size:
                    raise ObjectFailed(f"the copy has {size} bytes, the catalog says {obj.size}")
                run.result.copied += 1
                return {}
            except StorageError as exc:
                if not is_not_implemented(exc):
                    raise
                run.copy_unsupported = True  # e.g. Ceph RGW 16: stream from now on
        writer = store.writer(new_key, sse_c=new_key_material)
        try:
            _copy_through(store.iter_object(obj.s3_key, sse_c=old_key), obj, writer.write)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        run.result.streamed += 1
        return {}

    def switch(_s: Any, new_storage_id: str, new_key: str, _info: dict[str, Any]) -> dict[str, Any]:
        return {"storage_id": new_storage_id, "s3_key": new_key, "key_version": obj.target}

    run.move(obj, write, switch, [_OBJECTS.c.key_version == obj.key_version,
                                  _OBJECTS.c.encryption == EncryptionMode.SSEC.value])


def _multipart_copy(store: Any, src: str, dst: str, size: int, src_key: bytes,
                    dst_key: bytes) -> None:
    """Server-side copy of an object larger than one CopyObject allows (UploadPartCopy).

    Both SSE-C keys go with every part; on any failure the multipart upload is aborted.
    """
    resp = store._call("create_multipart_upload", key=dst, sse_c=True, Key=dst,
                       **ssec_params(dst_key))
    upload_id = resp["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, size, COPY_PART_SIZE), start=1):
            end = min(start + COPY_PART_SIZE, size) - 1
            part = store._call(
                "upload_part_copy", key=src, sse_c=True, Key=dst, UploadId=upload_id,
                PartNumber=number, CopySource={"Bucket": store.bucket, "Key": src},
                CopySourceRange=f"bytes={start}-{end}",
                **ssec_params(dst_key), **ssec_params(src_key, copy_source=True))
            parts.append({"PartNumber": number, "ETag": part["CopyPartResult"]["ETag"]})
        store._call("complete_multipart_upload", key=dst, sse_c=True, Key=dst,
                    UploadId=upload_id, MultipartUpload={"Parts": parts}, **ssec_params(dst_key))
    except BaseException:
        try:
            store._call("abort_multipart_upload", key=dst, Key=dst, UploadId=upload_id)
        except StorageError:
            pass
        raise


# --------------------------------------------------------------------------------------------
# reencrypt


def reencrypt(services: JobServices, org_id: str, *, dry_run: bool = False,
              progress: ProgressCallback | None = None,
              command: str = "keys reencrypt") -> JobResult:
    """Re-encrypt every client-side object of an organisation under fresh data keys.

    Objects uploaded after the job started already have fresh keys and are left alone. SSE-C
    objects are not touched (counted in ``not_touched``): rotate and rewrap them, or migrate.

    :raises JobBusy: if another live process runs the same job.
    :raises RotationError: if the run had to stop; the job stays resumable.
    """
    if dry_run:
        with services.sessions() as s:
            job = s.scalar(select(Job).where(
                Job.kind == REENCRYPT, Job.org_id == org_id, Job.state == "running"
            ).order_by(Job.id).limit(1))
            stmt = _reencrypt_query(
                org_id, (func.count(), func.coalesce(func.sum(StoredObject.size), 0)),
                job.started_at if job else None)
            if job is not None and job.cursor:
                stmt = stmt.where(StoredObject.id > job.cursor)
            count, nbytes = s.execute(stmt).one()
            ssec = s.scalar(_migrate_query(org_id, (func.count(),)))
        return JobResult(kind=REENCRYPT, org_id=org_id, dry_run=True, objects=int(count),
                         bytes=int(nbytes), resumed=job is not None,
                         not_touched=int(ssec or 0))

    run = JobRun(services, REENCRYPT, org_id, {}, progress, command)

    def fetch(s: Any, after: str | None) -> list[JobObject]:
        stmt = _reencrypt_query(org_id, OBJECT_COLUMNS, run.job_started)
        if after is not None:
            stmt = stmt.where(StoredObject.id > after)
        return [job_object(r) for r in s.execute(stmt.order_by(StoredObject.id).limit(BATCH))]

    @guarded
    def work(obj: JobObject) -> None:
        with run.sessions() as s:
            old_data_key = services.keyring.unwrap_data_key(
                s, obj.org_id, obj.storage_id, obj.key_version, obj.wrapped_data_key or b"")

        def write(new_storage_id: str, new_key: str) -> dict[str, Any]:
            plaintext = envelope.decrypt_stream(
                old_data_key, services.store.iter_object(obj.s3_key), org_id=obj.org_id,
                object_id=obj.storage_id)
            info = _write_cse(services, obj, plaintext, new_storage_id, new_key)
            run.result.streamed += 1
            return info

        run.move(obj, write, _cse_switch(services, obj),
                 [_OBJECTS.c.encryption == EncryptionMode.CSE.value])

    def body() -> None:
        with run.sessions() as s:
            stmt = _reencrypt_query(org_id, (func.count(),), run.job_started)
            if run.cursor:
                stmt = stmt.where(StoredObject.id > run.cursor)
            run.total = int(s.scalar(stmt) or 0)
            run.result.not_touched = int(s.scalar(_migrate_query(org_id, (func.count(),))) or 0)
        run.tick(None)
        for obj in run.batches(fetch):
            run.handle(obj, work)

    _require_org(services, org_id)
    return run_job(run, {}, body)


# --------------------------------------------------------------------------------------------
# migrate-ssec


def migrate_ssec(services: JobServices, org_id: str, *, dry_run: bool = False,
                 progress: ProgressCallback | None = None,
                 command: str = "keys migrate-ssec") -> JobResult:
    """Move an organisation from SSE-C to client-side encryption.

    The organisation's mode is set to ``cse`` first, so new uploads are client-side; each SSE-C
    object is then read with its SSE-C key, encrypted under a fresh data key into a new S3 key
    (plaintext SHA-256 checked on the way), its row switched and the old object deleted.

    :raises JobBusy: if another live process runs the same job.
    :raises RotationError: if the run had to stop; the job stays resumable.
    """
    if dry_run:
        with services.sessions() as s:
            count, nbytes = s.execute(_migrate_query(
                org_id, (func.count(), func.coalesce(func.sum(StoredObject.size), 0)))).one()
        return JobResult(kind=MIGRATE_SSEC, org_id=org_id, dry_run=True, objects=int(count),
                         bytes=int(nbytes))

    previous = _require_org(services, org_id)
    run = JobRun(services, MIGRATE_SSEC, org_id, {}, progress, command)

    def fetch(s: Any, after: str | None) -> list[JobObject]:
        stmt = _migrate_query(org_id, OBJECT_COLUMNS)
        if after is not None:
            stmt = stmt.where(StoredObject.id > after)
        return [job_object(r) for r in s.execute(stmt.order_by(StoredObject.id).limit(BATCH))]

    def remaining() -> int:
        with run.sessions() as s:
            stmt = _migrate_query(org_id, (func.count(),))
            if run.cursor is not None:
                stmt = stmt.where(StoredObject.id > run.cursor)
            return int(s.scalar(stmt) or 0)

    @guarded
    def work(obj: JobObject) -> None:
        with run.sessions() as s:
            sse_key = services.keyring.ssec_key(s, obj.org_id, obj.key_version)

        def write(new_storage_id: str, new_key: str) -> dict[str, Any]:
            plaintext = services.store.iter_object(obj.s3_key, sse_c=sse_key)
            info = _write_cse(services, obj, plaintext, new_storage_id, new_key)
            run.result.streamed += 1
            return info

        run.move(obj, write, _cse_switch(services, obj),
                 [_OBJECTS.c.encryption == EncryptionMode.SSEC.value,
                  _OBJECTS.c.key_version == obj.key_version])

    def body() -> None:
        with run.sessions() as s, s.begin():
            org = s.get(Organisation, org_id, with_for_update=True)
            if org is not None and org.encryption_mode != EncryptionMode.CSE.value:
                org.encryption_mode = EncryptionMode.CSE.value
        # uploads that began as SSE-C before the switch and ended behind the cursor are taken
        # by the next pass
        run.passes(fetch, work, remaining)

    return run_job(run, {"previous_mode": previous}, body)


def _require_org(services: JobServices, org_id: str) -> str:
    """The organisation's encryption mode; :class:`RotationError` if it does not exist."""
    with services.sessions() as s:
        org = s.get(Organisation, org_id)
        if org is None:
            raise RotationError(f"no organisation with id {org_id!r}")
        return org.encryption_mode


# --------------------------------------------------------------------------------------------
# rotate


def rotate_org(services: JobServices, org_id: str, *, command: str = "keys rotate") -> int:
    """Add a new key version to an organisation (current at once); return its number.

    ``gateway keys rotate`` is the command; this is the same step for programs and tests.
    """
    with services.sessions() as s:
        version = services.keyring.create_org_key(s, org_id).version
        s.commit()
    services.audit.record(action="key_rotate", outcome="success",
                          actor=Actor.cli(org_id, command), detail={"version": version})
    return version
