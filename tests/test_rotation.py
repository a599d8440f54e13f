"""Key rotation jobs: rewrap, re-encrypt, SSE-C re-key and migration (``gateway.rotation``).

Objects are created through the object service and read back through it, so "readable" means
exactly what a download means: the plaintext's SHA-256 matches the catalog.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from gateway.cli import cli
from gateway.db.models import AuditEvent, Job, Organisation, StoredObject
from gateway.keys import rotation
from gateway.principal import Actor
from gateway.storage import StorageError
from tests.stack import ROOT, Stack

PDF = b"%PDF-1.7\n"
COPY_SOURCE_MD5 = "x-amz-copy-source-server-side-encryption-customer-key-md5"
DEST_MD5 = "x-amz-server-side-encryption-customer-key-md5"


# --------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(autouse=True)
def _one_connection_open(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Keep one idle database connection open for the test's duration.

    With SQLite and a pool that closes connections, closing the *last* connection checkpoints
    the WAL and syncs (~20 ms); the test helpers open and close many. Nothing else changes.
    """
    names = [n for n in ("stack", "sqlite_stack") if n in request.fixturenames]
    if not names:
        yield
        return
    stack = request.getfixturevalue(names[0])
    with stack.services.engine.connect():
        yield


def actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)


def content(size: int) -> bytes:
    return PDF + os.urandom(size - len(PDF))


def upload(stack: Stack, who: str, count: int, size: int = 2000, prefix: str = "uploads/r",
           ) -> dict[str, bytes]:
    """``count`` objects of ``size`` bytes (a few uploads at a time); returns path -> content."""
    made = {f"{prefix}/{i:04d}.pdf": content(size) for i in range(count)}

    def one(path: str) -> None:
        data = made[path]
        stack.services.objects.upload(actor(stack, who), path,
                                      [data[j:j + (1 << 20)] for j in range(0, len(data), 1 << 20)])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, made))
    return made


def read(stack: Stack, who: str, path: str) -> bytes:
    """An object's plaintext through the object service (checked against the catalog)."""
    objects = stack.services.objects
    who_ = actor(stack, who)
    obj = objects.find(who_, path, "view")
    body = b"".join(objects.open(who_, obj).body)
    assert hashlib.sha256(body).hexdigest() == obj.sha256
    return body


def check_all(stack: Stack, who: str, made: dict[str, bytes]) -> None:
    """Every object reads back as it was uploaded (a few reads at a time)."""
    with ThreadPoolExecutor(4) as pool:
        got = dict(zip(made, pool.map(lambda p: read(stack, who, p), made)))
    for path, data in made.items():
        assert got[path] == data, path


def rows(stack: Stack, org_id: str) -> dict[str, StoredObject]:
    with stack.services.sessions() as s:
        return {o.path: o for o in s.scalars(select(StoredObject).where(
            StoredObject.org_id == org_id))}


def snapshot(stack: Stack) -> list[tuple]:
    with stack.services.sessions() as s:
        return sorted((o.id, o.key_version, o.wrapped_data_key, o.s3_key, o.encryption)
                      for o in s.scalars(select(StoredObject)))


def counts(stack: Stack) -> tuple[int, int]:
    with stack.services.sessions() as s:
        return (s.scalar(select(func.count()).select_from(Job)),
                s.scalar(select(func.count()).select_from(AuditEvent)))


def audit_outcomes(stack: Stack, action: str) -> list[str]:
    with stack.services.sessions() as s:
        return list(s.scalars(select(AuditEvent.outcome).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)))


def bucket_keys(stack: Stack, org_id: str) -> set[str]:
    return {k for k, _size in stack.services.store.list_keys(f"{org_id}/")}


def ssec_md5(stack: Stack, org_id: str, version: int) -> str:
    with stack.services.sessions() as s:
        key = stack.services.keyring.ssec_key(s, org_id, version)
    return base64.b64encode(hashlib.md5(key).digest()).decode()


class Recorder:
    """The headers of every S3 request (moto ignores SSE-C: the headers are the proof)."""

    def __init__(self, stack: Stack) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        stack.services.store.client.meta.events.register("before-send.s3.*", self._record)

    def _record(self, request, **_kwargs):  # type: ignore[no-untyped-def]
        self.calls.append((request.method, request.url, {
            k.lower(): v.decode() if isinstance(v, bytes) else v
            for k, v in request.headers.items()}))


