"""The job runner shared by the rotation jobs: the ``jobs`` row, progress, audit, the move
protocol and failure handling.

A run claims the unfinished job of its kind, organisation and parameters (or creates one),
walks the catalog in id order from the job's cursor, handles each object in its own short
transaction, and audits the run and every failed object. :mod:`.rotation` describes the
protocol; this module carries it out for any kind of job.
"""
from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..audit import AuditLog
from ..config import Settings
from ..crypto import envelope
from ..db.models import Job, StoredObject, new_id, utcnow
from ..errors import GatewayError
from ..principal import Actor
from ..storage import ObjectStore, SseCRefused, StorageError, StorageNotFound
from .errors import KeyringError, UnknownKeyVersion
from .keyring import Keyring

REWRAP = "rewrap"
REENCRYPT = "reencrypt"
MIGRATE_SSEC = "migrate-ssec"
ACTIONS = {REWRAP: "key_rewrap", REENCRYPT: "key_reencrypt", MIGRATE_SSEC: "key_migrate_ssec"}

#: A running job updated by another host more recently than this is assumed alive.
STALE_SECONDS = 120
#: Rows read per query while walking the catalog.
BATCH = 500
#: Consecutive storage failures after which a run stops (the job stays resumable).
MAX_STORAGE_FAILURES = 3
#: Extra passes over the catalog for objects that became stale during a run (rewrap, migrate).
MAX_PASSES = 3


class JobServices(Protocol):
    """What a job uses (the application's services provide it)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring
    store: ObjectStore
    audit: AuditLog


class RotationError(GatewayError):
    """The job cannot run or had to stop; the message is one line an operator can act on."""

    status, code = 503, "rotation_stopped"


class JobBusy(RotationError):
    """Another live process is running the same job."""

    status, code = 409, "job_busy"


class ObjectFailed(Exception):
    """One object could not be moved; the job continues with the next."""

    def __init__(self, reason: str, *, integrity: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.integrity = integrity


class StorageTrouble(Exception):
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
class JobObject:
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


OBJECT_COLUMNS = (
    StoredObject.id, StoredObject.org_id, StoredObject.path, StoredObject.category,
    StoredObject.size, StoredObject.sha256, StoredObject.encryption, StoredObject.key_version,
    StoredObject.wrapped_data_key, StoredObject.storage_id, StoredObject.s3_key,
)
_OBJECTS = StoredObject.__table__
_JOBS = Job.__table__


def count_only(_current: Any) -> tuple[Any, ...]:
    return (func.count(),)


def count_and_bytes(_current: Any) -> tuple[Any, ...]:
    return (func.count(), func.coalesce(func.sum(StoredObject.size), 0))


def job_object(row: Any, target: int | None = None) -> JobObject:
    wrapped = row.wrapped_data_key
    return JobObject(
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


def is_not_implemented(exc: StorageError) -> bool:
    text = str(exc).lower()
    return "notimplemented" in text or "not implemented" in text or " 501" in text


# --------------------------------------------------------------------------------------------
# The job runner shared by the three kinds


class JobRun:
    """One run of one job: claiming the row, progress, audit, the move protocol."""

    def __init__(self, services: JobServices, kind: str, org_id: str | None,
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
        self.deferred: list[JobObject] = []  # storage failures not yet committed past
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

    def _advance(self, s: Any, obj: JobObject, *, done: bool, nbytes: int = 0) -> None:
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

    def _after_commit(self, obj: JobObject) -> None:
        self.cursor = obj.id
        self.deferred.clear()

    def skip(self, obj: JobObject) -> None:
        """``obj`` changed under the job: move past it without counting it as done."""
        with self.sessions() as s, s.begin():
            s.execute(update(_JOBS).where(_JOBS.c.id == self.job_id).values(
                cursor=obj.id, updated_at=utcnow(),
                failed_count=_JOBS.c.failed_count + len(self.deferred)))
        self._after_commit(obj)
        self.result.skipped += 1

    def fail(self, obj: JobObject, reason: str, *, integrity: bool = False,
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

    def tick(self, obj: JobObject | None) -> None:
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

    def passes(self, fetch: Callable[[Any, str | None], list[JobObject]],
               work: Callable[[JobObject], None], remaining: Callable[[], int]) -> None:
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

    def batches(self, fetch: Callable[[Any, str | None], list[JobObject]]) -> Iterator[JobObject]:
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

    def move(self, obj: JobObject, write: Callable[[str, str], dict[str, Any]],
             switch: Callable[[Any, str, str, dict[str, Any]], dict[str, Any]],
             guard: list[Any]) -> bool:
        """Write ``obj`` anew under a fresh S3 key, switch its row, delete the old object.

        :param write: ``(new_storage_id, new_s3_key) -> info``; writes the new S3 object and
            raises :class:`ObjectFailed` / :class:`StorageTrouble` (leaving nothing behind).
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

    def _gone(self, obj: JobObject) -> bool:
        """True if ``obj``'s row no longer exists or no longer points at the same S3 object."""
        with self.sessions() as s:
            current = s.scalar(select(StoredObject.s3_key).where(StoredObject.id == obj.id))
        return current != obj.s3_key

    # -- handling failures uniformly -------------------------------------------------------

    def handle(self, obj: JobObject, work: Callable[[JobObject], None]) -> None:
        """Run ``work(obj)``, turning per-object failures into audited failures."""
        try:
            work(obj)
        except ObjectFailed as exc:
            if self._gone(obj):
                self.skip(obj)  # purged or moved by someone else meanwhile: nothing to do
            else:
                self.fail(obj, exc.reason, integrity=exc.integrity)
            self._storage_failures = 0
        except StorageTrouble as exc:
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


def classify(exc: BaseException) -> BaseException:
    """Map an error raised while handling one object to how the job treats it."""
    if isinstance(exc, (ObjectFailed, StorageTrouble)):
        return exc
    if isinstance(exc, envelope.DecryptionError):
        return ObjectFailed("object failed authentication", integrity=True)
    if isinstance(exc, UnknownKeyVersion):
        return ObjectFailed(str(exc))
    if isinstance(exc, StorageNotFound):
        return ObjectFailed("the object is missing from the bucket")
    if isinstance(exc, StorageError):
        if isinstance(exc, SseCRefused):
            return RotationError(str(exc))
        return StorageTrouble(str(exc))
    return exc


def guarded(fn: Callable[[JobObject], None]) -> Callable[[JobObject], None]:
    def wrapper(obj: JobObject) -> None:
        try:
            fn(obj)
        except Exception as exc:  # noqa: BLE001  (re-raised, classified)
            mapped = classify(exc)
            if mapped is exc:
                raise
            raise mapped from None

    return wrapper


def run_job(run: JobRun, start_detail: dict[str, Any], body: Callable[[], None]) -> JobResult:
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
