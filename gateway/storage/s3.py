"""The S3 store: the only module (with :mod:`gateway.keys.kms`) that talks to AWS.

botocore errors are translated here, once, into :class:`~gateway.storage.errors.StorageError`,
:class:`~gateway.storage.errors.StorageNotFound` and :class:`~gateway.storage.errors.SseCRefused`;
nothing above this module knows botocore.
Object bodies stream both ways: uploads go out as a multipart upload whose parts are sent by a
background thread while the next part is being encrypted, downloads come back in chunks.
"""
from __future__ import annotations

import base64
import hashlib
import json
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import SseCRefused, StorageError, StorageNotFound
from .streams import offload, read_ahead

PART_SIZE = 6 * 1024 * 1024
MAX_PARTS_IN_FLIGHT = 3
#: every this many parts the part size grows by PART_SIZE, so that S3's limit of 10,000 parts
#: allows objects far beyond the default upload limit (2,000 × 6 MiB = 11.7 GiB at the first
#: size; 180 GiB in all) while ordinary objects keep memory at a few parts of 6 MiB.
PARTS_PER_SIZE_STEP = 2000
READ_CHUNK = 1024 * 1024
#: chunks of an S3 body read ahead of the consumer (so reading overlaps decrypting and
#: writing to the client)
READ_AHEAD = 4

SSEC_HELP = (
    "the bucket refuses SSE-C (server-side encryption with customer-provided keys). Allow "
    "SSE-C in the bucket's default-encryption settings (blocked encryption types), or move the "
    "organisation to client-side encryption with: gateway keys migrate-ssec --org ORG"
)
SSEC_TLS_HELP = (
    "S3 refuses SSE-C over plain HTTP: point GATEWAY_S3_ENDPOINT_URL at an https:// endpoint, "
    "or move the organisation to client-side encryption with: gateway keys migrate-ssec --org ORG"
)


BPA_RELAXED = (
    "Block Public Access on, except BlockPublicAcls, which this S3 implementation applies by "
    "denying every write; public ACLs are ignored (IgnorePublicAcls) instead"
)


