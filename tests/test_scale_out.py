"""Two gateway processes (gunicorn, as shipped) on one PostgreSQL database and one bucket: what
one stores the other serves, a key rotation run while both serve loses nothing, both write one
audit chain that verifies, and the sign-in throttle and the idle logout hold across both."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from gateway.db.models import AuditEvent, RateLimitCounter, StoredObject
from tests.services import PostgresServer, _psycopg
from tests.stack import PASSWORD, ROOT, LiveGateway, Stack, build_stack
from tests.test_files_api import pdf_bytes
from tests.test_throttle import _live_sign_in

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

IDLE_SECONDS = 3


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    psycopg = _psycopg()
    name = f"gw_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def two(pg_database: str, moto_endpoint: str,
        tmp_path: Path) -> Iterator[tuple[Stack, LiveGateway, LiveGateway]]:
    stack = build_stack(pg_database, moto_endpoint, tmp_path,
                        GATEWAY_IDLE_LOGOUT_SECONDS=str(IDLE_SECONDS))
    a, b = LiveGateway.several(stack, [tmp_path / "a.log", tmp_path / "b.log"], workers=1)
    yield stack, a, b
    a.stop()
    b.stop()
    stack.close()


def auth(stack: Stack, who: str = "staff1") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.users[who].token}"}


def command(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, timeout=300,
                            env=dict(os.environ, **stack.env), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_upload_through_one_download_through_the_other(two) -> None:
    stack, a, b = two
    data = pdf_bytes(9 * 1024 * 1024 + 5, seed=21)
    put = requests.put(f"{a.url}/api/v1/files/uploads/scale/one.pdf", data=data,
                       headers=auth(stack), timeout=60)
    assert put.status_code == 201, put.text
    got = requests.get(f"{b.url}/api/v1/files/uploads/scale/one.pdf", headers=auth(stack),
                       timeout=60)
    assert got.status_code == 200 and got.content == data
    part = requests.get(f"{b.url}/api/v1/files/uploads/scale/one.pdf", timeout=60,
                        headers={**auth(stack), "Range": "bytes=7000000-7000099"})
    assert part.status_code == 206 and part.content == data[7000000:7000100]
    deleted = requests.delete(f"{b.url}/api/v1/files/uploads/scale/one.pdf",
                              headers=auth(stack), timeout=60)
    assert deleted.status_code == 204
    assert requests.get(f"{a.url}/api/v1/files/uploads/scale/one.pdf", headers=auth(stack),
                        timeout=60).status_code == 404


def test_rotation_through_one_while_the_other_serves(two) -> None:
    stack, a, b = two
    files = {f"uploads/scale/rot-{i}.pdf": pdf_bytes(300_000 + i, seed=30 + i) for i in range(8)}
    for path, data in files.items():
        assert requests.put(f"{a.url}/api/v1/files/{path}", data=data, headers=auth(stack),
                            timeout=60).status_code == 201
    stop = threading.Event()
    results: list[tuple[int, bool]] = []

    def serve() -> None:
        while not stop.is_set():
            for path, data in files.items():
                got = requests.get(f"{b.url}/api/v1/files/{path}", headers=auth(stack),
                                   timeout=60)
                results.append((got.status_code, got.content == data))

    reader = threading.Thread(target=serve)
    reader.start()
    try:
        command(stack, "keys", "rotate", "--org", stack.org1)
        command(stack, "keys", "rewrap", "--org", stack.org1)
        time.sleep(0.5)
    finally:
        stop.set()
        reader.join()
    assert results and all(r == (200, True) for r in results), \
        [r for r in results if r != (200, True)][:5]
    with stack.services.sessions() as s:
        versions = set(s.scalars(select(StoredObject.key_version).where(
            StoredObject.org_id == stack.org1, StoredObject.deleted_at.is_(None))))
    assert versions == {2}
    for gw in (a, b):  # both serve the rewrapped objects, and store new ones under version 2
        for path, data in files.items():
            assert requests.get(f"{gw.url}/api/v1/files/{path}", headers=auth(stack),
                                timeout=60).content == data
        new = requests.put(f"{gw.url}/api/v1/files/uploads/scale/after-{gw.port}.pdf",
                           data=pdf_bytes(1000, seed=3), headers=auth(stack), timeout=60)
        assert new.status_code == 201 and new.json()["key_version"] == 2


def test_concurrent_audit_writes_from_both_verify(two) -> None:
    stack, a, b = two
    data = pdf_bytes(20_000, seed=40)
    errors: list[int] = []
    counts = {"requests": 0}
    lock = threading.Lock()

    def client(gw: LiveGateway, n: int) -> None:
        for i in range(12):
            path = f"uploads/scale/audit-{gw.port}-{n}-{i}.pdf"
            for resp in (
                requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=auth(stack),
                             timeout=60),
                requests.get(f"{gw.url}/api/v1/files/{path}", headers=auth(stack), timeout=60),
                requests.get(f"{gw.url}/api/v1/files", params={"prefix": "uploads/scale/"},
                             headers=auth(stack), timeout=60),
            ):
                with lock:
                    counts["requests"] += 1
                if resp.status_code >= 400:
                    errors.append(resp.status_code)

    with stack.services.sessions() as s:
        before = s.scalar(select(func.count()).select_from(AuditEvent))
        first = s.scalar(select(func.max(AuditEvent.id))) or 0
    threads = [threading.Thread(target=client, args=(gw, n)) for gw in (a, b) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    verified = command(stack, "audit", "verify")
    assert "intact" in verified.stdout.lower() or "ok" in verified.stdout.lower(), verified.stdout
    with stack.services.sessions() as s:
        rows = s.execute(select(AuditEvent.chain, AuditEvent.seq)).all()
        after = len(rows)
    # one chain per organisation, without gaps or twins, however the two processes interleaved
    by_chain: dict[str, list[int]] = {}
    for chain, seq in rows:
        by_chain.setdefault(chain, []).append(seq)
    for seqs in by_chain.values():
        assert sorted(seqs) == list(range(min(seqs), min(seqs) + len(seqs)))
    # every upload and download writes two rows (started, completed), a listing one
    with stack.services.sessions() as s:
        new = s.execute(select(AuditEvent.action, AuditEvent.outcome, func.count())
                        .where(AuditEvent.id > first)
                        .group_by(AuditEvent.action, AuditEvent.outcome)).all()
    made = sum(n for action, _, n in new if action != "audit_verify")  # verify's own row
    assert made == after - before - 1 == counts["requests"] // 3 * 5, new


def test_throttle_and_idle_logout_hold_across_both(two) -> None:
    stack, a, b = two
    http = requests.Session()
    statuses = [_live_sign_in((a, b)[i % 2], http, "nobody@example.test", "wrong")
                for i in range(12)]
    assert statuses == [401] * 10 + [429] * 2

    # a session signed in on one is the same session on the other, and ends on both when idle
    user = requests.Session()
    with stack.services.sessions() as s:  # the previous part throttled this address: clear it
        s.execute(RateLimitCounter.__table__.delete())
        s.commit()
    assert _live_sign_in(a, user, stack.users["staff1"].email, PASSWORD) in (302, 303)
    for cookie in user.cookies:  # the Secure session cookie over loopback, as browsers allow
        cookie.secure = False
    assert user.get(f"{b.url}/api/v1/files", timeout=30).status_code == 200
    saved = user.cookies.copy()  # the freshest cookie, replayed below
    time.sleep(IDLE_SECONDS + 1.5)
    expired = user.get(f"{b.url}/api/v1/files", timeout=30)
    assert expired.status_code == 401
    replay = requests.get(f"{a.url}/api/v1/files", cookies=saved, timeout=30)
    assert replay.status_code == 401
