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
    version stays ``active`` until it is retired, which :meth:`~gateway.keyring.Keyring.
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
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import aliased, sessionmaker

from . import envelope
from .keyring import KeyringError, UnknownKeyVersion
from .models import (
    EncryptionMode,
    Job,
    KeyState,
    Organisation,
    OrgKeyVersion,
    StoredObject,
    new_id,
    utcnow,
)
from .principal import Actor
from .storage import SseCRefused, StorageError, StorageNotFound, ssec_params

if TYPE_CHECKING:
    from .services import Services

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

REWRAP = "rewrap"
REENCRYPT = "reencrypt"
MIGRATE_SSEC = "migrate-ssec"
ACTIONS = {REWRAP: "key_rewrap", REENCRYPT: "key_reencrypt", MIGRATE_SSEC: "key_migrate_ssec"}

#: Largest object a single CopyObject may copy (S3's limit); larger ones use UploadPartCopy.
COPY_LIMIT = 5 * 1024**3
#: Part size of a multipart (UploadPartCopy) copy.
COPY_PART_SIZE = 512 * 1024**2
#: A running job updated by another host more recently than this is assumed alive.
STALE_SECONDS = 120
#: Rows read per query while walking the catalog.
BATCH = 500
#: Consecutive storage failures after which a run stops (the job stays resumable).
MAX_STORAGE_FAILURES = 3
#: Extra passes over the catalog for objects that became stale during a run (rewrap, migrate).
MAX_PASSES = 3


class RotationError(Exception):
    """The job cannot run or had to stop; the message is one line an operator can act on."""


class JobBusy(RotationError):
    """Another live process is running the same job."""


class _ObjectFailed(Exception):
    """One object could not be moved; the job continues with the next."""

    def __init__(self, reason: str, *, integrity: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.integrity = integrity


class _StorageTrouble(Exception):
    """A storage failure that may not be the object's fault (deferred, may stop the run)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Progress:
    """Passed to the ``progress`` callback after every object (and once at the start)."""

    kind: str
    job_id: int | None
    done: int  #: objects handled in this run (moved, failed or skipped)
    total: int  #: objects this run expects to handle (an estimate: traffic continues)
    bytes: int  #: bytes of the objects moved in this run
    failed: int
    object_id: str | None = None


@dataclass
class JobResult:
    """What one run did (or, with ``dry_run``, would do)."""

    kind: str
    org_id: str | None
    dry_run: bool
    job_id: int | None = None
    resumed: bool = False
    objects: int = 0  #: moved (rewrapped, re-keyed, re-encrypted, migrated) in this run
    bytes: int = 0  #: their size
    failed: int = 0
    skipped: int = 0  #: changed by someone else meanwhile; left as they are
    seconds: float = 0.0
    copied: int = 0  #: SSE-C objects re-keyed by a server-side copy
    streamed: int = 0  #: objects rewritten by streaming (re-encrypt, migrate, copy fallback)
    previously_done: int = 0  #: objects the job had handled before this run (when resumed)
    leftovers: list[str] = field(default_factory=list)  #: old S3 keys that could not be deleted
    failures: list[tuple[str, str]] = field(default_factory=list)  #: (object id, reason)
    not_touched: int = 0  #: objects outside the job's reach (e.g. SSE-C objects for reencrypt)

    @property
    def ok(self) -> bool:
        return self.failed == 0


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class _Obj:
    """The columns of a catalog row a job needs (a snapshot; the row may change meanwhile)."""

    id: str
    org_id: str
    path: str
    category: str
    size: int
    sha256: str
    encryption: str
    key_version: int
    wrapped_data_key: bytes | None
    storage_id: str
    s3_key: str
    target: int | None = None  # rewrap: the organisation's current version when read


_OBJ_COLUMNS = (
    StoredObject.id, StoredObject.org_id, StoredObject.path, StoredObject.category,
    StoredObject.size, StoredObject.sha256, StoredObject.encryption, StoredObject.key_version,
    StoredObject.wrapped_data_key, StoredObject.storage_id, StoredObject.s3_key,
)
_OBJECTS = StoredObject.__table__
_JOBS = Job.__table__


def _count_only(_current: Any) -> tuple[Any, ...]:
    return (func.count(),)


def _count_and_bytes(_current: Any) -> tuple[Any, ...]:
    return (func.count(), func.coalesce(func.sum(StoredObject.size), 0))


def _obj(row: Any, target: int | None = None) -> _Obj:
    wrapped = row.wrapped_data_key
    return _Obj(
        id=row.id, org_id=row.org_id, path=row.path, category=row.category, size=int(row.size),
        sha256=row.sha256, encryption=row.encryption, key_version=int(row.key_version),
        wrapped_data_key=bytes(wrapped) if wrapped is not None else None,
        storage_id=row.storage_id, s3_key=row.s3_key, target=target,
    )


def _params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _identity(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not k.startswith("_")}


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not running anything
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _is_not_implemented(exc: StorageError) -> bool:
    text = str(exc).lower()
    return "notimplemented" in text or "not implemented" in text or " 501" in text


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
# The job runner shared by the three kinds


class _Run:
    """One run of one job: claiming the row, progress, audit, the move protocol."""

    def __init__(self, services: Services, kind: str, org_id: str | None,
                 params: dict[str, Any], progress: ProgressCallback | None, command: str) -> None:
        self.services = services
        self.kind = kind
        self.org_id = org_id
        self.identity = params
        self.progress = progress
        self.actor = Actor.cli(org_id, command)
        self.action = ACTIONS[kind]
        self.result = JobResult(kind=kind, org_id=org_id, dry_run=False)
        self.job_id: int | None = None
        self.job_started: datetime | None = None
        self.cursor: str | None = None
        self.params: dict[str, Any] = dict(params)
        self.total = 0
        self.handled = 0
        self.failed_ids: set[str] = set()
        self.deferred: list[_Obj] = []  # storage failures not yet committed past
        self.copy_unsupported = False
        self._storage_failures = 0
        # One connection for the whole run, so that each object's short transaction does not
        # pay for a new connection (with SQLite, closing the last connection checkpoints the
        # WAL and syncs: ~20 ms, far more than the transaction itself).
        self.conn: Any = None
        self.sessions: Any = None
        self._started = time.monotonic()

    # -- job row ---------------------------------------------------------------------------

    def claim(self) -> None:
        """Find the unfinished job of this kind, organisation and parameters, or create it."""
        self.conn = self.services.engine.connect()
        self.sessions = sessionmaker(bind=self.conn, expire_on_commit=False)
        now = utcnow()
        with self.sessions() as s, s.begin():
            stmt = select(Job).where(Job.kind == self.kind, Job.state == "running")
            stmt = stmt.where(Job.org_id.is_(None) if self.org_id is None
                              else Job.org_id == self.org_id)
            job = None
            for candidate in s.scalars(stmt.order_by(Job.id).with_for_update()):
                try:
                    stored = json.loads(candidate.params or "{}")
                except ValueError:
                    continue
                if _identity(stored) == self.identity:
                    job = candidate
                    break
            if job is not None:
                stored = json.loads(job.params or "{}")
                self._refuse_if_busy(job, stored.get("_owner"), now)
                self.result.resumed = True
                self.result.previously_done = int(job.done_count)
                self.params = {**stored, "_owner": _owner()}
                job.params = _params_json(self.params)
                job.updated_at = now
            else:
                self.params = {**self.identity, "_owner": _owner()}
                job = Job(kind=self.kind, org_id=self.org_id, params=_params_json(self.params),
                          state="running", cursor=None, done_count=0, done_bytes=0,
                          failed_count=0, started_at=now, updated_at=now)
                s.add(job)
                s.flush()
            self.job_id = job.id
            self.job_started = job.started_at
            self.cursor = job.cursor
        self.result.job_id = self.job_id

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _refuse_if_busy(self, job: Job, owner: Any, now: datetime) -> None:
        if not isinstance(owner, dict):
            return
        host, pid = owner.get("host"), owner.get("pid")
        if host == socket.gethostname():
            if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
                raise JobBusy(f"{self.kind} job {job.id} is being run by process {pid} on this "
                              "host; wait for it to finish (or stop it) and run again")
            return
        age = (now - job.updated_at).total_seconds() if job.updated_at else STALE_SECONDS
        if age < STALE_SECONDS:
            raise JobBusy(f"{self.kind} job {job.id} was updated {age:.0f} s ago by process "
                          f"{pid} on host {host}; if that process is gone, run again after "
                          f"{STALE_SECONDS} s")

    def _advance(self, s: Any, obj: _Obj, *, done: bool, nbytes: int = 0) -> None:
        """Record in the open transaction that ``obj`` (and deferred failures) is behind us."""
        failed = len(self.deferred) + (0 if done else 1)
        values: dict[str, Any] = {
            "cursor": obj.id, "updated_at": utcnow(),
            "done_count": _JOBS.c.done_count + (1 if done else 0),
            "done_bytes": _JOBS.c.done_bytes + nbytes,
        }
        if failed:
            values["failed_count"] = _JOBS.c.failed_count + failed
        s.execute(update(_JOBS).where(_JOBS.c.id == self.job_id).values(**values))

    def _after_commit(self, obj: _Obj) -> None:
        self.cursor = obj.id
        self.deferred.clear()

    def skip(self, obj: _Obj) -> None:
        """``obj`` changed under the job: move past it without counting it as done."""
        with self.sessions() as s, s.begin():
            s.execute(update(_JOBS).where(_JOBS.c.id == self.job_id).values(
                cursor=obj.id, updated_at=utcnow(),
                failed_count=_JOBS.c.failed_count + len(self.deferred)))
        self._after_commit(obj)
        self.result.skipped += 1

    def fail(self, obj: _Obj, reason: str, *, integrity: bool = False,
             defer: bool = False) -> None:
        """Record that ``obj`` failed (audited now); the job continues.

        A deferred failure (a storage error) moves the cursor only with the next success, so
        a run stopped by repeated storage errors retries those objects when resumed.
        """
        self.result.failed += 1
        self.result.failures.append((obj.id, reason))
        self.failed_ids.add(obj.id)
        self.services.audit.record(
            action=self.action, outcome="integrity_failure" if integrity else "failure",
            actor=self.actor, org_id=obj.org_id, object_id=obj.id, object_path=obj.path,
            detail={"job": self.job_id, "reason": reason[:300], "s3_key": obj.s3_key},
        )
        if defer:
            self.deferred.append(obj)
            return
        with self.sessions() as s, s.begin():
            self._advance(s, obj, done=False)
        self._after_commit(obj)

    def set_inflight(self, inflight: dict[str, str] | None) -> None:
        if inflight is None:
            self.params.pop("_inflight", None)
        else:
            self.params["_inflight"] = inflight
        with self.sessions() as s, s.begin():
            s.execute(update(_JOBS).where(_JOBS.c.id == self.job_id).values(
                params=_params_json(self.params), updated_at=utcnow()))

    def tidy_inflight(self) -> None:
        """After a crash: delete whichever key of the object in flight nothing points at."""
        inflight = self.params.get("_inflight")
        if not isinstance(inflight, dict):
            return
        keys = [k for k in (inflight.get("old"), inflight.get("new")) if isinstance(k, str)]
        with self.sessions() as s:
            used = set(s.scalars(select(StoredObject.s3_key).where(StoredObject.s3_key.in_(keys))))
        for key in keys:
            if key not in used:
                self._delete_quietly(key)
        self.set_inflight(None)

    def _delete_quietly(self, key: str) -> bool:
        try:
            self.services.store.delete(key)
            return True
        except StorageError:
            return False

    # -- audit and progress ----------------------------------------------------------------

    def audit_start(self, detail: dict[str, Any]) -> None:
        self.services.audit.record(
            action=self.action, outcome="started", actor=self.actor,
            detail={"job": self.job_id, "resumed": self.result.resumed, **detail})

    def audit_end(self, outcome: str, detail: dict[str, Any] | None = None) -> None:
        r = self.result
        self.services.audit.record(
            action=self.action, outcome=outcome, actor=self.actor, nbytes=r.bytes,
            detail={"job": self.job_id, "objects": r.objects, "bytes": r.bytes,
                    "failed": r.failed, "skipped": r.skipped, "copied": r.copied,
                    "streamed": r.streamed, **({"leftovers": r.leftovers} if r.leftovers else {}),
                    **(detail or {})})

    def tick(self, obj: _Obj | None) -> None:
        if obj is not None:
            self.handled += 1
        if self.progress is not None:
            self.progress(Progress(
                kind=self.kind, job_id=self.job_id, done=self.handled,
                total=max(self.total, self.handled), bytes=self.result.bytes,
                failed=self.result.failed, object_id=obj.id if obj else None))

    def finish(self) -> JobResult:
        """Mark the job done (or failed) and audit the end of the run."""
        state = "done" if not self.result.failed else "failed"
        params = _identity(self.params)
        with self.sessions() as s, s.begin():
            s.execute(update(_JOBS).where(_JOBS.c.id == self.job_id).values(
                state=state, finished_at=utcnow(), updated_at=utcnow(),
                params=_params_json(params),
                failed_count=_JOBS.c.failed_count + len(self.deferred)))
        self.deferred.clear()
        self.result.seconds = time.monotonic() - self._started
        self.audit_end("completed" if state == "done" else "failure")
        return self.result

    def abort(self, exc: BaseException) -> None:
        """The run stopped early (interrupt, systemic failure): audit it, leave it resumable."""
        self.result.seconds = time.monotonic() - self._started
        try:
            self.params.pop("_owner", None)
            with self.sessions() as s, s.begin():
                s.execute(update(_JOBS).where(_JOBS.c.id == self.job_id).values(
                    params=_params_json(self.params), updated_at=utcnow()))
        except Exception:  # noqa: BLE001  (best effort: the job is resumable anyway)
            pass
        try:
            self.audit_end("aborted", {"reason": str(exc)[:300] or type(exc).__name__})
        except Exception:  # noqa: BLE001  (already failing)
            pass

    # -- walking the catalog ---------------------------------------------------------------

    def passes(self, fetch: Callable[[Any, str | None], list[_Obj]],
               work: Callable[[_Obj], None], remaining: Callable[[], int]) -> None:
        """Handle every object ``fetch`` finds, in passes: objects that appear behind the
        cursor during a pass (rotated or uploaded meanwhile) are taken by the next one, up to
        :data:`MAX_PASSES`."""
        for pass_number in range(MAX_PASSES):
            self.total = self.handled + remaining()
            self.tick(None)
            for obj in self.batches(fetch):
                self.handle(obj, work)
            if pass_number + 1 == MAX_PASSES:
                break
            self.cursor = None
            with self.sessions() as s:
                left = [o for o in fetch(s, None) if o.id not in self.failed_ids]
            if not left:
                break

    def batches(self, fetch: Callable[[Any, str | None], list[_Obj]]) -> Iterator[_Obj]:
        """Rows after the cursor, in id order, a batch per short read transaction."""
        after = self.cursor
        while True:
            with self.sessions() as s:
                rows = fetch(s, after)
            if not rows:
                return
            for obj in rows:
                if obj.id not in self.failed_ids:
                    yield obj
            after = rows[-1].id
            if len(rows) < BATCH:
                return

    # -- the move protocol -----------------------------------------------------------------

    def move(self, obj: _Obj, write: Callable[[str, str], dict[str, Any]],
             switch: Callable[[Any, str, str, dict[str, Any]], dict[str, Any]],
             guard: list[Any]) -> bool:
        """Write ``obj`` anew under a fresh S3 key, switch its row, delete the old object.

        :param write: ``(new_storage_id, new_s3_key) -> info``; writes the new S3 object and
            raises :class:`_ObjectFailed` / :class:`_StorageTrouble` (leaving nothing behind).
        :param switch: ``(session, new_storage_id, new_s3_key, info) -> values`` for the row.
        :param guard: extra conditions of the guarded update.
        :returns: True if the row was switched, False if it had changed (object skipped).
        """
        new_storage_id = new_id()
        new_key = f"{obj.org_id}/{obj.category}/{new_storage_id}"
        self.set_inflight({"object": obj.id, "old": obj.s3_key, "new": new_key})
        try:
            info = write(new_storage_id, new_key)
        except BaseException:
            self._delete_quietly(new_key)  # a copy may have landed before the check failed
            raise
        # If this transaction fails, whether it committed may be unknown: the new object is
        # left alone and the next run's tidy_inflight() decides from the row which key to drop.
        with self.sessions() as s, s.begin():
            values = switch(s, new_storage_id, new_key, info)
            res = s.execute(update(_OBJECTS).where(
                _OBJECTS.c.id == obj.id, _OBJECTS.c.s3_key == obj.s3_key,
                _OBJECTS.c.storage_id == obj.storage_id, *guard).values(**values))
            switched = res.rowcount == 1
            if switched:
                self._advance(s, obj, done=True, nbytes=obj.size)
        if not switched:
            self._delete_quietly(new_key)
            self.skip(obj)
            return False
        self._after_commit(obj)
        self.result.objects += 1
        self.result.bytes += obj.size
        if not self._delete_quietly(obj.s3_key):
            self.result.leftovers.append(obj.s3_key)
        return True

    def _gone(self, obj: _Obj) -> bool:
        """True if ``obj``'s row no longer exists or no longer points at the same S3 object."""
        with self.sessions() as s:
            current = s.scalar(select(StoredObject.s3_key).where(StoredObject.id == obj.id))
        return current != obj.s3_key

    # -- handling failures uniformly -------------------------------------------------------

    def handle(self, obj: _Obj, work: Callable[[_Obj], None]) -> None:
        """Run ``work(obj)``, turning per-object failures into audited failures."""
        try:
            work(obj)
        except _ObjectFailed as exc:
            if self._gone(obj):
                self.skip(obj)  # purged or moved by someone else meanwhile: nothing to do
            else:
                self.fail(obj, exc.reason, integrity=exc.integrity)
            self._storage_failures = 0
        except _StorageTrouble as exc:
            self.fail(obj, exc.reason, defer=True)
            self._storage_failures += 1
            if self._storage_failures >= MAX_STORAGE_FAILURES:
                raise RotationError(
                    f"storage failed for {self._storage_failures} objects in a row "
                    f"({exc.reason}); the job is kept: run the command again to continue"
                ) from None
        else:
            self._storage_failures = 0
        self.tick(obj)


def _classify(exc: BaseException) -> BaseException:
    """Map an error raised while handling one object to how the job treats it."""
    if isinstance(exc, (_ObjectFailed, _StorageTrouble)):
        return exc
    if isinstance(exc, envelope.DecryptionError):
        return _ObjectFailed("object failed authentication", integrity=True)
    if isinstance(exc, UnknownKeyVersion):
        return _ObjectFailed(str(exc))
    if isinstance(exc, StorageNotFound):
        return _ObjectFailed("the object is missing from the bucket")
    if isinstance(exc, StorageError):
        if isinstance(exc, SseCRefused):
            return RotationError(str(exc))
        return _StorageTrouble(str(exc))
    return exc


def _guarded(fn: Callable[[_Obj], None]) -> Callable[[_Obj], None]:
    def wrapper(obj: _Obj) -> None:
        try:
            fn(obj)
        except Exception as exc:  # noqa: BLE001  (re-raised, classified)
            mapped = _classify(exc)
            if mapped is exc:
                raise
            raise mapped from None

    return wrapper


def _run_job(run: _Run, start_detail: dict[str, Any], body: Callable[[], None]) -> JobResult:
    try:
        run.claim()
        try:
            run.tidy_inflight()
            run.audit_start(start_detail)
            body()
        except BaseException as exc:
            run.abort(exc)
            if isinstance(exc, KeyringError):
                raise RotationError(f"keyring unavailable: {exc}") from None
            raise
        return run.finish()
    finally:
        run.close()


# --------------------------------------------------------------------------------------------
# Streaming helpers


def _copy_through(chunks: Iterator[bytes], obj: _Obj, sink: Callable[[bytes], None]) -> None:
    """Feed plaintext ``chunks`` to ``sink`` while checking size and SHA-256 against ``obj``.

    The check happens before the caller writes the end of the new object, so a mismatch never
    produces a complete object.
    """
    sha = hashlib.sha256()
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > obj.size:
            raise _ObjectFailed("the object is longer than the catalog says", integrity=True)
        sha.update(chunk)
        sink(chunk)
    if size != obj.size or sha.hexdigest() != obj.sha256:
        raise _ObjectFailed("plaintext SHA-256 differs from the catalog; object left as it was",
                            integrity=True)


def _write_cse(services: Services, obj: _Obj, plaintext: Iterator[bytes], new_storage_id: str,
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


def _cse_switch(services: Services, obj: _Obj) -> Callable[..., dict[str, Any]]:
    def switch(s: Any, new_storage_id: str, new_key: str, info: dict[str, Any]) -> dict[str, Any]:
        version, wrapped = services.keyring.wrap_data_key(
            s, obj.org_id, new_storage_id, info["data_key"])
        return {"encryption": EncryptionMode.CSE.value, "storage_id": new_storage_id,
                "s3_key": new_key, "wrapped_data_key": wrapped, "key_version": version,
                "envelope_salt": info["salt"]}

    return switch


# --------------------------------------------------------------------------------------------
# rewrap


def rewrap(services: Services, org_id: str | None = None, *, dry_run: bool = False,
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
            count, nbytes = s.execute(_rewrap_query(org_id, _count_and_bytes)).one()
            copies = s.scalar(_rewrap_query(org_id, _count_only).where(
                StoredObject.encryption == EncryptionMode.SSEC.value))
        return JobResult(kind=REWRAP, org_id=org_id, dry_run=True, objects=int(count),
                         bytes=int(nbytes), copied=int(copies or 0))

    if not services.settings.s3_bucket:
        with services.sessions() as s:
            ssec = int(s.scalar(_rewrap_query(org_id, _count_only).where(
                StoredObject.encryption == EncryptionMode.SSEC.value)) or 0)
        if ssec:
            raise RotationError(f"{ssec} SSE-C object(s) must be re-keyed in the bucket: set "
                                "GATEWAY_S3_BUCKET (and GATEWAY_S3_ENDPOINT_URL if needed)")
    run = _Run(services, REWRAP, org_id, {}, progress, command)

    def fetch(s: Any, after: str | None) -> list[_Obj]:
        stmt = _rewrap_query(org_id, lambda current: (*_OBJ_COLUMNS, current.version))
        if after is not None:
            stmt = stmt.where(StoredObject.id > after)
        rows = s.execute(stmt.order_by(StoredObject.id).limit(BATCH)).all()
        return [_obj(r, target=int(r[-1])) for r in rows]

    def remaining() -> int:
        with run.sessions() as s:
            stmt = _rewrap_query(org_id, _count_only)
            if run.cursor is not None:
                stmt = stmt.where(StoredObject.id > run.cursor)
            return int(s.scalar(stmt) or 0)

    @_guarded
    def work(obj: _Obj) -> None:
        if obj.encryption == EncryptionMode.SSEC.value:
            _rekey_ssec(services, run, obj)
        else:
            _rewrap_cse(services, run, obj)

    def body() -> None:
        # objects rotated or uploaded behind the cursor during a pass are taken by the next
        run.passes(fetch, work, remaining)

    return _run_job(run, {"org": org_id or "all"}, body)


def _rewrap_cse(services: Services, run: _Run, obj: _Obj) -> None:
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


def _rekey_ssec(services: Services, run: _Run, obj: _Obj) -> None:
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
                    raise _ObjectFailed(f"the copy has {size} bytes, the catalog says {obj.size}")
                run.result.copied += 1
                return {}
            except StorageError as exc:
                if not _is_not_implemented(exc):
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


def reencrypt(services: Services, org_id: str, *, dry_run: bool = False,
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

    run = _Run(services, REENCRYPT, org_id, {}, progress, command)

    def fetch(s: Any, after: str | None) -> list[_Obj]:
        stmt = _reencrypt_query(org_id, _OBJ_COLUMNS, run.job_started)
        if after is not None:
            stmt = stmt.where(StoredObject.id > after)
        return [_obj(r) for r in s.execute(stmt.order_by(StoredObject.id).limit(BATCH))]

    @_guarded
    def work(obj: _Obj) -> None:
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
    return _run_job(run, {}, body)


# --------------------------------------------------------------------------------------------
# migrate-ssec


def migrate_ssec(services: Services, org_id: str, *, dry_run: bool = False,
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
    run = _Run(services, MIGRATE_SSEC, org_id, {}, progress, command)

    def fetch(s: Any, after: str | None) -> list[_Obj]:
        stmt = _migrate_query(org_id, _OBJ_COLUMNS)
        if after is not None:
            stmt = stmt.where(StoredObject.id > after)
        return [_obj(r) for r in s.execute(stmt.order_by(StoredObject.id).limit(BATCH))]

    def remaining() -> int:
        with run.sessions() as s:
            stmt = _migrate_query(org_id, (func.count(),))
            if run.cursor is not None:
                stmt = stmt.where(StoredObject.id > run.cursor)
            return int(s.scalar(stmt) or 0)

    @_guarded
    def work(obj: _Obj) -> None:
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

    return _run_job(run, {"previous_mode": previous}, body)


def _require_org(services: Services, org_id: str) -> str:
    """The organisation's encryption mode; :class:`RotationError` if it does not exist."""
    with services.sessions() as s:
        org = s.get(Organisation, org_id)
        if org is None:
            raise RotationError(f"no organisation with id {org_id!r}")
        return org.encryption_mode


# --------------------------------------------------------------------------------------------
# rotate


def rotate_org(services: Services, org_id: str, *, command: str = "keys rotate") -> int:
    """Add a new key version to an organisation (current at once); return its number.

    ``gateway keys rotate`` is the command; this is the same step for programs and tests.
    """
    with services.sessions() as s:
        version = services.keyring.create_org_key(s, org_id).version
        s.commit()
    services.audit.record(action="key_rotate", outcome="success",
                          actor=Actor.cli(org_id, command), detail={"version": version})
    return version
