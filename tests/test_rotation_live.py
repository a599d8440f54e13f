"""Rotation as an operator runs it: the real commands in their own processes, beside the real
gateway serving requests, and a rewrap killed with SIGKILL then run again."""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import requests
from sqlalchemy import select

from gateway.db.models import Job
from tests.stack import ROOT, LiveGateway, Stack
from tests.test_rotation import (
    bucket_keys,
    check_all,
    content,
    kill_midway,
    rows,
    upload,
)

RUN_TIMEOUT = 180


def run(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, env={**os.environ, **stack.env},
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def status_objects(stack: Stack, org_id: str) -> dict[int, tuple[str, int]]:
    """``gateway keys status --org``: version -> (state, objects)."""
    out = run(stack, "keys", "status", "--org", org_id).stdout
    found: dict[int, tuple[str, int]] = {}
    for line in out.splitlines():
        words = line.split()
        # org (may hold spaces), version, state, objects, bytes, created (2 words), master
        if len(words) >= 7 and words[-7].isdigit() and words[-5].isdigit():
            found[int(words[-7])] = (words[-6], int(words[-5]))
    return found


def assert_status_matches_the_bucket(stack: Stack, org_id: str) -> None:
    live = [o for o in rows(stack, org_id).values() if o.deleted_at is None]
    by_version = status_objects(stack, org_id)
    assert sum(n for _state, n in by_version.values()) == len(live)
    assert bucket_keys(stack, org_id) == {o.s3_key for o in rows(stack, org_id).values()}


def test_rewrap_killed_with_sigkill_resumes_and_loses_nothing(sqlite_stack: Stack) -> None:
    """SSE-C objects, re-keyed by server-side copy: slow enough per object to be killed
    midway, and each one is two steps (copy, then switch the row and delete the old key)."""
    stack = sqlite_stack
    org = stack.org_ssec
    total = 300
    made = upload(stack, "staffs", total, size=700)
    run(stack, "keys", "rotate", "--org", org)
    kill_midway(stack, ["keys", "rewrap", "--org", org],
                lambda: sum(1 for o in rows(stack, org).values() if o.key_version == 2),
                at=10, poll=0.005)
    versions = {o.key_version for o in rows(stack, org).values()}
    assert versions == {1, 2}, versions  # killed midway: both versions in use

    check_all(stack, "staffs", made)  # every object readable after the crash
    again = run(stack, "keys", "rewrap", "--org", org)
    assert "resumed job" in again.stderr
    assert {o.key_version for o in rows(stack, org).values()} == {2}
    check_all(stack, "staffs", made)
    assert status_objects(stack, org) == {1: ("active", 0), 2: ("current", total)}
    assert_status_matches_the_bucket(stack, org)  # no copy left behind by the killed run
    with stack.services.sessions() as s:
        job = s.scalar(select(Job).where(Job.kind == "rewrap"))
        assert (job.state, job.done_count, job.failed_count) == ("done", total, 0)


def test_rotations_run_beside_live_traffic_without_errors(sqlite_stack: Stack,
                                                          tmp_path: Path) -> None:
    stack = sqlite_stack
    made = upload(stack, "staff1", 60, size=40_000)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=2)
    headers = {"Authorization": f"Bearer {stack.users['staff1'].token}"}
    stop = threading.Event()
    errors: list[str] = []
    served = {"reads": 0, "writes": 0}
    written: dict[str, bytes] = {}
    lock = threading.Lock()

    def reader(seed: int) -> None:
        rnd = random.Random(seed)
        paths = list(made)
        while not stop.is_set():
            path = rnd.choice(paths)
            r = requests.get(f"{gw.url}/api/v1/files/{path}", headers=headers, timeout=60)
            if r.status_code != 200 or r.content != made[path]:
                errors.append(f"GET {path}: {r.status_code} {r.text[:200]}")
                return
            with lock:
                served["reads"] += 1

    def writer() -> None:
        n = 0
        while not stop.is_set():
            path, data = f"uploads/during/{n:04d}.pdf", content(30_000)
            r = requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=headers,
                             timeout=60)
            if r.status_code != 201:
                errors.append(f"PUT {path}: {r.status_code} {r.text[:200]}")
                return
            with lock:
                written[path] = data
                served["writes"] += 1
            n += 1

    try:
        run(stack, "keys", "rotate", "--org", stack.org1)
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(2)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        marks = []
        for command in (("keys", "rewrap"), ("keys", "reencrypt")):
            before = dict(served)
            run(stack, *command, "--org", stack.org1)
            marks.append((served["reads"] - before["reads"], served["writes"] - before["writes"]))
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        # traffic really ran beside each command
        assert all(reads > 0 and writes > 0 for reads, writes in marks), marks

        everything = {**made, **written}
        for path, data in everything.items():
            r = requests.get(f"{gw.url}/api/v1/files/{path}", headers=headers, timeout=60)
            assert r.status_code == 200 and hashlib.sha256(r.content).digest() \
                == hashlib.sha256(data).digest(), path
    finally:
        stop.set()
        gw.stop()
    live = {p: o for p, o in rows(stack, stack.org1).items() if o.deleted_at is None}
    assert set(live) == set(everything)
    assert {o.key_version for o in live.values()} == {2}
    assert_status_matches_the_bucket(stack, stack.org1)
    with stack.services.sessions() as s:
        states = s.execute(select(Job.kind, Job.state, Job.failed_count)).all()
    assert sorted(states) == [("reencrypt", "done", 0), ("rewrap", "done", 0)]
