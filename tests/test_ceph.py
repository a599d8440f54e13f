"""The gateway on a real S3 engine: Ceph's RADOS Gateway (see ``tests/ceph.py``).

moto stores SSE-C objects in the clear and accepts any key or none, and ignores bucket-policy
conditions and Block Public Access; the SSE-C tests elsewhere can only check the headers sent.
Here Ceph enforces them: what is stored, who can read it back, and what ``storage setup`` can
and cannot do on this engine. Ceph 16 quirks these tests rely on (and document):

- Block Public Access with ``BlockPublicAcls`` is accepted, then every PutObject answers
  ``AccessDenied`` (the other three settings work: ``IgnorePublicAcls`` makes a public-read
  ACL ineffective);
- CopyObject of an SSE-C object answers ``501 NotImplemented`` (rotation streams instead);
- a GET or HEAD of an SSE-C object without its key, or with a wrong one, answers 400;
- with ``rgw_crypt_require_ssl`` (its default) SSE-C over plain HTTP is refused with a bare
  ``InvalidRequest`` (no message);
- bucket policies are evaluated, but the SSE-C condition keys are not offered to them.
"""
from __future__ import annotations

import json
import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from sqlalchemy import select

from gateway.crypto import envelope
from gateway.db.models import Organisation, StoredObject
from gateway.keys import rotation
from gateway.principal import Actor
from gateway.storage import (
    BPA_RELAXED,
    ObjectStore,
    SseCRefused,
    StorageError,
    ssec_params,
)
from tests.ceph import CephEndpoint
from tests.stack import LiveGateway, Stack, build_stack

pytestmark = pytest.mark.ceph

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
MARKER = b"PATIENT-NAME-Jane-Doe-1970-01-01"
MIB = 1024 * 1024
BPA_CONFIG = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
              "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def document(size: int, seed: int) -> bytes:
    """A PDF of ``size`` bytes: random bytes with :data:`MARKER` every MiB and at the end."""
    rnd = random.Random(seed)
    out = bytearray(PDF)
    while len(out) < size:
        out += MARKER + rnd.randbytes(MIB)
    return bytes(out[:size - len(MARKER)] + MARKER)


def actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)


def ssec_key(stack: Stack, org_id: str, version: int) -> bytes:
    with stack.services.sessions() as s:
        return stack.services.keyring.ssec_key(s, org_id, version)


def row(stack: Stack, object_id: str) -> StoredObject:
    with stack.services.sessions() as s:
        obj = s.get(StoredObject, object_id)
        assert obj is not None
        return obj


