"""Faults under the real gateway (gunicorn, as shipped): each shows the refusal the user sees,
what the trail records, and that nothing is lost or left behind.

* the S3 endpoint goes away mid-upload and mid-download: the endpoint the gateway talks to is
  a relay process in front of moto's server, killed by the test (the bucket's state lives on in
  moto, so what the failure left behind can be reconciled and checked);
* the KMS holding the master key goes away: a moto server of its own, stopped by the test;
* PostgreSQL restarts under traffic: a cluster of the test's own;
* the client goes away mid-upload and mid-download.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests

from tests.services import _PostgresCluster, free_port
from tests.stack import ROOT, LiveGateway, Stack, build_stack
from tests.test_files_api import events, pdf_bytes

MIB = 1024 * 1024

RELAY = r"""
import socket, sys, threading
listen, target = int(sys.argv[1]), int(sys.argv[2])
server = socket.create_server(("127.0.0.1", listen))

def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", target))
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    pump(upstream, client)

while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


class Relay:
    """A TCP relay process on a fixed port in front of ``target``: the S3 endpoint to kill."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", RELAY, str(self.port),
                                      str(self.target_port)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the relay did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def moto_port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def s3_relay(moto_endpoint: str) -> Iterator[Relay]:
    relay = Relay(moto_port(moto_endpoint))
    yield relay
    relay.kill()


@pytest.fixture
def behind_relay(s3_relay: Relay, moto_endpoint: str, tmp_path: Path) -> Iterator[LiveGateway]:
    """A gateway whose S3 endpoint is the relay; the bucket is reached directly by the test."""
    stack: Stack = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", s3_relay.endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=1)
    yield gw
    gw.stop()
    stack.close()


def bucket_state(moto_endpoint: str, bucket: str) -> tuple[list[str], list[str]]:
    """(object keys, keys of open multipart uploads) in ``bucket``, read directly."""
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return keys, uploads


def gateway_command(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=ROOT, timeout=120,
                          env=dict(os.environ, **stack.env), capture_output=True, text=True)


def auth(gw: LiveGateway, who: str = "staff1") -> dict[str, str]:
    return {"Authorization": f"Bearer {gw.stack.users[who].token}"}


def catalogued(gw: LiveGateway) -> set[str]:
    listed = requests.get(f"{gw.url}/api/v1/files", headers=auth(gw), timeout=30)
    assert listed.status_code == 200, listed.text
    return {o["path"] for o in listed.json()["objects"]}


# -- S3 endpoint gone ------------------------------------------------------------------------


@pytest.mark.slow
def test_s3_gone_mid_upload(behind_relay: LiveGateway, s3_relay: Relay,
                            moto_endpoint: str) -> None:
    gw = behind_relay
    bucket = gw.stack.settings.s3_bucket
    data = pdf_bytes(30 * MIB, seed=5)

    def body() -> Iterator[bytes]:
        for i in range(0, len(data), MIB):
            if i == 14 * MIB:  # two parts sent, the endpoint dies under the third
                s3_relay.kill()
            yield data[i:i + MIB]

    resp = requests.put(f"{gw.url}/api/v1/files/uploads/faults/s3-upload.pdf", data=body(),
                        headers=auth(gw), timeout=120)
    assert resp.status_code == 502, resp.text
    assert resp.json()["error"]["code"] == "storage_failure"
    ups = [e for e in events(gw, action="upload", object_path="uploads/faults/s3-upload.pdf")]
    assert [e.outcome for e in ups] == ["started", "aborted"]
    assert ups[-1].http_status == 502 and 0 < ups[-1].bytes < len(data)  # the bytes taken

    # the endpoint is back: no catalog row, and reconcile leaves no upload open
    s3_relay.start()
    assert "uploads/faults/s3-upload.pdf" not in catalogued(gw)
    fixed = gateway_command(gw.stack, "storage", "reconcile", "--fix")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    keys, uploads = bucket_state(moto_endpoint, bucket)
    assert uploads == [] and keys == []
    # and the gateway serves again without a restart
    again = requests.put(f"{gw.url}/api/v1/files/uploads/faults/s3-upload.pdf", data=data,
                         headers=auth(gw), timeout=120)
    assert again.status_code == 201, again.text


@pytest.mark.slow
def test_s3_gone_mid_download(behind_relay: LiveGateway, s3_relay: Relay) -> None:
    gw = behind_relay
    data = pdf_bytes(40 * MIB, seed=6)
    path = "uploads/faults/s3-download.pdf"
    assert requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=auth(gw),
                        timeout=120).status_code == 201

    got = bytearray()
    with requests.get(f"{gw.url}/api/v1/files/{path}", headers=auth(gw), stream=True,
                      timeout=60) as resp:
        assert resp.status_code == 200
        with pytest.raises(requests.RequestException):
            for chunk in resp.iter_content(256 * 1024):
                got += chunk
                if len(got) >= 2 * MIB and s3_relay.proc.poll() is None:
                    s3_relay.kill()
    assert 2 * MIB <= len(got) < len(data)  # cut short: never a complete-looking copy
    assert bytes(got) == data[:len(got)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ends = [e for e in events(gw, object_path=path, action="view") if e.outcome != "started"]
        if ends:
            break
        time.sleep(0.2)
    assert [e.outcome for e in ends] == ["aborted"] and ends[0].bytes < len(data)

    # while the endpoint is down a download is refused before any byte
    refused = requests.get(f"{gw.url}/api/v1/files/{path}", headers=auth(gw), timeout=60)
    assert refused.status_code == 502 and refused.json()["error"]["code"] == "storage_failure"
    s3_relay.start()
    again = requests.get(f"{gw.url}/api/v1/files/{path}", headers=auth(gw), timeout=60)
    assert again.status_code == 200 and hashlib.sha256(again.content).digest() == \
        hashlib.sha256(data).digest()


# -- KMS gone --------------------------------------------------------------------------------


@pytest.mark.slow
def test_kms_unavailable(moto_endpoint: str, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    from bench._common import MotoServer

    kms_server = MotoServer(tmp_path / "kms.log")
    gw = None
    stack = None
    try:
        monkeypatch.setenv("GATEWAY_KMS_ENDPOINT_URL", kms_server.endpoint)
        kms = boto3.client("kms", endpoint_url=kms_server.endpoint, region_name="us-east-1")
        key_id = kms.create_key(Description="gateway master")["KeyMetadata"]["Arn"]
        extra = {"GATEWAY_MASTER_KEY": f"aws-kms:{key_id}",
                 "GATEWAY_KMS_ENDPOINT_URL": kms_server.endpoint}
        stack = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", moto_endpoint, tmp_path, **extra)
        gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=1, extra_env=extra)
        data = pdf_bytes(300_000, seed=7)
        path = "uploads/faults/kms.pdf"
        assert requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=auth(gw),
                            timeout=60).status_code == 201
        gw.stop()
        kms_server.stop()  # the key service goes away; the gateway starts without cached keys
        gw = LiveGateway(stack, tmp_path / "gunicorn2.log", workers=1, extra_env=extra)
        before = len(events(gw))
        got = requests.get(f"{gw.url}/api/v1/files/{path}", headers=auth(gw), timeout=120)
        assert got.status_code == 503, got.text
        assert got.json()["error"]["code"] in ("keyring_unavailable", "audit_unavailable"), \
            got.text
        assert data[:1000] not in got.content
        up = requests.put(f"{gw.url}/api/v1/files/uploads/faults/kms-2.pdf", data=data,
                          headers=auth(gw), timeout=120)
        assert up.status_code == 503, up.text
        ready = requests.get(f"{gw.url}/readyz", timeout=120)
        assert ready.status_code == 503 and ready.json()["checks"]["keyring"] == "unavailable"
        # nothing served, nothing stored: no completed row, no new object
        after = events(gw)[before:]
        assert not [e for e in after if e.outcome in ("completed", "success")]
        assert "uploads/faults/kms-2.pdf" not in {o.path for o in _objects(stack)}
    finally:
        if gw is not None:
            gw.stop()
        if stack is not None:
            stack.close()
        kms_server.stop()


def _objects(stack: Stack) -> list:
    from sqlalchemy import select

    from gateway.db.models import StoredObject

    with stack.services.sessions() as s:
        return list(s.scalars(select(StoredObject)))


# -- PostgreSQL restarted --------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[tuple[_PostgresCluster, str]]:
    import psycopg

    cluster = _PostgresCluster()
    try:
        server = cluster.start()
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE gw")
        yield cluster, server.url()
    finally:
        cluster.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_postgres_restart_under_traffic(own_postgres: tuple[_PostgresCluster, str],
                                        moto_endpoint: str, tmp_path: Path) -> None:
    cluster, url = own_postgres
    stack = build_stack(url, moto_endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=2)
    statuses: list[int] = []
    stop = threading.Event()
    data = pdf_bytes(50_000, seed=8)

    def traffic(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = requests.put(f"{gw.url}/api/v1/files/uploads/faults/pg-{n}-{i}.pdf", data=data,
                                 headers=auth(gw), timeout=30)
                statuses.append(r.status_code)
                r = requests.get(f"{gw.url}/api/v1/files", headers=auth(gw), timeout=30)
                statuses.append(r.status_code)
            except requests.RequestException:
                statuses.append(0)

    clients = [threading.Thread(target=traffic, args=(n,)) for n in range(4)]
    try:
        try:
            for t in clients:
                t.start()
            time.sleep(1.5)
            restarted = cluster._run([cluster.pg_ctl, "-D", str(cluster.data), "-m", "fast",
                                      "-w", "-l", str(cluster.data.parent / "restart.log"),
                                      "restart"])
            assert restarted.returncode == 0, restarted.stderr
            time.sleep(2.0)
            mark = len(statuses)
            time.sleep(2.0)
        finally:
            stop.set()
            for t in clients:
                t.join()
        during, recovered = statuses[:mark], statuses[mark:]
        assert set(during) <= {200, 201, 503}, sorted(set(during))  # refused, never a 500
        assert recovered and set(recovered) <= {200, 201}, recovered  # no gateway restart
        # the trail written across the restart verifies
        verified = gateway_command(stack, "audit", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        gw.stop()
        stack.close()


# -- the client gone -------------------------------------------------------------------------


@pytest.fixture
def live_one(moto_endpoint: str, tmp_path: Path) -> Iterator[LiveGateway]:
    stack = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", moto_endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=1)
    yield gw
    gw.stop()
    stack.close()


def wait_for_end(gw: LiveGateway, path: str, action: str) -> list:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ends = [e for e in events(gw, object_path=path, action=action) if e.outcome != "started"]
        if ends:
            return ends
        time.sleep(0.2)
    raise AssertionError(f"no closing {action} row for {path}")


def test_client_gone_mid_upload(live_one: LiveGateway, moto_endpoint: str) -> None:
    gw = live_one
    path = f"uploads/faults/gone-{secrets.token_hex(4)}.pdf"
    data = pdf_bytes(20 * MIB, seed=9)
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.sendall((f"PUT /api/v1/files/{path} HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {gw.stack.users['staff1'].token}\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n").encode())
    sock.sendall(data[:13 * MIB])  # more than two parts, then the client vanishes
    time.sleep(0.5)
    sock.close()
    ends = wait_for_end(gw, path, "upload")
    assert [e.outcome for e in ends] == ["aborted"]
    assert 6 * MIB <= ends[0].bytes <= 13 * MIB  # the bytes the gateway had taken
    assert path not in catalogued(gw)
    time.sleep(0.5)
    keys, uploads = bucket_state(moto_endpoint, gw.stack.settings.s3_bucket)
    assert uploads == [] and keys == []  # the multipart upload was aborted


def test_client_gone_mid_download(live_one: LiveGateway) -> None:
    gw = live_one
    path = "uploads/faults/gone-download.pdf"
    data = pdf_bytes(30 * MIB, seed=10)
    assert requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=auth(gw),
                        timeout=120).status_code == 201
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.sendall((f"GET /api/v1/files/{path} HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {gw.stack.users['staff1'].token}\r\n\r\n").encode())
    got = 0
    while got < 3 * MIB:
        got += len(sock.recv(256 * 1024))
    sock.close()
    ends = wait_for_end(gw, path, "view")
    assert [e.outcome for e in ends] == ["aborted"]
    assert ends[0].bytes < len(data)
    assert "went away" in (ends[0].detail or "") or "Error" in (ends[0].detail or "")
    # the gateway is unharmed
    assert requests.get(f"{gw.url}/healthz", timeout=10).status_code == 200


