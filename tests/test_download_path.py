"""The download path against the real gateway (gunicorn, moto's S3 server): what vouches for a
full read, ranges whose first or later segments are damaged, objects gone from the bucket,
ranged reads of objects with another segment size, and multi-range answers
(``multipart/byteranges``), also through the Flask app itself."""
from __future__ import annotations

import re

import pytest
import requests
from urllib3.exceptions import ProtocolError

from gateway.crypto import envelope
from gateway.db.models import StoredObject
from tests.stack import LiveGateway
from tests.stack import event_detail as detail
from tests.test_files_api import auth, events, get, pdf_bytes, put

MIB = 1024 * 1024
SEGMENT = envelope.DEFAULT_SEGMENT_SIZE + envelope.TAG_SIZE


def stored(live: LiveGateway, path: str, data: bytes, who: str = "staff1") -> StoredObject:
    resp = put(live, who, path, data)
    assert resp.status_code == 201, resp.text[:300]
    with live.stack.services.sessions() as s:
        return s.get(StoredObject, resp.json()["id"])


def damage(live: LiveGateway, obj: StoredObject, offset: int) -> None:
    """Flip one bit of the object's bytes in the bucket, ``offset`` bytes in (header included)."""
    store = live.stack.services.store
    blob = bytearray(store.get_bytes(obj.s3_key))
    blob[offset] ^= 0x01
    store.put_bytes(obj.s3_key, bytes(blob))


def integrity_rows(live: LiveGateway, obj: StoredObject):
    return [e for e in events(live, object_id=obj.id) if e.action == "integrity_failure"]


def read_all(live: LiveGateway, path: str, headers: dict[str, str]) -> tuple[int, bytearray, bool]:
    """(status, bytes received, whether the connection broke before the end)."""
    received = bytearray()
    with requests.get(f"{live.url}/api/v1/files/{path}", headers={**auth(live, "staff1"), **headers},
                      stream=True, timeout=60) as r:
        try:  # small reads: what arrived before a cut is kept, but for the last read
            for chunk in r.raw.stream(4096, decode_content=False):
                received += chunk
        except (requests.exceptions.RequestException, ProtocolError):
            return r.status_code, received, True
        return r.status_code, received, False


# -- what vouches for a full read ------------------------------------------------------------


def test_a_client_side_object_is_vouched_for_by_its_format_not_by_rehashing(
        live: LiveGateway) -> None:
    """A full read of a client-side encrypted object is not checked against the catalog's
    SHA-256 any more (the segments, their order, the end and the ids are authenticated), but
    it is still refused when the header is not the catalog's (its salt)."""
    data = pdf_bytes(2 * MIB + 77, seed=31)
    obj = stored(live, "uploads/dp/receipt.pdf", data)
    with live.stack.services.sessions() as s:
        row = s.get(StoredObject, obj.id)
        row.sha256 = "0" * 64  # a receipt that no longer matches: the bytes still authenticate
        s.commit()
    r = get(live, "staff1", "uploads/dp/receipt.pdf")
    assert r.status_code == 200 and r.content == data

    with live.stack.services.sessions() as s:
        row = s.get(StoredObject, obj.id)
        row.envelope_salt = bytes(32)  # the catalog names another encryption of the object
        s.commit()
    r = get(live, "staff1", "uploads/dp/receipt.pdf")
    assert r.status_code == 502 and r.json()["error"]["code"] == "integrity_failure"
    assert data[:100] not in r.content
    ranged = get(live, "staff1", "uploads/dp/receipt.pdf", {"Range": "bytes=1500000-1500099"})
    assert ranged.status_code == 502 and ranged.json()["error"]["code"] == "integrity_failure"
    assert len(integrity_rows(live, obj)) == 2


def test_an_ssec_object_is_still_checked_against_its_sha256(live: LiveGateway) -> None:
    """S3 alone vouches for SSE-C bytes (moto keeps them as sent): bytes swapped in the bucket
    are caught by the plaintext SHA-256 before the last of them is released."""
    data = pdf_bytes(3 * MIB + 5, seed=32)
    obj = stored(live, "uploads/dp/ssec.pdf", data, who="staffs")
    assert obj.encryption == "ssec"
    store = live.stack.services.store
    with live.stack.services.sessions() as s:
        key = live.stack.services.keyring.ssec_key(s, obj.org_id, obj.key_version)
    forged = bytearray(data)
    forged[-10] ^= 0x01
    store.put_bytes(obj.s3_key, bytes(forged), sse_c=key)
    received = bytearray()
    with pytest.raises(requests.exceptions.RequestException):
        with requests.get(f"{live.url}/api/v1/files/uploads/dp/ssec.pdf",
                          headers=auth(live, "staffs"), stream=True, timeout=60) as r:
            assert r.status_code == 200
            for chunk in r.iter_content(65536):
                received += chunk
    assert len(received) < len(data)
    assert [e.outcome for e in events(live, object_id=obj.id) if e.action == "integrity_failure"] \
        == ["integrity_failure"]


