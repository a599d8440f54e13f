"""The S3 writer against moto's server: round trips at every part boundary, a CRC32 with every
part, part sizes that grow for very large objects, bounded memory, and clean aborts."""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import tracemalloc
import zlib
from typing import Iterator

import pytest

from gateway.storage import MAX_PARTS_IN_FLIGHT, ObjectStore
from gateway.storage import s3 as storage

MIB = 1024 * 1024
PART = 5 * MIB  # S3's smallest part


@pytest.fixture
def store(moto_endpoint: str) -> Iterator[ObjectStore]:
    bucket = f"storage-{secrets.token_hex(4)}"
    s = ObjectStore(bucket, endpoint_url=moto_endpoint)
    s.client.create_bucket(Bucket=bucket)
    yield s


class Requests:
    """The S3 requests a store sends: operation, headers, body length and CRC32."""

    def __init__(self, store: ObjectStore) -> None:
        self.seen: list[dict] = []
        store.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request, **kwargs):  # type: ignore[no-untyped-def]
        body = request.body if isinstance(request.body, (bytes, bytearray)) else b""
        self.seen.append({
            "method": request.method, "url": request.url, "body": bytes(body),
            "headers": {k.lower(): v.decode() if isinstance(v, bytes) else v
                        for k, v in request.headers.items()},
        })

    def of(self, method: str, marker: str) -> list[dict]:
        return [r for r in self.seen if r["method"] == method and marker in r["url"]]

    def parts(self) -> list[dict]:
        """The UploadPart requests in the order of their numbers (they go out concurrently,
        so not always in the order they were sent)."""
        return sorted(self.of("PUT", "partNumber="),
                      key=lambda p: int(re.search(r"partNumber=(\d+)", p["url"]).group(1)))


def crc(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def write_in_pieces(store: ObjectStore, key: str, data: bytes, piece: int = 1 << 20,
                    part_size: int = PART) -> None:
    writer = store.writer(key, part_size=part_size)
    for i in range(0, len(data), piece):
        writer.write(memoryview(data)[i:i + piece])
    writer.close()


@pytest.mark.parametrize("size", [0, 1, PART - 1, PART, PART + 1, 3 * PART + 7])
def test_round_trip_at_every_part_boundary(store: ObjectStore, size: int) -> None:
    data = secrets.token_bytes(size)
    write_in_pieces(store, "k", data, piece=777_777)
    assert hashlib.sha256(store.get_bytes("k")).digest() == hashlib.sha256(data).digest()
    assert b"".join(store.iter_object("k")) == data
    assert store.list_multipart_uploads() == []


def test_every_part_and_put_carries_its_crc32(store: ObjectStore) -> None:
    rec = Requests(store)
    data = secrets.token_bytes(2 * PART + 123)
    write_in_pieces(store, "multi", data)
    parts = rec.parts()
    assert [len(p["body"]) for p in parts] == [PART, PART, 123]
    for p in parts:
        assert p["headers"]["x-amz-checksum-crc32"] == crc(p["body"])
        # the signature covers the checksum header, not a second hash of the body
        assert p["headers"]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert rec.of("POST", "uploads")[0]["headers"]["x-amz-checksum-algorithm"] == "CRC32"
    complete = rec.of("POST", "uploadId=")[0]["body"].decode()
    for p in parts:
        assert f"<ChecksumCRC32>{crc(p['body'])}</ChecksumCRC32>" in complete

    rec.seen.clear()
    store.put_bytes("single", b"small object")
    (put,) = rec.of("PUT", "/single")
    assert put["headers"]["x-amz-checksum-crc32"] == crc(b"small object")


def test_parts_grow_so_that_huge_objects_fit_in_10000_parts(
        store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "PARTS_PER_SIZE_STEP", 2)
    rec = Requests(store)
    data = secrets.token_bytes(9 * PART)
    write_in_pieces(store, "grow", data, piece=3 * MIB)
    sizes = [len(p["body"]) for p in rec.parts()]
    assert sizes == [PART, PART, 2 * PART, 2 * PART, 3 * PART]
    assert store.get_bytes("grow") == data


def test_memory_is_a_few_parts_whatever_the_size(store: ObjectStore) -> None:
    data = secrets.token_bytes(12 * PART)
    tracemalloc.start()
    try:
        write_in_pieces(store, "big", data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the part being filled, the parts in flight, and a little for the HTTP machinery
    assert peak <= (MAX_PARTS_IN_FLIGHT + 1) * PART + 2 * MIB, peak / MIB
    assert store.get_bytes("big") == data


def test_abort_leaves_nothing_behind(store: ObjectStore) -> None:
    writer = store.writer("aborted", part_size=PART)
    writer.write(secrets.token_bytes(2 * PART + 5))
    writer.abort()
    assert store.list_multipart_uploads() == []
    assert list(store.list_keys()) == []


def test_a_reader_closed_early_stops_its_thread(store: ObjectStore) -> None:
    store.put_bytes("r", secrets.token_bytes(8 * MIB))
    before = {t.ident for t in threading.enumerate() if t.name == "read-ahead"}
    chunks = store.iter_object("r")
    assert len(next(chunks)) > 0
    mine = [t for t in threading.enumerate() if t.name == "read-ahead" and t.ident not in before]
    assert len(mine) == 1
    chunks.close()  # type: ignore[attr-defined]
    mine[0].join(timeout=2)
    assert not mine[0].is_alive()
    assert store.get_bytes("r")[:4] and store.list_multipart_uploads() == []
