"""SSE-C: the three headers go with every S3 call for an SSE-C organisation's objects, and
with none for client-side-encrypted ones. moto ignores SSE-C, so the recorded headers are the
proof."""
from __future__ import annotations

import base64
import hashlib

import pytest
from botocore.exceptions import ClientError

from gateway.principal import Actor
from gateway.storage import ObjectStore, SseCRefused, StorageError
from tests.stack import Stack

SSEC_HEADERS = ("x-amz-server-side-encryption-customer-algorithm",
                "x-amz-server-side-encryption-customer-key",
                "x-amz-server-side-encryption-customer-key-md5")
PDF = b"%PDF-1.7\n"


def actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)


class Recorder:
    def __init__(self, store: ObjectStore) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        store.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append((f"{request.method} {request.url.split('?')[1] if '?' in request.url else ''}",
                           {k.lower(): v.decode() if isinstance(v, bytes) else v
                            for k, v in request.headers.items()}))

    def clear(self) -> None:
        self.calls.clear()


def body(size: int) -> list[bytes]:
    data = PDF + bytes(size - len(PDF))
    return [data[i:i + 1 << 20] for i in range(0, len(data), 1 << 20)]


def test_ssec_headers_on_every_call(sqlite_stack: Stack) -> None:
    services = sqlite_stack.services
    rec = Recorder(services.store)
    who = actor(sqlite_stack, "staffs")
    # multipart (over one part) and single-put uploads, full and ranged reads
    big = services.objects.upload(who, "uploads/big.pdf", body(20 * 1024 * 1024))
    small = services.objects.upload(who, "uploads/small.pdf", body(1000))
    for obj in (big, small):
        assert obj.encryption == "ssec" and obj.wrapped_data_key is None
        dl = services.objects.open(who, obj)
        assert hashlib.sha256(b"".join(dl.body)).hexdigest() == obj.sha256
        part = services.objects.open(who, obj, range_header="bytes=3-200")
        assert len(b"".join(part.body)) == 198
    s3_calls = [(op, h) for op, h in rec.calls if "x-amz-content-sha256" in h or "authorization" in h]
    assert len(s3_calls) >= 8  # create, 3 parts, complete, put, 4 gets
    with services.sessions() as s:
        expected = services.keyring.ssec_key(s, sqlite_stack.org_ssec, 1)
    for op, headers in s3_calls:
        for name in SSEC_HEADERS:
            assert name in headers, (op, name)
        assert headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
        assert base64.b64decode(headers["x-amz-server-side-encryption-customer-key"]) == expected
        assert headers["x-amz-server-side-encryption-customer-key-md5"] == base64.b64encode(
            hashlib.md5(expected).digest()).decode()


def test_no_ssec_headers_for_cse_objects(sqlite_stack: Stack) -> None:
    services = sqlite_stack.services
    rec = Recorder(services.store)
    who = actor(sqlite_stack, "staff1")
    obj = services.objects.upload(who, "uploads/cse.pdf", body(12 * 1024 * 1024))
    b"".join(services.objects.open(who, obj).body)
    assert rec.calls
    for op, headers in rec.calls:
        assert not any(name in headers for name in SSEC_HEADERS), op


def test_ssec_key_differs_per_org_and_from_kek(sqlite_stack: Stack) -> None:
    kr = sqlite_stack.services.keyring
    with sqlite_stack.services.sessions() as s:
        a = kr.ssec_key(s, sqlite_stack.org_ssec, 1)
        b = kr.ssec_key(s, sqlite_stack.org1, 1)
        kek = kr.data_kek(s, sqlite_stack.org_ssec, 1)
    assert len({a, b, kek}) == 3 and len(a) == 32


@pytest.mark.parametrize(("message", "hint"), [
    ("Requests specifying Server Side Encryption with Customer provided keys must be made over a secure connection.", "https"),
    ("SSE-C is disabled for this bucket", "migrate-ssec"),
])
def test_refused_ssec_is_explained(message: str, hint: str) -> None:
    store = ObjectStore("b", endpoint_url="http://127.0.0.1:1")
    error = ClientError({"Error": {"Code": "InvalidRequest", "Message": message},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutObject")
    translated = store._translate(error, key="k", sse_c=True)
    assert isinstance(translated, SseCRefused) and isinstance(translated, StorageError)
    assert hint in str(translated)
    assert "gateway keys migrate-ssec" in str(translated)


@pytest.mark.parametrize(("endpoint", "refused"), [
    ("http://127.0.0.1:1", True), ("https://s3.example.org", False), (None, False)])
def test_bare_invalid_request_to_ssec_over_plain_http_is_explained(
        endpoint: str | None, refused: bool) -> None:
    """Ceph RGW answers SSE-C over plain HTTP with InvalidRequest and no message at all."""
    store = ObjectStore("b", endpoint_url=endpoint)
    error = ClientError({"Error": {"Code": "InvalidRequest", "Message": ""},
                         "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutObject")
    translated = store._translate(error, key="k", sse_c=True)
    assert isinstance(translated, SseCRefused) == refused
    if refused:
        assert "https://" in str(translated)
    # the same answer to a call without SSE-C is an ordinary storage error
    assert not isinstance(store._translate(error, key="k", sse_c=False), SseCRefused)