def crc32_b64(data: bytes | bytearray | memoryview) -> str:
    """The ``x-amz-checksum-crc32`` value of ``data`` (big-endian CRC32, base64)."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


def ssec_params(key: bytes | None, *, copy_source: bool = False) -> dict[str, Any]:
    """The three SSE-C parameters for a call (botocore adds the key's base64 and MD5)."""
    if key is None:
        return {}
    prefix = "CopySource" if copy_source else ""
    return {f"{prefix}SSECustomerAlgorithm": "AES256", f"{prefix}SSECustomerKey": key}


@dataclass(frozen=True)
class StoredInfo:
    size: int
    etag: str
    metadata: dict[str, str]


class ObjectStore:
    """One bucket, reached with boto3's usual credential chain."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 4, "mode": "standard"},
                max_pool_connections=64,
                # the parts carry their own CRC32, which the signature covers and S3 checks;
                # hashing every byte again for the signature (botocore's default whenever a
                # request has no Content-MD5) would only repeat that check at a cost
                s3={"payload_signing_enabled": False,
                    **({"addressing_style": "path"} if endpoint_url else {})},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-parts")
        # small reads made beside a download's main request (a ranged read's header), apart
        # from the upload parts so that they never queue behind them
        self._reads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="s3-reads")

    @property
    def _plain_http(self) -> bool:
        return bool(self.endpoint_url) and str(self.endpoint_url).lower().startswith("http://")

    def __repr__(self) -> str:
        return f"ObjectStore(bucket={self.bucket!r}, endpoint_url={self.endpoint_url!r})"

    # -- errors --------------------------------------------------------------------------------

    def _translate(self, exc: Exception, *, key: str | None = None, sse_c: bool = False) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            message = str(err.get("Message", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload") or (
                status == 404 and code != "NoSuchBucket"
            ):
                return StorageNotFound(f"no object {key!r}" if key else "no such object")
            if sse_c and ("secure connection" in message.lower() or "https" in message.lower()):
                return SseCRefused(SSEC_TLS_HELP)
            lowered = message.lower()
            if sse_c and (
                "sse-c" in lowered or "customer" in lowered or "encryption type" in lowered
                or code in ("InvalidEncryptionAlgorithmError",)
            ):
                return SseCRefused(SSEC_HELP)
            if sse_c and code == "InvalidRequest" and self._plain_http:
                # Ceph RGW refuses SSE-C over plain HTTP with a bare InvalidRequest (no message)
                return SseCRefused(SSEC_TLS_HELP)
            return StorageError(f"storage answered {code or status}: {message[:200]}")
        return StorageError(f"storage unreachable: {type(exc).__name__}")

    def _call(self, op: str, *, key: str | None = None, sse_c: bool = False, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, op)(Bucket=self.bucket, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, key=key, sse_c=sse_c) from None

    # -- whole objects -------------------------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`StorageError` unless the bucket answers."""
        self._call("head_bucket")

    def put_bytes(self, key: str, data: bytes | bytearray, *,
                  metadata: dict[str, str] | None = None, sse_c: bytes | None = None) -> None:
        self._call("put_object", key=key, sse_c=sse_c is not None, Key=key, Body=data,
                   ChecksumCRC32=crc32_b64(data), Metadata=metadata or {}, **ssec_params(sse_c))

    def get_bytes(self, key: str, *, sse_c: bytes | None = None) -> bytes:
        return b"".join(self.iter_object(key, sse_c=sse_c, ahead=0))

    def get_range_bytes(self, key: str, start: int, end_inclusive: int, *,
                        sse_c: bytes | None = None) -> bytes:
        """Bytes ``start..end_inclusive`` of an object, in memory (small ranges only)."""
        return b"".join(self.iter_object(key, start=start, end_inclusive=end_inclusive,
                                         sse_c=sse_c, ahead=0))

    def get_range_bytes_async(self, key: str, start: int, end_inclusive: int, *,
                              sse_c: bytes | None = None) -> Future[bytes]:
        """:meth:`get_range_bytes` made by a thread, so that it overlaps another request."""
        return self._reads.submit(self.get_range_bytes, key, start, end_inclusive, sse_c=sse_c)

    def head(self, key: str, *, sse_c: bytes | None = None) -> StoredInfo:
        resp = self._call("head_object", key=key, sse_c=sse_c is not None, Key=key,
                          **ssec_params(sse_c))
        return StoredInfo(size=int(resp["ContentLength"]), etag=resp.get("ETag", ""),
                          metadata=dict(resp.get("Metadata", {})))

    def delete(self, key: str) -> None:
        self._call("delete_object", key=key, Key=key)

    def iter_object(
        self,
        key: str,
        *,
        start: int | None = None,
        end_inclusive: int | None = None,
        sse_c: bytes | None = None,
        chunk_size: int = READ_CHUNK,
        ahead: int = READ_AHEAD,
        first_chunk: int | None = None,
    ) -> Iterator[bytes]:
        """Stream an object's bytes, or the byte range ``start..end_inclusive`` of it.

        The request is made before the first chunk is yielded, so a missing object fails at
        the call, not half-way through a response. With ``ahead`` > 0 a thread reads up to
        that many chunks ahead of the consumer. Chunks hold ``chunk_size`` bytes (the last
        one fewer), after a first one of ``first_chunk`` bytes when given (a header read
        apart, so that the chunks after it line up with the records the caller decodes).
        """
        extra: dict[str, Any] = ssec_params(sse_c)
        if start is not None:
            extra["Range"] = f"bytes={start}-{'' if end_inclusive is None else end_inclusive}"
        resp = self._call("get_object", key=key, sse_c=sse_c is not None, Key=key, **extra)
        chunks = self._iter_body(resp["Body"], chunk_size, key, first_chunk)
        return read_ahead(chunks, ahead) if ahead > 0 else chunks

    def _iter_body(self, body: Any, chunk_size: int, key: str,
                   first_chunk: int | None = None) -> Iterator[bytes]:
        try:
            if first_chunk:
                chunk = body.read(first_chunk)
                if not chunk:
                    return
                yield chunk
            for chunk in body.iter_chunks(chunk_size):
                if chunk:
                    yield chunk
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, key=key) from None
        finally:
            body.close()

    def list_keys(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every (key, size) under ``prefix``."""
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], int(item["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc) from None

    def list_multipart_uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        """Open multipart uploads as (key, upload id)."""
        resp = self._call("list_multipart_uploads", Prefix=prefix)
        return [(u["Key"], u["UploadId"]) for u in resp.get("Uploads", [])]

    def copy(self, src: str, dst: str, *, src_sse_c: bytes | None = None,
             dst_sse_c: bytes | None = None) -> None:
        """Server-side copy (the SSE-C keys of both sides sent when given)."""
        self._call("copy_object", key=src, sse_c=bool(src_sse_c or dst_sse_c), Key=dst,
                   CopySource={"Bucket": self.bucket, "Key": src},
                   **ssec_params(dst_sse_c), **ssec_params(src_sse_c, copy_source=True))

    # -- streaming upload ----------------------------------------------------------------------

    def writer(self, key: str, *, sse_c: bytes | None = None, part_size: int = PART_SIZE) -> UploadWriter:
        """A writer that streams bytes into ``key`` (see :class:`UploadWriter`)."""
        return UploadWriter(self, key, sse_c=sse_c, part_size=part_size)

    # -- bucket setup --------------------------------------------------------------------------

    def setup_bucket(self, *, origin: str | None) -> list[str]:
        """Create the bucket if missing and lock it down; returns what was done."""
        done: list[str] = []
        try:
            self.client.head_bucket(Bucket=self.bucket)
            done.append(f"bucket {self.bucket} exists")
        except ClientError:
            region = self.client.meta.region_name
            kwargs: dict[str, Any] = {"Bucket": self.bucket}
            if region and region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self.client.create_bucket(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise self._translate(exc) from None
            done.append(f"created bucket {self.bucket}")
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("put_public_access_block", "Block Public Access on", {
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True, "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True, "RestrictPublicBuckets": True}}),
            ("put_bucket_ownership_controls", "object ownership: bucket owner enforced (no ACLs)", {
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}}),
            ("put_bucket_encryption", "default encryption SSE-S3 beneath client-side encryption", {
                "ServerSideEncryptionConfiguration": {"Rules": [{
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}}),
            ("put_bucket_policy", "policy: deny public grants and (over HTTPS) plain-HTTP access", {
                "Policy": json.dumps(self.bucket_policy())}),
        ]
        if origin:
            steps.append(("put_bucket_cors", f"CORS: GET/HEAD from {origin} only", {
                "CORSConfiguration": {"CORSRules": [{
                    "AllowedOrigins": [origin], "AllowedMethods": ["GET", "HEAD"],
                    "AllowedHeaders": ["Authorization", "Range"], "MaxAgeSeconds": 600}]}}))
        for op, label, kwargs in steps:
            try:
                getattr(self.client, op)(Bucket=self.bucket, **kwargs)
            except ClientError as exc:
                done.append(f"{label}: not supported here ({exc.response['Error'].get('Code')})")
                continue
            if op == "put_public_access_block" and self._writes_refused():
                # Ceph RGW 16 accepts BlockPublicAcls, then answers AccessDenied to every
                # PutObject: a bucket the gateway cannot write to is no use. Keep the other
                # three settings (IgnorePublicAcls makes any public ACL ineffective) if that
                # lets writes through, and say so; otherwise the refusal has another cause,
                # and the whole block stays.
                relaxed = {**kwargs["PublicAccessBlockConfiguration"], "BlockPublicAcls": False}
                self.client.put_public_access_block(
                    Bucket=self.bucket, PublicAccessBlockConfiguration=relaxed)
                if not self._writes_refused():
                    done.append(BPA_RELAXED)
                    continue
                getattr(self.client, op)(Bucket=self.bucket, **kwargs)
            done.append(label)
        return done

    def _writes_refused(self, probe_key: str = ".gateway-setup-probe") -> bool:
        """Whether a PutObject into the bucket is denied (probe: put, then delete, an empty
        object at ``probe_key``).

        Only a denial counts; any other failure is left for the gateway's own calls to report.
        """
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe_key, Body=b"")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return code == "AccessDenied" or status == 403
        except BotoCoreError:
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=probe_key)
        except (ClientError, BotoCoreError):
            pass
        return False

    def bucket_policy(self) -> dict[str, Any]:
        arn = f"arn:aws:s3:::{self.bucket}"
        statements: list[dict[str, Any]] = [
            {
                "Sid": "DenyPublicAcls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObjectAcl", "s3:PutBucketAcl"],
                "Resource": [arn, f"{arn}/*"],
            },
        ]
        if self.endpoint_url is None or self.endpoint_url.startswith("https://"):
            statements.append({
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            })
        return {"Version": "2012-10-17", "Statement": statements}

    # -- the bucket's encryption settings and Object Lock (read only), audit anchors -----------

    def bucket_encryption(self) -> BucketEncryption | None:
        """The bucket's default-encryption configuration, or ``None`` when this S3 cannot say
        (the call is not implemented, or not allowed).

        AWS blocks SSE-C on new buckets since April 2026: ``GetBucketEncryption`` then names
        ``SSE-C`` among a rule's ``BlockedEncryptionTypes.EncryptionType``, and every SSE-C
        upload is refused with 403 AccessDenied.
        """
        try:
            resp = self.client.get_bucket_encryption(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code == "ServerSideEncryptionConfigurationNotFoundError":
                return BucketEncryption(blocked=(), algorithms=())
            if code in ("NoSuchBucket",):
                raise self._translate(exc) from None
            return None  # NotImplemented, AccessDenied, ...: unknown
        except BotoCoreError as exc:
            raise self._translate(exc) from None
        rules = resp.get("ServerSideEncryptionConfiguration", {}).get("Rules", []) or []
        blocked: list[str] = []
        algorithms: list[str] = []
        for rule in rules:
            for kind in (rule.get("BlockedEncryptionTypes") or {}).get("EncryptionType") or []:
                if str(kind).upper() != "NONE" and str(kind) not in blocked:
                    blocked.append(str(kind))
            algorithm = (rule.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")
            if algorithm:
                algorithms.append(str(algorithm))
        return BucketEncryption(blocked=tuple(blocked), algorithms=tuple(algorithms))

    def ssec_refusal(self, orgs: list[str]) -> str | None:
        """One line saying what to do when ``orgs`` (names of organisations in ``ssec`` mode)
        cannot upload because the bucket blocks SSE-C; ``None`` when nothing is in the way
        (or this S3 cannot say)."""
        if not orgs:
            return None
        encryption = self.bucket_encryption()
        if encryption is None or not encryption.ssec_blocked:
            return None
        return ssec_blocked_help(self.bucket, orgs)

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has S3 Object Lock enabled (``False`` when this S3 cannot say)."""
        try:
            resp = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except (ClientError, BotoCoreError):
            return False
        return resp.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def put_bytes_retained(self, key: str, data: bytes, *, retain_until: datetime | None,
                           metadata: dict[str, str] | None = None) -> None:
        """Put a small object; with ``retain_until``, under an Object Lock retention in
        compliance mode (nobody, the account's root included, can delete or overwrite that
        version before then). The bucket must have Object Lock enabled for that."""
        lock: dict[str, Any] = {}
        if retain_until is not None:  # S3 wants Content-MD5 (or an SDK checksum) with a lock
            lock = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": retain_until,
                    "ContentMD5": base64.b64encode(
                        hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")}
        self._call("put_object", key=key, Key=key, Body=data, ChecksumCRC32=crc32_b64(data),
                   Metadata=metadata or {}, **lock)

    def retention(self, key: str) -> tuple[str, datetime] | None:
        """``(mode, retain until)`` of the current version of ``key``, or ``None`` (from
        HeadObject, which every S3 with Object Lock answers)."""
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError):
            return None
        if not resp.get("ObjectLockMode") or not resp.get("ObjectLockRetainUntilDate"):
            return None
        return str(resp["ObjectLockMode"]), resp["ObjectLockRetainUntilDate"]

    def first_key(self, prefix: str) -> str | None:
        """The first key under ``prefix`` in S3's (ascending UTF-8) order, or ``None``."""
        resp = self._call("list_objects_v2", Prefix=prefix, MaxKeys=1)
        items = resp.get("Contents") or []
        return str(items[0]["Key"]) if items else None

    def list_prefixes(self, prefix: str, delimiter: str = "/") -> list[str]:
        """The common prefixes directly under ``prefix`` (the "folders")."""
        found: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix,
                                           Delimiter=delimiter):
                found.extend(str(p["Prefix"]) for p in page.get("CommonPrefixes", []) or [])
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc) from None
        return found