# -- damaged ranges (issue: an HTML 500 before) ----------------------------------------------


def test_a_range_whose_first_segment_is_damaged_is_a_json_502_before_any_byte(
        live: LiveGateway) -> None:
    data = pdf_bytes(4 * MIB, seed=33)
    obj = stored(live, "uploads/dp/damaged-first.pdf", data)
    damage(live, obj, envelope.HEADER_SIZE + 2 * SEGMENT + 500)  # inside segment 2
    for spec in (f"bytes={2 * MIB + 10}-{3 * MIB + 10}", f"bytes={2 * MIB}-",
                 f"bytes={2 * MIB + 5}-{2 * MIB + 6},{3 * MIB}-{3 * MIB + 1}"):
        r = get(live, "staff1", "uploads/dp/damaged-first.pdf", {"Range": spec})
        assert r.status_code == 502, (spec, r.status_code, r.text[:200])
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["error"]["code"] == "integrity_failure"
    rows = integrity_rows(live, obj)
    assert len(rows) == 3 and all(row.http_status == 502 and row.bytes == 0 for row in rows)
    # the segments before it still read
    ok = get(live, "staff1", "uploads/dp/damaged-first.pdf", {"Range": "bytes=100-199"})
    assert ok.status_code == 206 and ok.content == data[100:200]


def test_a_range_meeting_a_damaged_later_segment_is_cut_and_audited(live: LiveGateway) -> None:
    data = pdf_bytes(4 * MIB, seed=34)
    obj = stored(live, "uploads/dp/damaged-later.pdf", data)
    damage(live, obj, envelope.HEADER_SIZE + 2 * SEGMENT + 500)  # inside segment 2
    start = MIB + 7
    status, received, broke = read_all(live, "uploads/dp/damaged-later.pdf",
                                       {"Range": f"bytes={start}-{3 * MIB + 100}"})
    assert status == 206 and broke
    # only segment 1's bytes went out, all of them true
    assert 0 < len(received) <= MIB - 7
    assert bytes(received) == data[start:start + len(received)]
    rows = integrity_rows(live, obj)
    assert len(rows) == 1 and rows[0].bytes == MIB - 7  # handed to the server before the cut
    trail = [e.outcome for e in events(live, object_id=obj.id) if e.action == "range_read"]
    assert trail == ["started"]  # never completed


# -- an object gone from the bucket (issue: a 404 before) ------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Range": "bytes=5-10"},
                                     {"Range": f"bytes={2 * MIB}-{2 * MIB + 9}"},
                                     {"Range": "bytes=0-1,20-30"}])
def test_an_object_deleted_behind_the_gateways_back_is_a_502_integrity_failure(
        live: LiveGateway, headers: dict[str, str]) -> None:
    name = f"uploads/dp/gone-{len(events(live))}.pdf"
    obj = stored(live, name, pdf_bytes(3 * MIB, seed=35))
    live.stack.services.store.delete(obj.s3_key)
    r = get(live, "staff1", name, headers)
    assert r.status_code == 502, (r.status_code, r.text[:200])
    assert r.json()["error"]["code"] == "integrity_failure"
    rows = integrity_rows(live, obj)
    assert len(rows) == 1
    assert detail(rows[0])["missing"] is True and "missing" in detail(rows[0])["reason"]
    assert not any(detail(e).get("reason") == "no such object"
                   for e in events(live, object_path=name))


# -- a ranged read of an object with another segment size ------------------------------------