def status_of(call, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
    """The HTTP status of a boto3 call that is expected to be refused."""
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    return int(info.value.response["ResponseMetadata"]["HTTPStatusCode"])


@contextmanager
def stored_pieces(ceph: CephEndpoint) -> Iterator[list[bytes]]:
    """The RADOS objects written by the ``with`` block (tests here write one after another).

    Beneath radosgw, one S3 object is a head object, and parts and tails (whose names do not
    always carry the S3 key): what Ceph holds of everything S3 stored meanwhile.
    """
    before = set(ceph.rados_objects())
    pieces: list[bytes] = []
    yield pieces
    pieces.extend(ceph.rados_get(name) for name in sorted(set(ceph.rados_objects()) - before))


def anonymous_get(ceph: CephEndpoint, bucket: str, key: str) -> int:
    """The status of an unsigned GET (anyone on the network)."""
    return requests.get(f"{ceph.endpoint}/{bucket}/{key}", timeout=10).status_code


def new_bucket(ceph: CephEndpoint, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    ceph.client().create_bucket(Bucket=name)
    return name


@contextmanager
def rgw_option(ceph: CephEndpoint, name: str, value: str, restore: str) -> Iterator[None]:
    ceph.set_rgw_option(name, value)
    try:
        yield
    finally:
        ceph.set_rgw_option(name, restore)


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def ceph_stack(ceph_endpoint: CephEndpoint, tmp_path: Path) -> Iterator[Stack]:
    """A seeded gateway (SQLite) whose bucket is on Ceph."""
    s = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", ceph_endpoint.endpoint, tmp_path)
    yield s
    s.close()


@pytest.fixture(scope="module")
def ceph_live(ceph_endpoint: CephEndpoint,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """The real gateway under gunicorn, its bucket on Ceph."""
    tmp = tmp_path_factory.mktemp("ceph-live")
    s = build_stack(f"sqlite:///{tmp / 'gw.db'}", ceph_endpoint.endpoint, tmp)
    gw = LiveGateway(s, tmp / "gunicorn.log")
    yield gw
    gw.stop()
    s.close()


def api(live: LiveGateway, method: str, who: str, path: str,
        **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {live.stack.users[who].token}",
               **kwargs.pop("headers", {})}
    return requests.request(method, f"{live.url}/api/v1/files/{path}", headers=headers,
                            timeout=60, **kwargs)


# --------------------------------------------------------------------------------------------
# storage setup


def test_setup_bucket_leaves_a_writable_bucket_and_says_what_ceph_refused(
        ceph_endpoint: CephEndpoint) -> None:
    client = ceph_endpoint.client()
    # The quirk itself, on a scratch bucket: with BlockPublicAcls set, Ceph 16 denies every
    # write (should a later version not, setup must keep the whole block on).
    scratch = new_bucket(ceph_endpoint, "gw-bpa")
    client.put_public_access_block(Bucket=scratch, PublicAccessBlockConfiguration=BPA_CONFIG)
    try:
        client.put_object(Bucket=scratch, Key="k", Body=b"x")
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "AccessDenied"
        bpa_denies_writes = True
    else:
        bpa_denies_writes = False
    client.delete_public_access_block(Bucket=scratch)
    client.put_object(Bucket=scratch, Key="k", Body=b"x")  # the block was the cause

    bucket = f"gw-setup-{secrets.token_hex(4)}"
    store = ObjectStore(bucket, endpoint_url=ceph_endpoint.endpoint)
    origin = "http://127.0.0.1:8000"
    lines = store.setup_bucket(origin=origin)
    assert lines[0] == f"created bucket {bucket}"
    if bpa_denies_writes:
        assert BPA_RELAXED in lines and "Block Public Access on" not in lines
        config = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert config == {**BPA_CONFIG, "BlockPublicAcls": False}  # as said
    else:
        assert "Block Public Access on" in lines
    # what Ceph 16 does not implement is reported as such, not as done
    by_step = {line.split(":")[0]: line for line in lines[1:]}
    assert by_step["object ownership"].endswith("not supported here (InvalidArgument)")
    assert by_step["default encryption SSE-S3 beneath client-side encryption"].endswith(
        "not supported here (InvalidArgument)")
    assert client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"] \
        .get("Rules") in (None, [])
    # ... and what it reports as done is in place
    assert "policy: deny public grants and (over HTTPS) plain-HTTP access" in lines
    policy = json.loads(client.get_bucket_policy(Bucket=bucket)["Policy"])
    assert [st["Sid"] for st in policy["Statement"]] == ["DenyPublicAcls"]  # plain HTTP here
    assert f"CORS: GET/HEAD from {origin} only" in lines
    rules = client.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rules[0]["AllowedOrigins"] == [origin]

    # the gateway can write (single put and multipart, SSE-C too), and the probe left nothing
    assert list(store.list_keys()) == []
    key = secrets.token_bytes(32)
    store.put_bytes("probe/small", b"small", sse_c=key)
    writer = store.writer("probe/multipart", part_size=5 * MIB)
    writer.write(bytes(11 * MIB))
    writer.close()
    assert store.get_bytes("probe/small", sse_c=key) == b"small"
    assert store.head("probe/multipart").size == 11 * MIB
    assert store.list_multipart_uploads() == []

    # nothing is public: anonymous reads are refused, and so are public ACL grants
    assert anonymous_get(ceph_endpoint, bucket, "probe/small") == 403
    assert status_of(client.put_object_acl, Bucket=bucket, Key="probe/small",
                     ACL="public-read") == 403
    assert status_of(client.put_bucket_acl, Bucket=bucket, ACL="public-read") == 403

    # run again: the bucket exists, the same honest answer
    again = store.setup_bucket(origin=origin)
    assert again[0] == f"bucket {bucket} exists"
    assert (BPA_RELAXED in again) == bpa_denies_writes
    store.put_bytes("probe/again", b"again")


def test_no_object_in_a_set_up_bucket_can_be_made_public(ceph_endpoint: CephEndpoint) -> None:
    bucket = f"gw-public-{secrets.token_hex(4)}"
    ObjectStore(bucket, endpoint_url=ceph_endpoint.endpoint).setup_bucket(origin=None)
    client = ceph_endpoint.client()
    try:
        client.put_object(Bucket=bucket, Key="published", Body=b"x", ACL="public-read")
    except ClientError:
        return  # refused: nothing can be published
    assert anonymous_get(ceph_endpoint, bucket, "published") == 403


# --------------------------------------------------------------------------------------------
# SSE-C enforced end to end


def test_ssec_upload_reads_back_through_the_gateway_and_ceph_refuses_it_without_the_key(
        ceph_live: LiveGateway, ceph_endpoint: CephEndpoint) -> None:
    stack = ceph_live.stack
    big = document(2 * 8 * MIB + 12345, seed=1)  # three parts of a multipart upload
    small = document(100_000, seed=2)
    wrong = secrets.token_bytes(32)
    client = ceph_endpoint.client()
    for path, data in (("uploads/ssec/big.pdf", big), ("uploads/ssec/small.pdf", small)):
        with stored_pieces(ceph_endpoint) as pieces:
            resp = api(ceph_live, "PUT", "staffs", path, data=data)
        assert resp.status_code == 201, resp.text
        assert resp.json()["encryption"] == "ssec"
        obj = row(stack, resp.json()["id"])
        key = ssec_key(stack, stack.org_ssec, obj.key_version)

        # through the gateway: whole, and ranges (across part boundaries for the big one)
        got = api(ceph_live, "GET", "staffs", path)
        assert got.status_code == 200 and got.content == data
        ranges = [(0, 99), (len(data) - 1000, len(data) - 1)]
        if len(data) > 8 * MIB:
            ranges += [(8 * MIB - 50, 8 * MIB + 49), (MIB, 2 * 8 * MIB + 10)]
        for start, end in ranges:
            part = api(ceph_live, "GET", "staffs", path, headers={"Range": f"bytes={start}-{end}"})
            assert part.status_code == 206, part.text
            assert part.content == data[start:end + 1]
            assert part.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
        suffix = api(ceph_live, "GET", "staffs", path, headers={"Range": "bytes=-700"})
        assert suffix.status_code == 206 and suffix.content == data[-700:]

        # directly on Ceph: without the key, or with a wrong one, nothing
        assert status_of(client.get_object, Bucket=stack.settings.s3_bucket, Key=obj.s3_key) == 400
        assert status_of(client.head_object, Bucket=stack.settings.s3_bucket, Key=obj.s3_key) == 400
        for call in (client.get_object, client.head_object):
            assert status_of(call, Bucket=stack.settings.s3_bucket, Key=obj.s3_key,
                             **ssec_params(wrong)) == 400
        assert status_of(client.get_object, Bucket=stack.settings.s3_bucket, Key=obj.s3_key,
                         Range="bytes=0-99") == 400
        # with the organisation's key it is the plaintext: the key the gateway sent is this one
        direct = client.get_object(Bucket=stack.settings.s3_bucket, Key=obj.s3_key,
                                   **ssec_params(key))["Body"].read()
        assert direct == data

        # and what Ceph keeps on its OSD is ciphertext (of the same length)
        assert sum(map(len, pieces)) == len(data)
        assert not any(MARKER in p or PDF in p or data[5000:5100] in p for p in pieces)


def test_the_plaintext_check_on_ceph_would_see_plaintext(ceph_endpoint: CephEndpoint) -> None:
    """Control for the checks above: an object stored without encryption is found as such."""
    bucket = new_bucket(ceph_endpoint, "gw-plain")
    data = document(6 * MIB, seed=3)
    with stored_pieces(ceph_endpoint) as pieces:
        ceph_endpoint.client().put_object(Bucket=bucket, Key="plain/doc", Body=data)
    assert len(pieces) == 2 and sum(map(len, pieces)) == len(data)  # head and tail
    assert all(p in data for p in pieces) and any(MARKER in p for p in pieces)


def test_client_side_encrypted_objects_are_envelope_ciphertext_in_ceph(
        ceph_live: LiveGateway, ceph_endpoint: CephEndpoint) -> None:
    stack = ceph_live.stack
    data = document(3 * MIB + 77, seed=4)
    with stored_pieces(ceph_endpoint) as pieces:
        resp = api(ceph_live, "PUT", "staff1", "documents/jane-doe/report.pdf", data=data)
    assert resp.status_code == 201, resp.text
    assert resp.json()["encryption"] == "cse"
    obj = row(stack, resp.json()["id"])
    assert "jane" not in obj.s3_key and "report" not in obj.s3_key

    raw = ceph_endpoint.client().get_object(Bucket=stack.settings.s3_bucket,
                                            Key=obj.s3_key)["Body"].read()
    assert raw.startswith(envelope.MAGIC) and raw.startswith(b"GWEN")
    assert len(raw) > len(data)
    assert MARKER not in raw and data[1000:1100] not in raw
    # Ceph adds nothing: the envelope is what it stores
    assert sum(map(len, pieces)) == len(raw) and all(p in raw for p in pieces)

    got = api(ceph_live, "GET", "staff1", "documents/jane-doe/report.pdf")
    assert got.status_code == 200 and got.content == data
    start, end = MIB - 10, 2 * MIB + 10
    part = api(ceph_live, "GET", "staff1", "documents/jane-doe/report.pdf",
               headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206 and part.content == data[start:end + 1]


# --------------------------------------------------------------------------------------------
# SSE-C rotation and migration


def test_ssec_rotation_streams_on_ceph_then_migration_moves_to_client_side(
        ceph_stack: Stack, ceph_endpoint: CephEndpoint) -> None:
    stack = ceph_stack
    services = stack.services
    who = actor(stack, "staffs")
    made = {f"uploads/rot/{i}.pdf": document(50_000 + i, seed=10 + i) for i in range(3)}
    made["uploads/rot/big.pdf"] = document(9 * MIB + 5, seed=20)  # multipart
    ids = {}
    for path, data in made.items():
        ids[path] = services.objects.upload(who, path, [data[i:i + MIB]
                                                        for i in range(0, len(data), MIB)]).id
    before = {path: row(stack, oid) for path, oid in ids.items()}
    assert {o.encryption for o in before.values()} == {"ssec"}
    old_key = ssec_key(stack, stack.org_ssec, 1)

    # Ceph 16 does not copy SSE-C objects server-side
    scratch = "uploads/x/" + secrets.token_hex(8)
    with pytest.raises(StorageError, match="NotImplemented"):
        services.store.copy(before["uploads/rot/0.pdf"].s3_key, scratch,
                            src_sse_c=old_key, dst_sse_c=secrets.token_bytes(32))

    with services.sessions() as s:
        version = services.keyring.create_org_key(s, stack.org_ssec).version
        s.commit()
    assert version == 2
    result = rotation.rewrap(services, stack.org_ssec)
    assert result.ok, result.failures
    assert (result.objects, result.copied, result.streamed) == (4, 0, 4)
    new_key = ssec_key(stack, stack.org_ssec, 2)
    bucket = stack.settings.s3_bucket
    client = ceph_endpoint.client()
    after = {path: row(stack, oid) for path, oid in ids.items()}
    assert {o.key_version for o in after.values()} == {2}
    assert {k for k, _ in services.store.list_keys(f"{stack.org_ssec}/")} == \
        {o.s3_key for o in after.values()}
    for path, data in made.items():
        old, new = before[path], after[path]
        assert new.s3_key != old.s3_key and new.sha256 == old.sha256
        obj = services.objects.find(who, path, "view")
        assert b"".join(services.objects.open(who, obj).body) == data
        part = services.objects.open(who, obj, range_header="bytes=100-40099")
        assert b"".join(part.body) == data[100:40100]
        # the old key no longer opens the object; the new one does; no key, nothing
        assert status_of(client.get_object, Bucket=bucket, Key=new.s3_key,
                         **ssec_params(old_key)) == 400
        assert status_of(client.head_object, Bucket=bucket, Key=new.s3_key) == 400
        assert client.head_object(Bucket=bucket, Key=new.s3_key,
                                  **ssec_params(new_key))["ContentLength"] == len(data)
        assert status_of(client.head_object, Bucket=bucket, Key=old.s3_key,
                         **ssec_params(old_key)) == 404
    assert services.store.list_multipart_uploads() == []

    migrated = rotation.migrate_ssec(services, stack.org_ssec)
    assert migrated.ok, migrated.failures
    assert migrated.objects == 4
    with services.sessions() as s:
        assert s.get(Organisation, stack.org_ssec).encryption_mode == "cse"
    final = {path: row(stack, oid) for path, oid in ids.items()}
    assert {o.encryption for o in final.values()} == {"cse"}
    for path, data in made.items():
        raw = client.get_object(Bucket=bucket, Key=final[path].s3_key)["Body"].read()
        assert raw.startswith(b"GWEN") and MARKER not in raw
        obj = services.objects.find(who, path, "view")
        assert b"".join(services.objects.open(who, obj).body) == data
    assert {k for k, _ in services.store.list_keys(f"{stack.org_ssec}/")} == \
        {o.s3_key for o in final.values()}
    with services.sessions() as s:
        assert not s.scalars(select(StoredObject).where(
            StoredObject.org_id == stack.org_ssec, StoredObject.encryption == "ssec")).all()


# --------------------------------------------------------------------------------------------
# bucket policies


def deny_put_unless(bucket: str, condition: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "RequireEncryption", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{bucket}/*", "Condition": condition}]})


def test_bucket_policy_conditions_are_enforced_by_ceph(ceph_endpoint: CephEndpoint) -> None:
    client = ceph_endpoint.client()
    bucket = new_bucket(ceph_endpoint, "gw-policy")
    client.put_bucket_policy(Bucket=bucket, Policy=deny_put_unless(
        bucket, {"Null": {"s3:x-amz-server-side-encryption": "true"}}))
    assert status_of(client.put_object, Bucket=bucket, Key="plain", Body=b"x") == 403
    client.put_object(Bucket=bucket, Key="sse", Body=b"x", ServerSideEncryption="AES256")
    # reads are not covered by the statement
    assert client.get_object(Bucket=bucket, Key="sse")["Body"].read() == b"x"
    # through the gateway's store, the denial is a storage error (the web layer's 502)
    store = ObjectStore(bucket, endpoint_url=ceph_endpoint.endpoint)
    with pytest.raises(StorageError, match="AccessDenied"):
        store.put_bytes("via-gateway", b"x")


def test_ceph_policies_cannot_require_ssec(ceph_endpoint: CephEndpoint) -> None:
    """Ceph 16 offers no SSE-C condition key to policies: a rule that demands SSE-C (the way
    one would on AWS) denies SSE-C uploads too, so it cannot be part of ``storage setup``."""
    client = ceph_endpoint.client()
    bucket = new_bucket(ceph_endpoint, "gw-policy-ssec")
    client.put_bucket_policy(Bucket=bucket, Policy=deny_put_unless(
        bucket, {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}}))
    assert status_of(client.put_object, Bucket=bucket, Key="plain", Body=b"x") == 403
    assert status_of(client.put_object, Bucket=bucket, Key="ssec", Body=b"x",
                     **ssec_params(secrets.token_bytes(32))) == 403


# --------------------------------------------------------------------------------------------
# SSE-C refused by the endpoint


def test_ssec_refused_over_plain_http_leaves_nothing_behind(
        ceph_live: LiveGateway, ceph_endpoint: CephEndpoint) -> None:
    """Ceph's default (``rgw_crypt_require_ssl = true``): SSE-C over plain HTTP is refused."""
    stack = ceph_live.stack
    store = stack.services.store
    prefix = f"{stack.org_ssec}/"
    keys_before = set(store.list_keys(prefix))
    with rgw_option(ceph_endpoint, "rgw_crypt_require_ssl", "true", restore="false"):
        with pytest.raises(SseCRefused, match="https://"):
            store.put_bytes("refused/probe", b"x", sse_c=secrets.token_bytes(32))
        for size in (1000, 9 * MIB):  # single put, and multipart
            resp = api(ceph_live, "PUT", "staffs", f"uploads/refused/{size}.pdf",
                       data=document(size, seed=size))
            assert resp.status_code == 502, resp.text
            # and a cse organisation is not affected
            ok = api(ceph_live, "PUT", "staff1", f"uploads/still-fine/{size}.pdf",
                     data=document(size, seed=size))
            assert ok.status_code == 201, ok.text
    assert set(store.list_keys(prefix)) == keys_before
    assert store.list_multipart_uploads(prefix) == []
    with stack.services.sessions() as s:
        assert not s.scalars(select(StoredObject).where(
            StoredObject.path.like("uploads/refused/%"))).all()


def test_ssec_refused_over_plain_http_is_explained(
        ceph_live: LiveGateway, ceph_endpoint: CephEndpoint) -> None:
    store = ceph_live.stack.services.store
    with rgw_option(ceph_endpoint, "rgw_crypt_require_ssl", "true", restore="false"):
        resp = api(ceph_live, "PUT", "staffs", "uploads/refused/explained.pdf",
                   data=document(1000, seed=5))
        with pytest.raises(StorageError) as info:
            store.put_bytes("refused/explained", b"x", sse_c=secrets.token_bytes(32))
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "ssec_refused", resp.text
    assert "https" in resp.json()["error"]["message"]
    assert isinstance(info.value, SseCRefused)


# --------------------------------------------------------------------------------------------
# resumable uploads on a real S3 engine


def tus_upload(live: LiveGateway, who: str, path: str, data: bytes, chunk: int) -> None:
    import base64

    headers = {"Authorization": f"Bearer {live.stack.users[who].token}", "Tus-Resumable": "1.0.0"}
    created = requests.post(f"{live.url}/api/v1/uploads", timeout=60, headers={
        **headers, "Upload-Length": str(len(data)),
        "Upload-Metadata": "path " + base64.b64encode(path.encode()).decode()})
    assert created.status_code == 201, created.text
    url = live.url + created.headers["Location"]
    offset = 0
    while offset < len(data):
        resp = requests.patch(url, data=data[offset:offset + chunk], timeout=120, headers={
            **headers, "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        assert resp.status_code == 204, resp.text
        offset = int(resp.headers["Upload-Offset"])


@pytest.mark.parametrize("who", ["staff1", "staffs"])
def test_resumable_uploads_on_ceph_store_no_plaintext(
        ceph_live: LiveGateway, ceph_endpoint: CephEndpoint, who: str) -> None:
    stack = ceph_live.stack
    data = document(14 * MIB + 777, seed=40)
    path = f"uploads/tus/{who}.pdf"
    with stored_pieces(ceph_endpoint) as pieces:
        tus_upload(ceph_live, who, path, data, chunk=3 * MIB + 5)  # parts and interim objects
    got = api(ceph_live, "GET", who, path)
    assert got.status_code == 200 and got.content == data
    assert not any(MARKER in p or data[5000:5100] in p for p in pieces)
    if who == "staffs":  # the parts went to Ceph under the organisation's SSE-C key
        with stack.services.sessions() as s:
            obj = s.scalar(select(StoredObject).where(StoredObject.path == path,
                                                      StoredObject.deleted_at.is_(None)))
        assert obj.encryption == "ssec"
        client = ceph_endpoint.client()
        assert status_of(client.get_object, Bucket=stack.settings.s3_bucket, Key=obj.s3_key) == 400
