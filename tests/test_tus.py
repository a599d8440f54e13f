"""Resumable uploads (tus 1.0.0) driven over HTTP against the real gateway (gunicorn + moto)."""
from __future__ import annotations

import base64
import hashlib
import random
import threading

import pytest
import requests
from sqlalchemy import select

from gateway.db.models import ResumableUpload, StoredObject
from tests.stack import LiveGateway
from tests.stack import audit_events as events
from tests.stack import event_detail as detail

TUS = {"Tus-Resumable": "1.0.0"}
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
MiB = 1024 * 1024


def pdf_bytes(size: int, seed: int = 1) -> bytes:
    rnd = random.Random(seed)
    return PDF + rnd.randbytes(max(0, size - len(PDF)))


def auth(live: LiveGateway, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.stack.users[who].token}", **TUS}


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(live: LiveGateway, who: str, length: int, **meta: str) -> requests.Response:
    return requests.post(f"{live.url}/api/v1/uploads", timeout=30, headers={
        **auth(live, who), "Upload-Length": str(length), "Upload-Metadata": metadata(**meta)})


def patch(live: LiveGateway, who: str, location: str, offset: int, data: bytes,
          **headers: str) -> requests.Response:
    return requests.patch(live.url + location, data=data, timeout=60, headers={
        **auth(live, who), "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream", **headers})


def head(live: LiveGateway, who: str, location: str) -> requests.Response:
    return requests.head(live.url + location, headers=auth(live, who), timeout=30)


def upload_row(live: LiveGateway, location: str) -> ResumableUpload:
    with live.stack.services.sessions() as s:
        row = s.get(ResumableUpload, location.rsplit("/", 1)[-1])
        assert row is not None
        s.expunge(row)
        return row


def live_object(live: LiveGateway, org: str, path: str) -> StoredObject | None:
    with live.stack.services.sessions() as s:
        return s.scalar(select(StoredObject).where(
            StoredObject.org_id == org, StoredObject.path == path,
            StoredObject.deleted_at.is_(None)))


def download(live: LiveGateway, who: str, path: str) -> bytes:
    resp = requests.get(f"{live.url}/api/v1/files/{path}", headers=auth(live, who), timeout=60)
    assert resp.status_code == 200, resp.text
    return resp.content