def test_a_range_of_an_object_with_another_segment_size_is_read_right(live: LiveGateway) -> None:
    """The segments are fetched where the default segment size puts them while the header
    comes; an object written with other segments is fetched again where its header says."""
    data = pdf_bytes(3 * MIB + 999, seed=36)
    obj = stored(live, "uploads/dp/small-segments.pdf", data)
    services = live.stack.services
    with services.sessions() as s:
        data_key = services.keyring.unwrap_data_key(s, obj.org_id, obj.storage_id,
                                                     obj.key_version, obj.wrapped_data_key)
    blob = envelope.encrypt(data_key, data, org_id=obj.org_id, object_id=obj.storage_id,
                            segment_size=64 * 1024)
    services.store.put_bytes(obj.s3_key, blob)
    with services.sessions() as s:
        s.get(StoredObject, obj.id).envelope_salt = envelope.parse_header(blob).salt
        s.commit()
    for start, end in ((2 * MIB + 3, 2 * MIB + 70_000), (10, 200_000), (len(data) - 5, len(data) - 1)):
        r = get(live, "staff1", "uploads/dp/small-segments.pdf", {"Range": f"bytes={start}-{end}"})
        assert r.status_code == 206 and r.content == data[start:end + 1], (start, end)
    assert get(live, "staff1", "uploads/dp/small-segments.pdf").content == data


# -- several ranges --------------------------------------------------------------------------


