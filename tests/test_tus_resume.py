"""Resuming with a real tus client (tuspy) through a connection that drops mid-PATCH, on one
gateway and across two gateway processes sharing PostgreSQL and the bucket; a gateway killed
mid-PATCH; expiry leaving nothing behind; no plaintext spooled to a temporary directory."""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import pytest
import requests
from sqlalchemy import select, update
from tusclient import client as tus

from gateway.db.models import AuditEvent, ResumableUpload, StoredObject, utcnow
from tests.relay import CuttingRelay
from tests.stack import ROOT, LiveGateway, Stack, build_stack

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
MiB = 1024 * 1024
MARKER = b"PATIENT-JANE-ROE-1961-"

pytestmark = pytest.mark.postgres


def pdf_bytes(size: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    body = bytearray(PDF)
    while len(body) < size:
        body += MARKER + rnd.randbytes(4096)
    return bytes(body[:size])


@pytest.fixture(scope="module")
def shared(postgres_server, moto_endpoint: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    """A PostgreSQL stack, and the temporary directory its gateways must leave empty."""
    import secrets

    import psycopg

    name = f"gw_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    tmp = tmp_path_factory.mktemp("tus-resume")
    spool = tmp / "spool"
    spool.mkdir()
    stack = build_stack(postgres_server.url(name), moto_endpoint, tmp, TMPDIR=str(spool))
    yield stack, tmp
    stack.close()


@pytest.fixture(scope="module")
def gateways(shared: tuple[Stack, Path]) -> Iterator[tuple[LiveGateway, LiveGateway]]:
    stack, tmp = shared
    one = LiveGateway(stack, tmp / "one.log")
    two = LiveGateway(stack, tmp / "two.log")
    yield one, two
    one.stop()
    two.stop()


def bearer(stack: Stack, who: str = "staff1") -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.users[who].token}"}


def stored(stack: Stack, path: str) -> StoredObject | None:
    with stack.services.sessions() as s:
        return s.scalar(select(StoredObject).where(
            StoredObject.org_id == stack.org1, StoredObject.path == path,
            StoredObject.deleted_at.is_(None)))


def offset_of(stack: Stack, upload_url: str) -> int:
    with stack.services.sessions() as s:
        row = s.get(ResumableUpload, upload_url.rsplit("/", 1)[-1])
        assert row is not None
        return row.offset


def uploader(url: str, stack: Stack, data: bytes, path: str, *, chunk: int,
             upload_url: str | None = None) -> tus.Uploader:
    c = tus.TusClient(url + "/api/v1/uploads", headers=bearer(stack))
    return c.uploader(file_stream=io.BytesIO(data), chunk_size=chunk, metadata={"path": path},
                      retries=0, url=upload_url)


def cut_then_resume(first: LiveGateway, second: LiveGateway, stack: Stack, path: str,
                    chunk: int, seed: int) -> None:
    data = pdf_bytes(23 * MiB + 4321, seed)
    relay = CuttingRelay(first.port)
    try:
        up = uploader(relay.url, stack, data, path, chunk=chunk)
        relay.cut_after(11 * MiB)  # in the middle of a PATCH
        with pytest.raises(Exception):  # noqa: B017  (the client sees its connection drop)
            up.upload()
        assert relay.cuts == 1
        assert up.url is not None
        time.sleep(0.5)  # the gateway notices the dropped connection and stores what came
        kept = offset_of(stack, up.url)
        assert 0 < kept < len(data)
        assert stored(stack, path) is None  # unfinished: listed nowhere
        # resume: the client asks where the upload stands (HEAD) and sends the rest
        again = uploader(second.url, stack, data, path, chunk=chunk,
                         upload_url=up.url.replace(relay.url, second.url))
        again.upload()
    finally:
        relay.close()
    obj = stored(stack, path)
    assert obj is not None and obj.sha256 == hashlib.sha256(data).hexdigest()
    got = requests.get(f"{first.url}/api/v1/files/{path}", headers=bearer(stack), timeout=60)
    assert got.status_code == 200 and got.content == data


def test_tuspy_resumes_on_the_same_gateway_after_a_cut(gateways, shared) -> None:
    one, _ = gateways
    cut_then_resume(one, one, shared[0], "uploads/tus/resume-same.pdf", chunk=8 * MiB, seed=1)


def test_tuspy_resumes_on_another_gateway_after_a_cut(gateways, shared) -> None:
    one, two = gateways
    cut_then_resume(one, two, shared[0], "uploads/tus/resume-other.pdf", chunk=30 * MiB, seed=2)


def test_what_was_acknowledged_survives_a_killed_gateway(gateways, shared) -> None:
    stack, tmp = shared
    _, two = gateways
    victim = LiveGateway(stack, tmp / "victim.log", workers=1)
    data = pdf_bytes(40 * MiB, 3)
    path = "uploads/tus/killed.pdf"
    created = requests.post(f"{victim.url}/api/v1/uploads", timeout=30, headers={
        **bearer(stack), "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
        "Upload-Metadata": "path " + base64.b64encode(path.encode()).decode()})
    location = created.headers["Location"]
    upload_url = victim.url + location

    class SlowBody(io.BytesIO):
        """The file, read at about 50 MiB/s, with its length known (a Content-Length PATCH)."""

        def __len__(self) -> int:
            return len(data)

        def read(self, n: int | None = -1) -> bytes:
            time.sleep(0.02)
            return super().read(min(n, MiB) if n and n > 0 else MiB)

    def send() -> None:
        try:
            requests.patch(upload_url, data=SlowBody(data), timeout=60, headers={
                **bearer(stack), "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream"})
        except requests.RequestException:
            pass

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 30
    while offset_of(stack, upload_url) < 12 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(victim.proc.pid, signal.SIGKILL)  # the master; its worker dies with the socket
    subprocess.run(["pkill", "-9", "-f", f"127.0.0.1:{victim.port}"], check=False)
    sender.join(30)
    victim.stop()
    acknowledged = offset_of(stack, upload_url)
    assert acknowledged >= 12 * MiB, "parts stored before the crash are acknowledged"
    # the lock the dead request held lapses; meanwhile the other gateway says 423
    with stack.services.sessions() as s:
        s.execute(update(ResumableUpload).where(ResumableUpload.id == location.rsplit("/", 1)[-1])
                  .values(locked_until=utcnow() - timedelta(seconds=1)))
        s.commit()
    resume = uploader(two.url, stack, data, path, chunk=16 * MiB,
                      upload_url=two.url + location)
    assert resume.get_offset() == acknowledged
    resume.upload()
    obj = stored(stack, path)
    assert obj is not None and obj.sha256 == hashlib.sha256(data).hexdigest()


def test_no_plaintext_spooled_to_the_temporary_directory(gateways, shared) -> None:
    stack, tmp = shared
    spool = tmp / "spool"
    found = []
    for root, _, files in os.walk(spool):
        for name in files:
            p = Path(root) / name
            try:
                if MARKER in p.read_bytes():
                    found.append(str(p))
            except OSError:
                continue
    assert found == []


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, text=True,
                          env=dict(os.environ, **stack.env), capture_output=True, timeout=120)