def test_options_advertises_the_protocol(live: LiveGateway) -> None:
    resp = requests.options(f"{live.url}/api/v1/uploads", timeout=10)
    assert resp.status_code == 204
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert set(resp.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration", "checksum"}
    assert int(resp.headers["Tus-Max-Size"]) == live.stack.settings.max_upload_bytes
    assert "sha256" in resp.headers["Tus-Checksum-Algorithm"].split(",")


def test_missing_tus_version_is_refused(live: LiveGateway) -> None:
    headers = auth(live, "staff1")
    del headers["Tus-Resumable"]
    resp = requests.post(f"{live.url}/api/v1/uploads", headers=headers, timeout=10)
    assert resp.status_code == 412 and resp.headers["Tus-Version"] == "1.0.0"


@pytest.mark.parametrize("chunk", [17, 300_000, 5 * MiB, 7 * MiB + 3])
def test_any_chunk_size_gives_the_same_object(live: LiveGateway, chunk: int) -> None:
    size = 13 * MiB + 1234 if chunk >= MiB else 2 * MiB + 77
    if chunk == 17:
        size = 5000
    data = pdf_bytes(size, seed=chunk)
    path = f"uploads/tus/chunks-{chunk}.pdf"
    created = create(live, "staff1", len(data), path=path)
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert created.headers["Upload-Offset"] == "0" and "Upload-Expires" in created.headers
    offset = 0
    n = 0
    while offset < len(data):
        # checked after every request, but only every 25th of the 295 tiny ones (and the last)
        checked = chunk > 17 or n % 25 == 0 or offset + chunk >= len(data)
        if checked:
            assert live_object(live, live.stack.org1, path) is None  # listed nowhere yet
        resp = patch(live, "staff1", location, offset, data[offset:offset + chunk])
        assert resp.status_code == 204, resp.text
        assert resp.headers["Tus-Resumable"] == "1.0.0"
        assert int(resp.headers["Upload-Offset"]) == min(offset + chunk, len(data))
        offset = int(resp.headers["Upload-Offset"])
        if checked:
            assert head(live, "staff1", location).headers["Upload-Offset"] == str(offset)
        n += 1
    obj = live_object(live, live.stack.org1, path)
    assert obj is not None and obj.sha256 == hashlib.sha256(data).hexdigest()
    assert obj.size == len(data) and obj.content_type == "application/pdf"
    assert download(live, "staff1", path) == data
    done = [e for e in events(live, action="upload", outcome="completed") if e.object_id == obj.id]
    assert len(done) == 1 and detail(done[0])["via"] == "tus"
    patches = [e for e in events(live, action="upload_patch", outcome="completed")
               if detail(e).get("upload_id") == location.rsplit("/", 1)[-1]]
    assert detail(patches[0])["from"] == 0 and detail(patches[-1])["to"] == len(data)


def test_one_patch_with_creation(live: LiveGateway) -> None:
    data = pdf_bytes(9 * MiB, seed=9)
    resp = requests.post(f"{live.url}/api/v1/uploads", data=data, timeout=60, headers={
        **auth(live, "staff1"), "Upload-Length": str(len(data)),
        "Upload-Metadata": metadata(folder="uploads/tus/", filename="with-upload.pdf"),
        "Content-Type": "application/offset+octet-stream"})
    assert resp.status_code == 201, resp.text
    assert resp.headers["Upload-Offset"] == str(len(data))
    assert download(live, "staff1", "uploads/tus/with-upload.pdf") == data


def test_zero_length_upload_completes_at_creation(live: LiveGateway) -> None:
    resp = create(live, "staff1", 0, path="uploads/tus/empty.txt")
    assert resp.status_code in (201, 415), resp.text


def test_offset_mismatch_is_409_and_audited(live: LiveGateway) -> None:
    data = pdf_bytes(100_000, seed=3)
    location = create(live, "staff1", len(data), path="uploads/tus/mismatch.pdf").headers["Location"]
    assert patch(live, "staff1", location, 0, data[:50_000]).status_code == 204
    resp = patch(live, "staff1", location, 0, data[:50_000])
    assert resp.status_code == 409 and resp.json()["error"]["code"] == "offset_mismatch"
    row = events(live, action="upload_patch", outcome="denied")[-1]
    assert row.http_status == 409 and detail(row)["reason"] == "offset mismatch"


def test_checksum_mismatch_keeps_nothing(live: LiveGateway) -> None:
    data = pdf_bytes(200_000, seed=4)
    location = create(live, "staff1", len(data), path="uploads/tus/checksum.pdf").headers["Location"]
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    resp = patch(live, "staff1", location, 0, data[:100_000], **{"Upload-Checksum": f"sha256 {wrong}"})
    assert resp.status_code == 460
    assert head(live, "staff1", location).headers["Upload-Offset"] == "0"
    right = base64.b64encode(hashlib.sha256(data[:100_000]).digest()).decode()
    resp = patch(live, "staff1", location, 0, data[:100_000], **{"Upload-Checksum": f"sha256 {right}"})
    assert resp.status_code == 204 and resp.headers["Upload-Offset"] == "100000"
    resp = patch(live, "staff1", location, 100_000, data[100_000:])
    assert resp.status_code == 204
    assert download(live, "staff1", "uploads/tus/checksum.pdf") == data


def test_refusals_match_put(live: LiveGateway) -> None:
    too_big = create(live, "staff1", live.stack.settings.max_upload_bytes + 1,
                     path="uploads/tus/big.pdf")
    assert too_big.status_code == 413
    assert create(live, "staff1", 10, path="../etc/passwd").status_code == 400
    assert create(live, "auditor1", 10, path="uploads/tus/a.pdf").status_code == 403
    assert create(live, "staff1", 10).status_code == 400
    requests.put(f"{live.url}/api/v1/files/uploads/tus/taken.pdf", data=pdf_bytes(100),
                 headers=auth(live, "staff1"), timeout=30)
    assert create(live, "staff1", 10, path="uploads/tus/taken.pdf").status_code == 409
    assert create(live, "staff1", 100, path="uploads/tus/taken.pdf",
                  overwrite="true").status_code == 201


def test_type_refused_from_the_first_bytes(live: LiveGateway) -> None:
    data = b"MZ\x90\x00" + bytes(10_000)
    location = create(live, "staff1", len(data), path="uploads/tus/tool.pdf").headers["Location"]
    resp = patch(live, "staff1", location, 0, data)
    assert resp.status_code == 415
    assert head(live, "staff1", location).status_code == 404  # everything of it is gone
    assert live_object(live, live.stack.org1, "uploads/tus/tool.pdf") is None


def test_another_users_upload_is_404(live: LiveGateway) -> None:
    data = pdf_bytes(1000, seed=5)
    location = create(live, "staff1", len(data), path="uploads/tus/mine.pdf").headers["Location"]
    for who in ("staff1b", "staff2", "admin2"):
        assert head(live, who, location).status_code == 404
        assert patch(live, who, location, 0, data).status_code == 404
    assert requests.delete(live.url + location, headers=auth(live, "staff2"),
                           timeout=10).status_code == 404


def test_terminate_removes_everything(live: LiveGateway) -> None:
    data = pdf_bytes(8 * MiB, seed=6)
    location = create(live, "staff1", len(data), path="uploads/tus/gone.pdf").headers["Location"]
    assert patch(live, "staff1", location, 0, data[:7 * MiB]).status_code == 204
    row = upload_row(live, location)
    assert row.multipart_id and row.interim_size > 0
    store = live.stack.services.store
    assert any(k == row.s3_key + ".interim" for k, _ in store.list_keys(live.stack.org1))
    resp = requests.delete(live.url + location, headers=auth(live, "staff1"), timeout=10)
    assert resp.status_code == 204
    assert head(live, "staff1", location).status_code == 404
    assert not [k for k, _ in store.list_keys(live.stack.org1) if k.startswith(row.s3_key)]
    assert row.multipart_id not in {u for _, u in store.list_multipart_uploads(live.stack.org1)}
    assert events(live, action="upload_terminate", outcome="success")


def test_nothing_in_plaintext_in_the_bucket(live: LiveGateway) -> None:
    marker = b"PATIENT-NAME-JOHN-DOE-1970 "
    data = PDF + marker * 40_000
    location = create(live, "staff1", len(data), path="uploads/tus/plain.pdf").headers["Location"]
    assert patch(live, "staff1", location, 0, data[:300_000]).status_code == 204
    row = upload_row(live, location)
    store = live.stack.services.store
    interim = store.get_bytes(row.s3_key + ".interim")
    assert marker not in interim and len(interim) >= 300_000 - 100
    with live.stack.services.sessions() as s:
        stored = s.get(ResumableUpload, row.id)
        blob = b"".join(bytes(v) for v in (stored.digest_state or b"", stored.wrapped_data_key))
    assert marker not in blob


def test_two_patches_racing_one_gets_423_or_409(live: LiveGateway) -> None:
    data = pdf_bytes(20 * MiB, seed=7)
    location = create(live, "staff1", len(data), path="uploads/tus/race.pdf").headers["Location"]
    results: list[int] = []

    def send() -> None:
        results.append(patch(live, "staff1", location, 0, data[:12 * MiB]).status_code)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results)[0] == 204 and sorted(results)[1] in (409, 423), results
    offset = int(head(live, "staff1", location).headers["Upload-Offset"])
    assert offset == 12 * MiB
    assert patch(live, "staff1", location, offset, data[offset:]).status_code == 204
    assert download(live, "staff1", "uploads/tus/race.pdf") == data


def test_sse_c_organisation_resumes_too(live: LiveGateway) -> None:
    data = pdf_bytes(8 * MiB + 99, seed=11)
    path = "uploads/tus/ssec.pdf"
    location = create(live, "staffs", len(data), path=path).headers["Location"]
    assert patch(live, "staffs", location, 0, data[:3 * MiB]).status_code == 204
    assert patch(live, "staffs", location, 3 * MiB, data[3 * MiB:]).status_code == 204
    obj = live_object(live, live.stack.org_ssec, path)
    assert obj is not None and obj.encryption == "ssec" and obj.wrapped_data_key is None
    assert obj.sha256 == hashlib.sha256(data).hexdigest()
    assert download(live, "staffs", path) == data