@dataclass(frozen=True)
class BucketEncryption:
    """A bucket's default encryption: the blocked encryption types (``SSE-C``) and the default
    algorithms (``AES256``, ``aws:kms``)."""

    blocked: tuple[str, ...]
    algorithms: tuple[str, ...]

    @property
    def ssec_blocked(self) -> bool:
        return any(kind.upper() == "SSE-C" for kind in self.blocked)


def ssec_blocked_help(bucket: str, orgs: list[str]) -> str:
    """One line: what to do when the bucket blocks SSE-C and ``orgs`` use it."""
    names = ", ".join(orgs[:5]) + (f" and {len(orgs) - 5} more" if len(orgs) > 5 else "")
    return (f"bucket {bucket} blocks SSE-C uploads (BlockedEncryptionTypes: SSE-C) but "
            f"{names} use(s) ssec: allow SSE-C in the bucket's default encryption "
            "(put-bucket-encryption with BlockedEncryptionTypes NONE) or move each to "
            "client-side encryption with: gateway keys migrate-ssec --org ORG")


class UploadWriter:
    """Streams bytes into one S3 object with bounded memory.

    Bytes are copied once, into a part buffer of ``part_size``; a full buffer is handed as it
    is to a background thread that sends it while the caller fills the next one, with at most
    :data:`MAX_PARTS_IN_FLIGHT` parts in flight, so memory stays near
    (``MAX_PARTS_IN_FLIGHT`` + 1) × ``part_size``. An object that ends before the first part
    is full is sent with one ``PutObject``. Every part carries its CRC32, computed before it
    is sent, so S3 checks each part and completes the upload from the parts' checksums.
    :meth:`abort` (called on any failure) leaves neither an object nor an open multipart
    upload behind.
    """

    def __init__(self, store: ObjectStore, key: str, *, sse_c: bytes | None, part_size: int) -> None:
        self.store = store
        self.key = key
        self.sse_c = sse_c
        self.part_size = part_size
        self._part: bytearray | None = None
        self._fill = 0
        self._upload_id: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        # buffers of parts already sent, filled again rather than allocated afresh (a new
        # buffer costs a page fault per 4 KiB as it is first written)
        self._spare: list[bytearray] = []
        self.bytes_written = 0
        self._done = False

    def _next_part_size(self) -> int:
        return self.part_size * (1 + len(self._parts) // PARTS_PER_SIZE_STEP)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        self.bytes_written += len(view)
        while view:
            if self._part is None:
                self._part = self._buffer(self._next_part_size())
                self._fill = 0
            n = min(len(view), len(self._part) - self._fill)
            self._part[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == len(self._part):
                part, self._part = self._part, None
                self._send_part(part)

    def _buffer(self, size: int) -> bytearray:
        while self._spare:
            buffer = self._spare.pop()
            if len(buffer) == size:
                return buffer
        return bytearray(size)

    def _params(self) -> dict[str, Any]:
        return dict(key=self.key, sse_c=self.sse_c is not None, Key=self.key,
                    **ssec_params(self.sse_c))

    def _send_part(self, part: bytearray) -> None:
        if self._upload_id is None:
            resp = self.store._call("create_multipart_upload", ChecksumAlgorithm="CRC32",
                                    **self._params())
            self._upload_id = resp["UploadId"]
        # keep memory bounded: wait for the oldest part when too many are in flight
        pending = [f for f in self._parts if not f.done()]
        if len(pending) >= MAX_PARTS_IN_FLIGHT:
            pending[0].result()
        number = len(self._parts) + 1
        self._parts.append(self.store._executor.submit(self._upload_part, number, part))
        for f in self._parts:
            if f.done():
                f.result()  # surface a failed part now rather than at the end

    def _upload_part(self, number: int, data: bytearray) -> dict[str, Any]:
        checksum = offload(crc32_b64, data).result()  # zlib releases the GIL
        resp = self.store._call("upload_part", UploadId=self._upload_id, PartNumber=number,
                                Body=data, ChecksumCRC32=checksum, **self._params())
        self._spare.append(data)
        return {"PartNumber": number, "ETag": resp["ETag"], "ChecksumCRC32": checksum}

    def _tail(self) -> bytearray:
        part, self._part = self._part or bytearray(), None
        del part[self._fill:]
        return part

    def close(self) -> None:
        """Finish the object. On failure the upload is aborted and the error raised."""
        try:
            if self._upload_id is None:
                self.store.put_bytes(self.key, self._tail(), sse_c=self.sse_c)
            else:
                if self._part is not None and self._fill:
                    self._send_part(self._tail())
                parts = [f.result() for f in self._parts]
                self.store._call("complete_multipart_upload", UploadId=self._upload_id,
                                 MultipartUpload={"Parts": parts}, **self._params())
            self._part = None
            self._done = True
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Abandon the upload: no object and no open multipart upload remain."""
        self._part = None
        for f in self._parts:
            f.cancel()
        for f in self._parts:
            try:
                f.result()
            except BaseException:  # noqa: BLE001  (already failing; cleaning up)
                pass
        if self._upload_id is not None:
            try:
                self.store._call("abort_multipart_upload", key=self.key, Key=self.key,
                                 UploadId=self._upload_id)
            except StorageError:
                pass
            self._upload_id = None
        if self._done:
            try:
                self.store.delete(self.key)
            except StorageError:
                pass