def test_expired_uploads_leave_nothing_behind(gateways, shared) -> None:
    stack, _ = shared
    one, _ = gateways
    data = pdf_bytes(15 * MiB, 4)
    up = uploader(one.url, stack, data, "uploads/tus/expires.pdf", chunk=9 * MiB)
    up.upload_chunk()  # 9 MiB: one part stored and a tail kept in an interim object
    upload_id = up.url.rsplit("/", 1)[-1]
    with stack.services.sessions() as s:
        row = s.get(ResumableUpload, upload_id)
        assert row.multipart_id and row.interim_size > 0
        s3_key, multipart_id = row.s3_key, row.multipart_id
    store = stack.services.store
    assert run_cli(stack, "storage", "reconcile").returncode == 0  # in progress, not orphans
    with stack.services.sessions() as s:
        s.execute(update(ResumableUpload).where(ResumableUpload.id == upload_id)
                  .values(expires_at=utcnow() - timedelta(minutes=1)))
        s.commit()
    head = requests.head(up.url, headers={**bearer(stack), "Tus-Resumable": "1.0.0"}, timeout=10)
    assert head.status_code == 410
    dry = run_cli(stack, "uploads", "expire", "--dry-run")
    assert dry.returncode == 0 and upload_id in dry.stdout, dry.stderr
    done = run_cli(stack, "uploads", "expire")
    assert done.returncode == 0 and "1 unfinished upload(s) expired" in done.stdout, done.stderr
    assert not [k for k, _ in store.list_keys(stack.org1) if k.startswith(s3_key)]
    assert multipart_id not in {u for _, u in store.list_multipart_uploads("")}
    with stack.services.sessions() as s:
        rows = list(s.scalars(select(AuditEvent).where(AuditEvent.action == "upload_expire")))
    assert any(upload_id in (r.detail or "") for r in rows)
    clean = run_cli(stack, "storage", "reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "0 orphan object(s), 0 missing object(s), 0 open upload(s)" in clean.stdout
    with stack.services.sessions() as s:
        rows = list(s.scalars(select(AuditEvent).where(
            AuditEvent.action == "storage_reconcile", AuditEvent.org_id == stack.org1)
            .order_by(AuditEvent.id)))
    assert rows and json.loads(rows[-1].detail)["clean"] is True  # the admin console shows it
