"""Storage: the bucket, and nothing else. The only room that imports boto3 (with
:mod:`gateway.keys.kms`).

Rooms: :mod:`.s3` (:class:`ObjectStore`, streaming multipart uploads, ranged reads, bucket
setup), :mod:`.multipart` (a multipart upload carried on across requests), :mod:`.streams`
(read-ahead of iterators in a thread, hashing on a native thread; no I/O of
its own),
:mod:`.errors`.

May import: :mod:`gateway.errors`, boto3 and botocore; nothing else of the gateway. Bytes in
and out are ciphertext (or SSE-C plaintext sent over TLS); this room never sees a key but the
SSE-C key it is handed per call.
"""
from .errors import SseCRefused, StorageError, StorageNotFound
from .multipart import MIN_PART_SIZE, ResumableMultipart
from .s3 import (
    BPA_RELAXED,
    MAX_PARTS_IN_FLIGHT,
    PART_SIZE,
    BucketEncryption,
    ObjectStore,
    StoredInfo,
    UploadWriter,
    crc32_b64,
    ssec_blocked_help,
    ssec_params,
)
from .streams import OffloadedHash, offload, read_ahead

__all__ = [
    "BPA_RELAXED", "BucketEncryption", "MAX_PARTS_IN_FLIGHT", "MIN_PART_SIZE", "PART_SIZE",
    "ObjectStore", "ResumableMultipart", "SseCRefused",
    "StorageError", "StorageNotFound", "StoredInfo", "UploadWriter", "crc32_b64",
    "OffloadedHash", "offload", "read_ahead", "ssec_blocked_help", "ssec_params",
]