def cli_run(stack: Stack, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), env=stack.env, catch_exceptions=False)


def kill_midway(stack: Stack, args: list[str], progress: Callable[[], int], at: int,
                poll: float = 0.02) -> int:
    """Run ``gateway ARGS`` in its own process and SIGKILL it once ``progress()`` reaches
    ``at``; returns the progress seen. Fails if the command ended before it could be killed."""
    proc = subprocess.Popen([sys.executable, "-m", "gateway", *args], cwd=ROOT,
                            env={**os.environ, **stack.env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = progress()
        if done >= at:
            break
        time.sleep(poll)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"gateway {' '.join(args)} finished first"
    return done


# --------------------------------------------------------------------------------------------
# rewrap


def test_rotate_then_rewrap_moves_every_object_and_frees_the_old_version(stack: Stack) -> None:
    services = stack.services
    org1 = upload(stack, "staff1", 10)
    org1.update(upload(stack, "staff1", 1, size=(1 << 20) + 12345, prefix="uploads/big"))
    org2 = upload(stack, "staff2", 3)
    ssec = upload(stack, "staffs", 3)
    old_ssec_keys = {r.s3_key for r in rows(stack, stack.org_ssec).values()}
    assert rotation.rotate_org(services, stack.org1) == 2
    assert rotation.rotate_org(services, stack.org_ssec) == 2

    before, (jobs, events) = snapshot(stack), counts(stack)
    dry = rotation.rewrap(services, None, dry_run=True)
    assert (dry.objects, dry.copied) == (14, 3)
    assert dry.bytes == sum(map(len, org1.values())) + sum(map(len, ssec.values()))
    assert snapshot(stack) == before and counts(stack) == (jobs, events)

    seen: list[rotation.Progress] = []
    result = rotation.rewrap(services, None, progress=seen.append)
    assert (result.objects, result.failed, result.skipped) == (14, 0, 0)
    assert (result.copied, result.streamed) == (3, 0)
    assert result.bytes == dry.bytes and not result.leftovers
    assert seen[-1].done == 14 and seen[-1].total == 14

    for who, made in (("staff1", org1), ("staff2", org2), ("staffs", ssec)):
        for path, data in made.items():
            assert read(stack, who, path) == data
    assert {r.key_version for r in rows(stack, stack.org1).values()} == {2}
    assert {r.key_version for r in rows(stack, stack.org2).values()} == {1}
    ssec_rows = rows(stack, stack.org_ssec)
    assert {r.key_version for r in ssec_rows.values()} == {2}
    # SSE-C objects moved to new S3 keys; the old ones are gone
    assert bucket_keys(stack, stack.org_ssec) == {r.s3_key for r in ssec_rows.values()}
    assert not old_ssec_keys & bucket_keys(stack, stack.org_ssec)
    assert all(r.s3_key.endswith("/" + r.storage_id) for r in ssec_rows.values())

    with services.sessions() as s:
        usage = {(u.org_id, u.version): (u.state, u.objects)
                 for u in services.keyring.usage(s)}
    assert usage[(stack.org1, 1)] == ("active", 0)
    assert usage[(stack.org1, 2)] == ("current", 11)
    assert usage[(stack.org_ssec, 1)] == ("active", 0)
    with services.sessions() as s:
        services.keyring.retire_version(s, stack.org1, 1)
        services.keyring.retire_version(s, stack.org_ssec, 1)
        s.commit()
    assert read(stack, "staff1", "uploads/big/0000.pdf") == org1["uploads/big/0000.pdf"]

    again = rotation.rewrap(services, None)  # idempotent
    assert (again.objects, again.failed) == (0, 0)
    assert snapshot(stack) == snapshot(stack)
    with services.sessions() as s:
        states = list(s.scalars(select(Job.state).where(Job.kind == "rewrap")))
    assert states == ["done", "done"]
    assert audit_outcomes(stack, "key_rewrap") == ["started", "completed"] * 2


def test_rewrap_command_dry_run_summary_and_status(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    made = upload(stack, "staff1", 4, size=1000)
    rotation.rotate_org(stack.services, stack.org1)
    before = snapshot(stack)
    dry = cli_run(stack, "keys", "rewrap", "--org", "Clinic One", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.strip() == "would touch 4 objects, 4000 bytes"
    assert snapshot(stack) == before

    # a client-side rewrap needs no bucket setting, like the other keys commands
    done = CliRunner().invoke(cli, ["keys", "rewrap", "--org", stack.org1], catch_exceptions=False,
                              env={**stack.env, "GATEWAY_S3_BUCKET": None,
                                   "GATEWAY_SECRET_KEY": None})
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("rewrapped 4 objects (4000 bytes) in ")
    assert "rewrapping: 4/4" in done.stderr
    status = cli_run(stack, "keys", "status", "--org", stack.org1)
    # org (may hold spaces), version, state, objects, bytes, created (2 words), master
    lines = {tuple(line.split()[-7:-4]) for line in status.stdout.splitlines()}
    assert ("1", "active", "0") in lines and ("2", "current", "4") in lines
    for path, data in made.items():
        assert read(stack, "staff1", path) == data

    missing = cli_run(stack, "keys", "rewrap", "--org", "nobody")
    assert missing.exit_code == 1 and missing.stderr.count("\n") == 1
    assert "no organisation" in missing.stderr


def test_interrupted_rewrap_resumes_from_its_cursor(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    made = upload(stack, "staff1", 12, size=500)
    rotation.rotate_org(stack.services, stack.org1)

    def stop_after_five(p: rotation.Progress) -> None:
        if p.done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotation.rewrap(stack.services, stack.org1, progress=stop_after_five)
    with stack.services.sessions() as s:
        job = s.scalar(select(Job))
        assert (job.state, job.done_count) == ("running", 5)
        first_job = job.id
    for path, data in made.items():  # half on v1, half on v2: all readable
        assert read(stack, "staff1", path) == data

    result = rotation.rewrap(stack.services, stack.org1)
    assert result.resumed and result.job_id == first_job and result.previously_done == 5
    assert result.objects == 7
    with stack.services.sessions() as s:
        job = s.get(Job, first_job)
        assert (job.state, job.done_count, job.failed_count) == ("done", 12, 0)
        assert json.loads(job.params) == {}
    assert audit_outcomes(stack, "key_rewrap") == ["started", "aborted", "started", "completed"]
    assert {r.key_version for r in rows(stack, stack.org1).values()} == {2}


def test_a_job_run_by_a_live_process_is_not_taken_over(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    import socket

    with stack.services.sessions() as s:
        s.add(Job(kind="rewrap", org_id=stack.org1, state="running", params=json.dumps(
            {"_owner": {"host": socket.gethostname(), "pid": os.getppid()}})))
        s.commit()
    with pytest.raises(rotation.JobBusy, match="being run by process"):
        rotation.rewrap(stack.services, stack.org1)


def test_downloads_continue_during_rewrap(sqlite_stack: Stack,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stack = sqlite_stack
    made = upload(stack, "staff1", 40, size=3000)
    rotation.rotate_org(stack.services, stack.org1)
    # a rewrap of 40 objects takes a few tens of milliseconds: slow each one down a little so
    # that reads have the time to happen while it runs
    rewrap_one = rotation._rewrap_cse

    def slowly(*args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(0.01)
        return rewrap_one(*args, **kwargs)

    monkeypatch.setattr(rotation, "_rewrap_cse", slowly)
    errors: list[BaseException] = []
    reads = [0]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for path, data in made.items():
                try:
                    assert read(stack, "staff1", path) == data
                    reads[0] += 1
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                    return

    thread = threading.Thread(target=reader)
    thread.start()
    while reads[0] < 5:
        time.sleep(0.01)
    during = reads[0]
    result = rotation.rewrap(stack.services, stack.org1)
    after = reads[0]
    time.sleep(0.3)
    stop.set()
    thread.join()
    assert not errors, errors[0]
    assert result.objects == 40 and after > during
    assert {r.key_version for r in rows(stack, stack.org1).values()} == {2}


# --------------------------------------------------------------------------------------------
# SSE-C re-key


def test_ssec_rekey_sends_old_key_as_copy_source_and_new_key_as_destination(
        sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    made = upload(stack, "staffs", 2)
    rotation.rotate_org(stack.services, stack.org_ssec)
    rec = Recorder(stack)
    result = rotation.rewrap(stack.services, stack.org_ssec)
    assert (result.objects, result.copied, result.streamed) == (2, 2, 0)
    copies = [h for m, _u, h in rec.calls if m == "PUT" and "x-amz-copy-source" in h]
    assert len(copies) == 2
    old, new = ssec_md5(stack, stack.org_ssec, 1), ssec_md5(stack, stack.org_ssec, 2)
    assert old != new
    for headers in copies:
        assert headers[COPY_SOURCE_MD5] == old
        assert headers["x-amz-copy-source-server-side-encryption-customer-algorithm"] == "AES256"
        assert headers[DEST_MD5] == new
    heads = [h for m, _u, h in rec.calls if m == "HEAD"]
    assert heads and all(h[DEST_MD5] == new for h in heads)
    for path, data in made.items():
        assert read(stack, "staffs", path) == data


def test_ssec_rekey_streams_when_copy_is_not_implemented(sqlite_stack: Stack,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    stack = sqlite_stack
    made = upload(stack, "staffs", 3)
    old_keys = {r.s3_key for r in rows(stack, stack.org_ssec).values()}
    rotation.rotate_org(stack.services, stack.org_ssec)
    calls = []

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        raise StorageError("storage answered NotImplemented: ")

    monkeypatch.setattr(stack.services.store, "copy", refuse)
    rec = Recorder(stack)
    result = rotation.rewrap(stack.services, stack.org_ssec)
    assert (result.objects, result.copied, result.streamed, result.failed) == (3, 0, 3, 0)
    assert len(calls) == 1  # refused once, streamed from then on
    old, new = ssec_md5(stack, stack.org_ssec, 1), ssec_md5(stack, stack.org_ssec, 2)
    gets = [h for m, _u, h in rec.calls if m == "GET"]
    puts = [h for m, _u, h in rec.calls if m == "PUT"]
    assert len(gets) == 3 and all(h[DEST_MD5] == old for h in gets)
    assert len(puts) == 3 and all(h[DEST_MD5] == new for h in puts)
    ssec_rows = rows(stack, stack.org_ssec)
    assert {r.key_version for r in ssec_rows.values()} == {2}
    assert bucket_keys(stack, stack.org_ssec) == {r.s3_key for r in ssec_rows.values()}
    assert not old_keys & bucket_keys(stack, stack.org_ssec)
    for path, data in made.items():
        assert read(stack, "staffs", path) == data


def test_ssec_rekey_of_large_objects_uses_upload_part_copy(sqlite_stack: Stack,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    stack = sqlite_stack
    made = upload(stack, "staffs", 1, size=11 * (1 << 20) + 7)
    rotation.rotate_org(stack.services, stack.org_ssec)
    monkeypatch.setattr(rotation, "COPY_LIMIT", 6 << 20)
    monkeypatch.setattr(rotation, "COPY_PART_SIZE", 5 << 20)
    rec = Recorder(stack)
    result = rotation.rewrap(stack.services, stack.org_ssec)
    assert (result.objects, result.copied) == (1, 1)
    part_copies = [h for m, u, h in rec.calls if m == "PUT" and "partNumber=" in u]
    assert len(part_copies) == 3
    old, new = ssec_md5(stack, stack.org_ssec, 1), ssec_md5(stack, stack.org_ssec, 2)
    assert all(h[COPY_SOURCE_MD5] == old and h[DEST_MD5] == new for h in part_copies)
    for path, data in made.items():
        assert read(stack, "staffs", path) == data


# --------------------------------------------------------------------------------------------
# reencrypt


def test_reencrypt_survives_sigkill_and_resumes(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    made = upload(stack, "staff1", 200, size=1500)
    before = {p: (r.storage_id, r.s3_key, r.wrapped_data_key) for p, r in
              rows(stack, stack.org1).items()}
    env = {**os.environ, **stack.env}
    args = ["keys", "reencrypt", "--org", stack.org1]
    command = [sys.executable, "-m", "gateway", *args]

    def job_done() -> int:
        with stack.services.sessions() as s:
            return s.scalar(select(Job.done_count).where(Job.kind == "reencrypt")) or 0

    done = kill_midway(stack, args, job_done, at=5)
    assert 0 < done < 200

    check_all(stack, "staff1", made)  # every object readable after the crash

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("re-encrypted ")
    assert "resumed job" in again.stderr
    after = rows(stack, stack.org1)
    check_all(stack, "staff1", made)
    for path in made:
        assert after[path].storage_id != before[path][0]
        assert after[path].s3_key != before[path][1]
        assert after[path].wrapped_data_key != before[path][2]
    # no leftovers: the killed run's half-written object was tidied at the restart
    assert bucket_keys(stack, stack.org1) == {r.s3_key for r in after.values()}
    with stack.services.sessions() as s:
        job = s.scalar(select(Job).where(Job.kind == "reencrypt"))
        assert (job.state, job.done_count, job.failed_count) == ("done", 200, 0)


def test_reencrypt_refuses_an_object_whose_plaintext_differs_from_the_catalog(
        sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    made = upload(stack, "staff1", 3)
    rotation.rotate_org(stack.services, stack.org1)
    victim = "uploads/r/0001.pdf"
    with stack.services.sessions() as s:
        row = s.scalar(select(StoredObject).where(StoredObject.path == victim))
        row.sha256 = "0" * 64
        s.commit()
        kept = (row.storage_id, row.s3_key, row.wrapped_data_key)

    dry = rotation.reencrypt(stack.services, stack.org1, dry_run=True)
    assert (dry.objects, dry.bytes) == (3, 6000)
    result = cli_run(stack, "keys", "reencrypt", "--org", stack.org1)
    assert result.exit_code == 1
    assert result.stdout.startswith("re-encrypted 2 objects (4000 bytes)")
    assert result.stderr.strip().splitlines()[-1].startswith("gateway: 1 object(s) failed")
    after = rows(stack, stack.org1)
    assert (after[victim].storage_id, after[victim].s3_key,
            after[victim].wrapped_data_key) == kept
    assert {after[p].key_version for p in made if p != victim} == {2}
    assert bucket_keys(stack, stack.org1) == {r.s3_key for r in after.values()}
    assert audit_outcomes(stack, "key_reencrypt") == ["started", "integrity_failure", "failure"]
    for path, data in made.items():
        if path != victim:
            assert read(stack, "staff1", path) == data


# --------------------------------------------------------------------------------------------
# migrate-ssec


def test_migrate_ssec_moves_objects_to_client_side_encryption(sqlite_stack: Stack) -> None:
    stack = sqlite_stack
    made = upload(stack, "staffs", 3)
    made.update(upload(stack, "staffs", 1, size=9 * (1 << 20), prefix="uploads/big"))
    old_keys = {r.s3_key for r in rows(stack, stack.org_ssec).values()}
    dry = rotation.migrate_ssec(stack.services, stack.org_ssec, dry_run=True)
    assert dry.objects == 4

    result = cli_run(stack, "keys", "migrate-ssec", "--org", "Clinic SSEC")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"migrated 4 objects ({sum(map(len, made.values()))} bytes)")
    after = rows(stack, stack.org_ssec)
    assert {r.encryption for r in after.values()} == {"cse"}
    assert all(r.wrapped_data_key and r.envelope_salt for r in after.values())
    assert not old_keys & bucket_keys(stack, stack.org_ssec)
    with stack.services.sessions() as s:
        assert s.get(Organisation, stack.org_ssec).encryption_mode == "cse"
    for path, data in made.items():
        assert read(stack, "staffs", path) == data
    new = upload(stack, "staffs", 1, prefix="uploads/new")
    assert rows(stack, stack.org_ssec)["uploads/new/0000.pdf"].encryption == "cse"
    assert read(stack, "staffs", "uploads/new/0000.pdf") == new["uploads/new/0000.pdf"]
    assert audit_outcomes(stack, "key_migrate_ssec") == ["started", "completed"]
    assert rotation.migrate_ssec(stack.services, stack.org_ssec).objects == 0


@pytest.mark.parametrize("range_header", [None, "bytes=10-1000"])
def test_a_download_that_read_the_row_before_a_move_follows_it(
        sqlite_stack: Stack, range_header: str | None) -> None:
    """reencrypt (like an SSE-C re-key) moves an object to a new S3 key and deletes the old
    one: a download whose row was read just before still serves the right bytes."""
    stack = sqlite_stack
    made = upload(stack, "staff1", 1, size=5000)
    (path, data), = made.items()
    who = actor(stack, "staff1")
    stale = stack.services.objects.find(who, path, "view")
    rotation.reencrypt(stack.services, stack.org1)
    assert rows(stack, stack.org1)[path].s3_key != stale.s3_key
    assert stale.s3_key not in bucket_keys(stack, stack.org1)
    got = b"".join(stack.services.objects.open(who, stale, range_header=range_header).body)
    assert got == (data if range_header is None else data[10:1001])
    assert audit_outcomes(stack, "view" if range_header is None else "range_read") == [
        "started", "completed"]