def parts(resp: requests.Response | object, content: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The (Content-Range, body) of each part of a multipart/byteranges answer."""
    ctype = resp.headers["Content-Type"]  # type: ignore[attr-defined]
    match = re.fullmatch(r"multipart/byteranges; boundary=(\S+)", ctype)
    assert match, ctype
    delimiter = b"--" + match.group(1).encode()
    assert content.endswith(b"\r\n" + delimiter + b"--\r\n")
    body = content[:-len(b"\r\n" + delimiter + b"--\r\n")]
    assert body.startswith(delimiter + b"\r\n")
    found = []
    for piece in body[len(delimiter) + 2:].split(b"\r\n" + delimiter + b"\r\n"):
        head, _, payload = piece.partition(b"\r\n\r\n")
        fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        assert fields["Content-Type"] == content_type
        found.append((fields["Content-Range"], payload))
    return found


def test_several_ranges_are_a_multipart_answer_through_gunicorn(live: LiveGateway) -> None:
    data = pdf_bytes(5 * MIB + 3, seed=37)
    obj = stored(live, "uploads/dp/multi.pdf", data)
    size = len(data)
    r = get(live, "staff1", "uploads/dp/multi.pdf", {"Range": "bytes=0-9,20-29"})
    assert r.status_code == 206
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert "Content-Range" not in r.headers
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert parts(r, r.content, "application/pdf") == [
        (f"bytes 0-9/{size}", data[0:10]), (f"bytes 20-29/{size}", data[20:30])]

    # far apart, across segments, in the order asked; a suffix; overlapping ones merged
    spec = f"bytes={4 * MIB - 5}-{4 * MIB + 5},100-199,150-300,-7,{2 * MIB}-{2 * MIB}"
    r = get(live, "staff1", "uploads/dp/multi.pdf", {"Range": spec})
    assert r.status_code == 206 and int(r.headers["Content-Length"]) == len(r.content)
    assert parts(r, r.content, "application/pdf") == [
        (f"bytes {4 * MIB - 5}-{4 * MIB + 5}/{size}", data[4 * MIB - 5:4 * MIB + 6]),
        (f"bytes 100-300/{size}", data[100:301]),
        (f"bytes {size - 7}-{size - 1}/{size}", data[-7:]),
        (f"bytes {2 * MIB}-{2 * MIB}/{size}", data[2 * MIB:2 * MIB + 1]),
    ]
    rows = [e for e in events(live, object_id=obj.id) if e.action == "range_read"]
    assert [e.outcome for e in rows[-2:]] == ["started", "completed"]
    assert rows[-1].bytes == len(r.content)
    assert detail(rows[-1])["range"] == (f"{4 * MIB - 5}-{4 * MIB + 5},100-300,"
                                        f"{size - 7}-{size - 1},{2 * MIB}-{2 * MIB}")

    # ranges that touch become one: a single-range answer
    one = get(live, "staff1", "uploads/dp/multi.pdf", {"Range": "bytes=0-9,10-19"})
    assert one.status_code == 206 and one.headers["Content-Range"] == f"bytes 0-19/{size}"
    assert one.content == data[:20]
    # unsatisfiable ranges are dropped; none satisfiable is a 416
    dropped = get(live, "staff1", "uploads/dp/multi.pdf", {"Range": f"bytes=0-1,{size}-"})
    assert dropped.status_code == 206 and dropped.content == data[:2]
    none = get(live, "staff1", "uploads/dp/multi.pdf", {"Range": f"bytes={size}-,{size + 5}-"})
    assert none.status_code == 416 and none.headers["Content-Range"] == f"bytes */{size}"

    head = requests.head(f"{live.url}/api/v1/files/uploads/dp/multi.pdf", timeout=30,
                         headers={**auth(live, "staff1"), "Range": "bytes=0-9,20-29"})
    assert head.status_code == 206 and head.content == b""
    assert head.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert head.headers["Content-Length"] == str(len(get(
        live, "staff1", "uploads/dp/multi.pdf", {"Range": "bytes=0-9,20-29"}).content))


@pytest.mark.parametrize(("spec", "reason"), [
    (",".join(f"{i * 10}-{i * 10 + 1}" for i in range(17)), "17 ranges"),
    (",".join(f"{i * 1000}-{i * 1000 + 1}" for i in range(9)), "9 separate ranges"),
    ("0-100,50-150,60-70", "3 overlapping ranges"),
    (",".join(["0-"] * 5), "5 overlapping ranges"),
])
def test_abusive_range_sets_are_refused_and_audited(live: LiveGateway, spec: str,
                                                    reason: str) -> None:
    name = "uploads/dp/abuse.pdf"
    if get(live, "staff1", name, {"Range": "bytes=0-0"}).status_code != 206:
        stored(live, name, pdf_bytes(MIB, seed=38))
    r = get(live, "staff1", name, {"Range": f"bytes={spec}"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{MIB}"
    assert r.json()["error"]["code"] == "range_not_satisfiable"
    assert reason in r.json()["error"]["message"]
    row = events(live, object_path=name)[-1]
    assert (row.action, row.outcome, row.http_status) == ("range_read", "denied", 416)
    assert reason in detail(row)["reason"]


def test_a_damaged_segment_in_a_later_part_cuts_the_multipart_answer(live: LiveGateway) -> None:
    data = pdf_bytes(4 * MIB, seed=39)
    obj = stored(live, "uploads/dp/multi-damaged.pdf", data)
    damage(live, obj, envelope.HEADER_SIZE + 3 * SEGMENT + 500)  # inside segment 3
    status, received, broke = read_all(live, "uploads/dp/multi-damaged.pdf",
                                       {"Range": f"bytes=0-199999,{3 * MIB + 1}-{3 * MIB + 50}"})
    assert status == 206 and broke
    assert data[:190000] in received and data[3 * MIB + 1:3 * MIB + 51] not in received
    assert len(integrity_rows(live, obj)) == 1


def test_several_ranges_through_the_app(app, client, sqlite_stack) -> None:
    """The same answer from the Flask app itself (no WSGI server between)."""
    token = sqlite_stack.users["staff1"].token
    headers = {"Authorization": f"Bearer {token}"}
    data = pdf_bytes(2 * MIB + 11, seed=40)
    assert client.put("/api/v1/files/uploads/dp/app.pdf", data=data,
                      headers=headers).status_code == 201
    r = client.get("/api/v1/files/uploads/dp/app.pdf",
                   headers={**headers, "Range": f"bytes=5-9,{2 * MIB}-{2 * MIB + 10}"})
    assert r.status_code == 206
    assert int(r.headers["Content-Length"]) == len(r.data)
    assert parts(r, r.data, "application/pdf") == [
        (f"bytes 5-9/{len(data)}", data[5:10]),
        (f"bytes {2 * MIB}-{2 * MIB + 10}/{len(data)}", data[2 * MIB:2 * MIB + 11])]
    stale = client.get("/api/v1/files/uploads/dp/app.pdf",
                       headers={**headers, "Range": "bytes=0-1,5-6", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.data == data


def test_several_ranges_of_an_ssec_object(client, sqlite_stack) -> None:
    """SSE-C objects: S3 decrypts each part's range; the same multipart answer."""
    headers = {"Authorization": f"Bearer {sqlite_stack.users['staffs'].token}"}
    data = pdf_bytes(3 * MIB, seed=41)
    assert client.put("/api/v1/files/uploads/dp/ssec-multi.pdf", data=data,
                      headers=headers).status_code == 201
    r = client.get("/api/v1/files/uploads/dp/ssec-multi.pdf",
                   headers={**headers, "Range": f"bytes={2 * MIB}-{2 * MIB + 4},0-3"})
    assert r.status_code == 206 and int(r.headers["Content-Length"]) == len(r.data)
    assert parts(r, r.data, "application/pdf") == [
        (f"bytes {2 * MIB}-{2 * MIB + 4}/{len(data)}", data[2 * MIB:2 * MIB + 5]),
        (f"bytes 0-3/{len(data)}", data[:4])]
