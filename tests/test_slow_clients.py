"""Slow clients do not hold up anyone else: the real gateway (one gunicorn worker) keeps
answering other requests promptly while clients stall on a large download or trickle an
upload, and the stalled transfers end in the trail as aborted."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.stack import LiveGateway, Stack, build_stack
from tests.test_files_api import events, pdf_bytes

MIB = 1024 * 1024
STALLED_DOWNLOADS = 4
TRICKLING_UPLOADS = 2


@pytest.fixture
def one_worker(moto_endpoint: str, tmp_path: Path) -> Iterator[LiveGateway]:
    stack: Stack = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", moto_endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=1, threads=8)
    yield gw
    gw.stop()
    stack.close()


def raw_request(gw: LiveGateway, head: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(head.encode("latin-1"))
    return sock


def test_slow_clients_do_not_hold_up_the_others(one_worker: LiveGateway) -> None:
    gw = one_worker
    token = gw.stack.users["staff1"].token
    auth = {"Authorization": f"Bearer {token}"}
    big = pdf_bytes(24 * MIB, seed=41)
    small = pdf_bytes(50_000, seed=42)
    for path, data in (("uploads/slow/big.pdf", big), ("uploads/slow/small.pdf", small)):
        resp = requests.put(f"{gw.url}/api/v1/files/{path}", data=data, headers=auth, timeout=60)
        assert resp.status_code == 201, resp.text

    # clients that ask for the big file and then read nothing
    stalled = [raw_request(gw, f"GET /api/v1/files/uploads/slow/big.pdf HTTP/1.1\r\n"
                               f"Host: x\r\nAuthorization: Bearer {token}\r\n\r\n")
               for _ in range(STALLED_DOWNLOADS)]
    for sock in stalled:
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
    # clients that send an upload a few bytes at a time
    stop = threading.Event()
    trickles = [raw_request(gw, f"PUT /api/v1/files/uploads/slow/trickle-{i}.pdf HTTP/1.1\r\n"
                                f"Host: x\r\nAuthorization: Bearer {token}\r\n"
                                f"Content-Length: {MIB}\r\n\r\n%PDF-1.7\n")
                for i in range(TRICKLING_UPLOADS)]

    def trickle() -> None:
        while not stop.wait(0.2):
            for sock in trickles:
                sock.sendall(b"0123456789")

    feeder = threading.Thread(target=trickle)
    feeder.start()
    try:
        time.sleep(0.5)
        slowest = 0.0
        for i in range(10):
            started = time.monotonic()
            got = requests.get(f"{gw.url}/api/v1/files/uploads/slow/small.pdf", headers=auth,
                               timeout=30)
            put = requests.put(f"{gw.url}/api/v1/files/uploads/slow/quick-{i}.pdf",
                               data=small, headers=auth, timeout=30)
            slowest = max(slowest, time.monotonic() - started)
            assert got.status_code == 200 and got.content == small
            assert put.status_code == 201, put.text
        assert slowest < 3.0, slowest
    finally:
        stop.set()
        feeder.join()
        for sock in stalled + trickles:
            sock.close()

    # the stalled downloads end as aborted, with fewer bytes than the file
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        ends = [e for e in events(gw, object_path="uploads/slow/big.pdf", action="view")
                if e.outcome != "started"]
        if len(ends) >= STALLED_DOWNLOADS:
            break
        time.sleep(0.2)
    assert [e.outcome for e in ends] == ["aborted"] * STALLED_DOWNLOADS
    assert all(0 <= e.bytes < len(big) for e in ends)
    # the trickled uploads, cut short when their clients went away, were not stored
    while time.monotonic() < deadline:
        uploads = [e.outcome for e in events(gw, action="upload")
                   if (e.object_path or "").startswith("uploads/slow/trickle-")]
        if len(uploads) >= 2 * TRICKLING_UPLOADS:
            break
        time.sleep(0.2)
    assert sorted(uploads) == ["aborted"] * TRICKLING_UPLOADS + ["started"] * TRICKLING_UPLOADS
    listed = requests.get(f"{gw.url}/api/v1/files", params={"prefix": "uploads/slow/"},
                          headers=auth, timeout=30).json()
    paths = {o["path"] for o in (listed["objects"] if isinstance(listed, dict) else listed)}
    assert not any(p.startswith("uploads/slow/trickle-") for p in paths)


# -- the serving stack: connections cost no thread, and deadlines close the slow ones ---------

HALF_SENT = 300  # far more than any thread pool: the synchronous workers stalled at 40


@pytest.fixture
def short_deadlines(moto_endpoint: str, tmp_path: Path) -> Iterator[LiveGateway]:
    """The shipped serving configuration (one worker) with deadlines of about a second."""
    stack: Stack = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", moto_endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=1, extra_env={
        "GATEWAY_HEADER_TIMEOUT": "1", "GATEWAY_BODY_TIMEOUT": "1",
        "GATEWAY_BODY_MIN_RATE": "1000"})
    yield gw
    gw.stop()
    stack.close()


def closed_by_server(sock: socket.socket, feed: bytes, every: float, within: float) -> float:
    """Send ``feed`` one byte every ``every`` seconds until the server closes the connection;
    the seconds that took (the test fails if it is not closed ``within`` seconds)."""
    started = time.monotonic()
    sock.settimeout(every)
    for i in range(int(within / every)):
        try:
            sock.sendall(feed[i % len(feed):i % len(feed) + 1])
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    raise AssertionError(f"the server kept a trickling connection open for {within} s")


def test_half_sent_requests_do_not_block_healthz(one_worker: LiveGateway) -> None:
    gw = one_worker
    socks = [raw_request(gw, "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: half")
             for _ in range(HALF_SENT)]
    idle = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(HALF_SENT)]
    try:
        for _ in range(5):
            resp = requests.get(f"{gw.url}/healthz", timeout=10)
            assert resp.status_code == 200
        token = gw.stack.users["staff1"].token
        listed = requests.get(f"{gw.url}/api/v1/files", timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200
    finally:
        for sock in socks + idle:
            sock.close()


def test_header_deadline_closes_trickling_heads(short_deadlines: LiveGateway) -> None:
    gw = short_deadlines
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:
        # a byte every 0.2 s: the connection is never idle, but its head never ends
        assert closed_by_server(sock, head, every=0.2, within=15) < 10
    with socket.create_connection(("127.0.0.1", gw.port)) as sock:  # and an idle one
        sock.settimeout(15)
        assert sock.recv(10) == b""
    assert requests.get(f"{gw.url}/healthz", timeout=10).status_code == 200


def test_body_deadline_aborts_trickling_uploads(short_deadlines: LiveGateway) -> None:
    gw = short_deadlines
    token = gw.stack.users["staff1"].token
    sock = raw_request(gw, f"PUT /api/v1/files/uploads/slow/drip.pdf HTTP/1.1\r\nHost: x\r\n"
                           f"Authorization: Bearer {token}\r\nContent-Length: {MIB}\r\n\r\n"
                           "%PDF-1.7\n" + "x" * 5000)
    with sock:
        # about 50 bytes a second, far below the 1000 bytes a second the gateway demands
        assert closed_by_server(sock, b"0123456789", every=0.2, within=20) < 15
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ends = [e for e in events(gw, object_path="uploads/slow/drip.pdf", action="upload")
                if e.outcome != "started"]
        if ends:
            break
        time.sleep(0.2)
    assert [e.outcome for e in ends] == ["aborted"]
    assert ends[0].bytes < MIB and "too slowly" in (ends[0].detail or ""), ends[0].detail
    got = requests.get(f"{gw.url}/api/v1/files/uploads/slow/drip.pdf", timeout=10,
                       headers={"Authorization": f"Bearer {token}"})
    assert got.status_code == 404
    # a prompt upload on the same gateway is stored as usual
    put = requests.put(f"{gw.url}/api/v1/files/uploads/slow/prompt.pdf", timeout=30,
                       data=pdf_bytes(200_000, seed=3), headers={"Authorization": f"Bearer {token}"})
    assert put.status_code == 201, put.text
