"""The file API driven over HTTP against the real gateway (gunicorn + moto's S3 server)."""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
from typing import Iterator

import pytest
import requests
from sqlalchemy import select

from gateway.db.models import AuditEvent, StoredObject
from tests.stack import LiveGateway, build_stack
from tests.stack import audit_events as events

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


def pdf_bytes(size: int, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    return PDF + rnd.randbytes(max(0, size - len(PDF)))


def auth(live: LiveGateway, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.stack.users[who].token}"}


def put(live: LiveGateway, who: str, path: str, data: bytes | Iterator[bytes], **params: str):
    return requests.put(f"{live.url}/api/v1/files/{path}", data=data, headers=auth(live, who),
                        params=params, timeout=60)


def get(live: LiveGateway, who: str, path: str, headers: dict[str, str] | None = None, **params):
    return requests.get(f"{live.url}/api/v1/files/{path}",
                        headers={**auth(live, who), **(headers or {})}, params=params, timeout=60)


def test_put_get_round_trip_multi_segment(live: LiveGateway) -> None:
    data = pdf_bytes(3 * 1024 * 1024 + 17)
    resp = put(live, "staff1", "uploads/forms/201/field_7/scan.pdf", data)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert set(body) == {"id", "path", "size", "content_type", "sha256", "encryption",
                         "key_version", "created_at", "created_by"}
    assert body["size"] == len(data) and body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "application/pdf" and body["encryption"] == "cse"
    got = get(live, "staff1", "uploads/forms/201/field_7/scan.pdf")
    assert got.status_code == 200 and got.content == data
    assert got.headers["Cache-Control"] == "no-store"
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"].startswith("inline")
    assert got.headers["ETag"] == f'"{body["sha256"]}"'
    dl = get(live, "staff1", "uploads/forms/201/field_7/scan.pdf", download="1")
    assert dl.headers["Content-Disposition"].startswith("attachment")
    assert "filename=\"scan.pdf\"" in dl.headers["Content-Disposition"]


def test_bucket_holds_only_ciphertext_under_opaque_keys(live: LiveGateway) -> None:
    data = pdf_bytes(200_000, seed=9) + b"PATIENT-NAME-Jane-Doe"
    resp = put(live, "staff1", "documents/jane-doe/report.pdf", data)
    assert resp.status_code == 201
    store = live.stack.services.store
    keys = dict(store.list_keys(live.stack.org1 + "/documents/"))
    with live.stack.services.sessions() as s:
        obj = s.get(StoredObject, resp.json()["id"])
    assert obj.s3_key in keys
    assert "jane" not in obj.s3_key.lower() and "report" not in obj.s3_key
    stored = store.get_bytes(obj.s3_key)
    assert b"PATIENT-NAME" not in stored and data[:4096] not in stored
    assert not any("jane" in v.lower() or "report" in v for v in store.head(obj.s3_key).metadata.values())


def test_multipart_form_upload(live: LiveGateway) -> None:
    data = pdf_bytes(2 * 1024 * 1024, seed=3)
    resp = requests.post(f"{live.url}/api/v1/files", headers=auth(live, "staff1"),
                         data={"path": "uploads/forms/9/f/form.pdf"},
                         files={"file": ("form.pdf", data, "application/pdf")}, timeout=60)
    assert resp.status_code == 201, resp.text
    assert get(live, "staff1", "uploads/forms/9/f/form.pdf").content == data


def test_chunked_upload_without_content_length(live: LiveGateway) -> None:
    data = pdf_bytes(1_500_000, seed=4)
    pieces = (data[i:i + 100_000] for i in range(0, len(data), 100_000))
    resp = put(live, "staff1", "uploads/chunked.pdf", pieces)
    assert resp.status_code == 201, resp.text
    assert get(live, "staff1", "uploads/chunked.pdf").content == data


def test_conflict_and_overwrite(live: LiveGateway) -> None:
    assert put(live, "staff1", "uploads/c.pdf", pdf_bytes(1000)).status_code == 201
    again = put(live, "staff1", "uploads/c.pdf", pdf_bytes(1000, seed=2))
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    new = pdf_bytes(1200, seed=5)
    assert put(live, "staff1", "uploads/c.pdf", new, overwrite="true").status_code == 201
    assert get(live, "staff1", "uploads/c.pdf").content == new
    other = put(live, "staff1b", "uploads/c.pdf", pdf_bytes(10), overwrite="true")
    assert other.status_code == 403


def test_ranges(live: LiveGateway) -> None:
    data = pdf_bytes(2 * 1024 * 1024 + 333, seed=6)
    assert put(live, "staff1", "uploads/range.pdf", data).status_code == 201
    rnd = random.Random(42)
    for _ in range(12):
        a = rnd.randrange(len(data))
        b = rnd.randrange(a, len(data))
        r = get(live, "staff1", "uploads/range.pdf", {"Range": f"bytes={a}-{b}"})
        assert r.status_code == 206
        assert r.content == data[a:b + 1]
        assert r.headers["Content-Range"] == f"bytes {a}-{b}/{len(data)}"
    suffix = get(live, "staff1", "uploads/range.pdf", {"Range": "bytes=-500"})
    assert suffix.status_code == 206 and suffix.content == data[-500:]
    past = get(live, "staff1", "uploads/range.pdf", {"Range": f"bytes={len(data) - 10}-{len(data) + 100}"})
    assert past.status_code == 206 and past.content == data[-10:]
    bad = get(live, "staff1", "uploads/range.pdf", {"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416 and bad.headers["Content-Range"] == f"bytes */{len(data)}"
    stale = get(live, "staff1", "uploads/range.pdf", {"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.content == data
    etag = suffix.headers["ETag"]
    fresh = get(live, "staff1", "uploads/range.pdf", {"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == data[:10]


def test_head_matches_get(live: LiveGateway) -> None:
    data = PNG + os.urandom(5000)
    assert put(live, "staff1", "uploads/p/photo.png", data).status_code == 201
    h = requests.head(f"{live.url}/api/v1/files/uploads/p/photo.png", headers=auth(live, "staff1"),
                      timeout=30)
    assert h.status_code == 200 and h.headers["Content-Length"] == str(len(data))
    assert h.headers["Content-Type"] == "image/png" and h.content == b""


def test_list_and_delete(live: LiveGateway) -> None:
    for i in range(3):
        assert put(live, "staff1", f"signatures/s{i}/sig.png", PNG + bytes([i]) * 100).status_code == 201
    listing = requests.get(f"{live.url}/api/v1/files", params={"prefix": "signatures/"},
                           headers=auth(live, "staff1"), timeout=30).json()["objects"]
    assert [o["path"] for o in listing] == [f"signatures/s{i}/sig.png" for i in range(3)]
    assert requests.delete(f"{live.url}/api/v1/files/signatures/s0/sig.png",
                           headers=auth(live, "staff1b"), timeout=30).status_code == 403
    assert requests.delete(f"{live.url}/api/v1/files/signatures/s0/sig.png",
                           headers=auth(live, "staff1"), timeout=30).status_code == 204
    assert get(live, "staff1", "signatures/s0/sig.png").status_code == 404
    with live.stack.services.sessions() as s:
        row = s.scalar(select(StoredObject).where(StoredObject.path == "signatures/s0/sig.png"))
        assert row is not None and row.deleted_at is not None  # recoverable until purged


@pytest.mark.parametrize("path", [
    "uploads/../documents/x.pdf", "uploads/%2e%2e/x.pdf", "uploads/a\\b.pdf", "/uploads/x.pdf",
    "uploads//x.pdf", "uploads/x%00.pdf", "uploads/x%0a.pdf", "secrets/x.pdf", "uploads",
    "uploads/" + "a" * 300 + ".pdf",
])
def test_hostile_paths_are_refused_and_audited(live: LiveGateway, path: str) -> None:
    import http.client

    before = len(events(live, action="denied"))
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    conn.request("PUT", f"/api/v1/files/{path}", body=PDF, headers=auth(live, "staff1"))
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 400, body
    assert b'"bad_path"' in body
    assert len(events(live, action="denied")) == before + 1


def test_mislabelled_upload_is_refused(live: LiveGateway) -> None:
    html = b"<!doctype html><html><script>alert(1)</script></html>"
    resp = put(live, "staff1", "uploads/scan.pdf.pdf", html)
    assert resp.status_code == 415
    exe = put(live, "staff1", "uploads/photo.jpg", b"MZ\x90\x00" + b"\x00" * 100)
    assert exe.status_code == 415
    with live.stack.services.sessions() as s:
        assert s.scalar(select(StoredObject).where(StoredObject.path == "uploads/photo.jpg")) is None


def test_organisations_are_isolated(live: LiveGateway) -> None:
    data = pdf_bytes(5000, seed=8)
    assert put(live, "staff1", "uploads/iso/secret.pdf", data).status_code == 201
    oid = get(live, "staff1", "uploads/iso/secret.pdf").headers["ETag"]
    assert oid
    # read, list, overwrite, delete, link — all as org 2
    assert get(live, "staff2", "uploads/iso/secret.pdf").status_code == 404
    listing = requests.get(f"{live.url}/api/v1/files", params={"prefix": "uploads/iso/"},
                           headers=auth(live, "staff2"), timeout=30).json()["objects"]
    assert listing == []
    assert requests.delete(f"{live.url}/api/v1/files/uploads/iso/secret.pdf",
                           headers=auth(live, "admin2"), timeout=30).status_code == 404
    link = requests.post(f"{live.url}/api/v1/links", json={"path": "uploads/iso/secret.pdf"},
                         headers=auth(live, "staff2"), timeout=30)
    assert link.status_code == 404
    # traversal towards org 1's prefix
    org1 = live.stack.org1
    for path in (f"uploads/../../{org1}/uploads/iso/secret.pdf", f"{org1}/uploads/iso/secret.pdf"):
        r = get(live, "staff2", path)
        assert r.status_code in (400, 404)
    # org 2 writing the same path creates its own object and leaves org 1's untouched
    assert put(live, "staff2", "uploads/iso/secret.pdf", pdf_bytes(10, seed=1)).status_code == 201
    assert get(live, "staff1", "uploads/iso/secret.pdf").content == data
    denied = [e for e in events(live, org_id=live.stack.org2) if e.outcome == "denied"]
    assert any(e.object_path == "uploads/iso/secret.pdf" for e in denied)


def test_auditor_cannot_read_files(live: LiveGateway) -> None:
    assert put(live, "staff1", "uploads/aud.pdf", pdf_bytes(100)).status_code == 201
    assert get(live, "auditor1", "uploads/aud.pdf").status_code == 403
    assert put(live, "auditor1", "uploads/aud2.pdf", pdf_bytes(100)).status_code == 403


def test_tampered_segment_stops_the_response(live: LiveGateway) -> None:
    data = pdf_bytes(3 * 1024 * 1024, seed=11)
    resp = put(live, "staff1", "uploads/tamper.pdf", data)
    store = live.stack.services.store
    with live.stack.services.sessions() as s:
        obj = s.get(StoredObject, resp.json()["id"])
    blob = bytearray(store.get_bytes(obj.s3_key))
    blob[len(blob) - 1000] ^= 0x01  # inside the last segment
    store.put_bytes(obj.s3_key, bytes(blob))
    received = bytearray()
    with pytest.raises(requests.exceptions.RequestException):
        with requests.get(f"{live.url}/api/v1/files/uploads/tamper.pdf", headers=auth(live, "staff1"),
                          stream=True, timeout=60) as r:
            for chunk in r.iter_content(65536):
                received += chunk
    # no byte of the failing segment (the last, from 2 MiB on) was released
    assert len(received) <= 2 * 1024 * 1024
    assert bytes(received) == data[:len(received)]
    # the middle segment still reads through a range
    mid = get(live, "staff1", "uploads/tamper.pdf", {"Range": "bytes=1048576-1048675"})
    assert mid.status_code == 206 and mid.content == data[1048576:1048676]
    assert any(e.object_id == obj.id for e in events(live, action="integrity_failure"))


def test_truncated_object_never_completes(live: LiveGateway) -> None:
    """The bucket's copy cut at a segment boundary (its last segment gone): the download stops
    before the end, whatever was sent is a true prefix, and the failure is audited."""
    from gateway.crypto import envelope

    data = pdf_bytes(3 * 1024 * 1024 - 5, seed=14)
    resp = put(live, "staff1", "uploads/truncated.pdf", data)
    store = live.stack.services.store
    with live.stack.services.sessions() as s:
        obj = s.get(StoredObject, resp.json()["id"])
    blob = store.get_bytes(obj.s3_key)
    segment = 1024 * 1024 + 16
    store.put_bytes(obj.s3_key, blob[:envelope.HEADER_SIZE + 2 * segment])
    received = bytearray()
    with pytest.raises(requests.exceptions.RequestException):
        with requests.get(f"{live.url}/api/v1/files/uploads/truncated.pdf",
                          headers=auth(live, "staff1"), stream=True, timeout=60) as r:
            for chunk in r.iter_content(65536):
                received += chunk
    assert len(received) < len(data) and bytes(received) == data[:len(received)]
    tail = get(live, "staff1", "uploads/truncated.pdf", {"Range": f"bytes={len(data) - 100}-"})
    assert tail.status_code == 502, (tail.status_code, tail.text[:200])
    reads = [(e.action, e.outcome) for e in events(live, object_id=obj.id)
             if e.action in ("view", "range_read", "integrity_failure")]
    assert ("integrity_failure", "integrity_failure") in reads
    assert not any(outcome == "completed" for _, outcome in reads)


def test_tampered_header_is_refused_before_any_byte(live: LiveGateway) -> None:
    data = pdf_bytes(10_000, seed=12)
    resp = put(live, "staff1", "uploads/tamper-header.pdf", data)
    store = live.stack.services.store
    with live.stack.services.sessions() as s:
        obj = s.get(StoredObject, resp.json()["id"])
    blob = bytearray(store.get_bytes(obj.s3_key))
    blob[10] ^= 0x80
    store.put_bytes(obj.s3_key, bytes(blob))
    r = get(live, "staff1", "uploads/tamper-header.pdf")
    assert r.status_code == 502 and r.json()["error"]["code"] == "integrity_failure"
    assert any(e.object_id == obj.id for e in events(live, action="integrity_failure"))


def test_swapped_objects_fail(live: LiveGateway) -> None:
    a = put(live, "staff1", "uploads/swap-a.pdf", pdf_bytes(5000, seed=21)).json()
    b = put(live, "staff1", "uploads/swap-b.pdf", pdf_bytes(5000, seed=22)).json()
    store = live.stack.services.store
    with live.stack.services.sessions() as s:
        ka, kb = s.get(StoredObject, a["id"]).s3_key, s.get(StoredObject, b["id"]).s3_key
    store.put_bytes(ka, store.get_bytes(kb))
    assert get(live, "staff1", "uploads/swap-a.pdf").status_code == 502


def test_signed_links(live: LiveGateway) -> None:
    data = pdf_bytes(70_000, seed=31)
    assert put(live, "staff1", "uploads/link.pdf", data).status_code == 201
    issued = requests.post(f"{live.url}/api/v1/links", json={"path": "uploads/link.pdf", "method": "GET"},
                           headers=auth(live, "staff1"), timeout=30)
    assert issued.status_code == 201
    url = issued.json()["url"]
    assert requests.get(url, timeout=30).content == data  # no session, no token
    ranged = requests.get(url, headers={"Range": "bytes=5-9"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[5:10]
    token = url.rsplit("/", 1)[1]
    tampered = url[: -len(token)] + token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    assert requests.get(tampered, timeout=30).status_code == 403
    assert requests.put(url, data=PDF, timeout=30).status_code == 403  # a GET link cannot write
    up = requests.post(f"{live.url}/api/v1/links", json={"path": "uploads/via-link.pdf", "method": "PUT"},
                       headers=auth(live, "staff1"), timeout=30).json()
    assert requests.put(up["url"], data=data, timeout=30).status_code == 201
    replay = requests.put(up["url"], data=pdf_bytes(70_000, seed=32), timeout=30)
    assert replay.status_code == 403 and replay.json()["error"]["code"] == "bad_link"
    assert get(live, "staff1", "uploads/via-link.pdf").content == data
    # nor once the object it made is deleted (the path is free again)
    deleted = requests.delete(f"{live.url}/api/v1/files/uploads/via-link.pdf",
                              headers=auth(live, "staff1"), timeout=30)
    assert deleted.status_code == 204
    assert requests.put(up["url"], data=data, timeout=30).status_code == 403
    assert get(live, "staff1", "uploads/via-link.pdf").status_code == 404
    used = events(live, action="link_used")
    assert {e.outcome for e in used} >= {"success", "denied"}
    replays = [e for e in used if e.outcome == "denied"
               and json.loads(e.detail or "{}").get("reason") == "link already used"]
    assert len(replays) == 2 and all(e.object_path == "uploads/via-link.pdf" for e in replays)
    assert events(live, action="link_issued")


@pytest.fixture(scope="module")
def small_live(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("small")
    scratch = tmp / "scratch-tmp"
    scratch.mkdir()
    s = build_stack(f"sqlite:///{tmp / 'gw.db'}", moto_endpoint, tmp,
                    GATEWAY_MAX_UPLOAD_BYTES=str(9 * 1024 * 1024), GATEWAY_READ_LINK_SECONDS="1",
                    TMPDIR=str(scratch))
    gw = LiveGateway(s, tmp / "gunicorn.log")
    gw.scratch = scratch  # type: ignore[attr-defined]
    yield gw
    gw.stop()
    s.close()


def _no_leftovers(gw: LiveGateway, path: str) -> None:
    with gw.stack.services.sessions() as s:
        assert s.scalar(select(StoredObject).where(StoredObject.path == path)) is None
        cataloged = set(s.scalars(select(StoredObject.s3_key)))
    assert {k for k, _ in gw.stack.services.store.list_keys(gw.stack.org1 + "/")} <= cataloged
    assert gw.stack.services.store.list_multipart_uploads("") == []


def test_oversized_upload_with_length(small_live: LiveGateway) -> None:
    r = put(small_live, "staff1", "uploads/big.pdf", pdf_bytes(10 * 1024 * 1024))
    assert r.status_code == 413
    _no_leftovers(small_live, "uploads/big.pdf")


def test_oversized_upload_streamed_without_length(small_live: LiveGateway) -> None:
    data = pdf_bytes(20 * 1024 * 1024, seed=2)
    pieces = (data[i:i + 1024 * 1024] for i in range(0, len(data), 1024 * 1024))
    try:
        r = put(small_live, "staff1", "uploads/big2.pdf", pieces)
        assert r.status_code == 413
    except requests.exceptions.ConnectionError:
        pass  # the gateway may close the connection while the client still sends
    aborted = [e for e in events(small_live, action="upload") if e.outcome == "aborted"]
    assert aborted and aborted[-1].http_status == 413
    _no_leftovers(small_live, "uploads/big2.pdf")


def _send_and_hang_up(gw: LiveGateway, head: bytes, body: bytes) -> None:
    """Send a request head and part of its body, then close the connection."""
    import socket

    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(head + body)
        time.sleep(0.3)  # let the gateway read what was sent before the hang-up


def _aborted(gw: LiveGateway, path: str) -> list[AuditEvent]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = [e for e in events(gw, action="upload", object_path=path) if e.outcome == "aborted"]
        if rows:
            return rows
        time.sleep(0.1)
    return []


@pytest.mark.parametrize("kind", ["content-length", "chunked", "form"])
def test_an_upload_cut_short_by_the_client_is_not_stored(live: LiveGateway, kind: str) -> None:
    """The client goes away mid-upload (past the first 6 MiB part): no object, no row, no open
    multipart upload, and the upload is audited as aborted."""
    token = live.stack.users["staff1"].token
    path = f"uploads/cut/{kind}.pdf"
    data = pdf_bytes(9 * 1024 * 1024, seed=51)
    sent = data[: 7 * 1024 * 1024]
    if kind == "content-length":
        head = (f"PUT /api/v1/files/{path} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n")
        body = sent
    elif kind == "chunked":
        head = (f"PUT /api/v1/files/{path} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = b"".join(b"%x\r\n%s\r\n" % (len(sent[i:i + 65536]), sent[i:i + 65536])
                        for i in range(0, len(sent), 65536))  # no closing 0-size chunk
    else:
        boundary = "----cut-boundary"
        preamble = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n"
                    f"{path}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                    f"filename=\"x.pdf\"\r\nContent-Type: application/pdf\r\n\r\n").encode()
        total = len(preamble) + len(data) + len(f"\r\n--{boundary}--\r\n")
        head = (f"POST /api/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {total}\r\n\r\n")
        body = preamble + sent
    _send_and_hang_up(live, head.encode(), body)
    aborted = _aborted(live, path)
    assert aborted, "no aborted upload in the trail"
    assert 0 < aborted[-1].bytes <= len(sent)
    _no_leftovers(live, path)


def test_expired_link(small_live: LiveGateway) -> None:
    import time

    assert put(small_live, "staff1", "uploads/exp.pdf", pdf_bytes(100)).status_code == 201
    url = requests.post(f"{small_live.url}/api/v1/links", json={"path": "uploads/exp.pdf"},
                        headers=auth(small_live, "staff1"), timeout=30).json()["url"]
    time.sleep(2.1)
    r = requests.get(url, timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "link_expired"
    requests.delete(f"{small_live.url}/api/v1/files/uploads/exp.pdf", headers=auth(small_live, "staff1"),
                    timeout=30)


def test_no_plaintext_reaches_the_temporary_directory(small_live: LiveGateway) -> None:
    data = pdf_bytes(6 * 1024 * 1024, seed=5)
    assert put(small_live, "staff1", "uploads/tmp1.pdf", data).status_code == 201
    form = requests.post(f"{small_live.url}/api/v1/files", headers=auth(small_live, "staff1"),
                         data={"path": "uploads/tmp2.pdf"},
                         files={"file": ("tmp2.pdf", data, "application/pdf")}, timeout=60)
    assert form.status_code == 201
    assert list(small_live.scratch.iterdir()) == []  # type: ignore[attr-defined]
