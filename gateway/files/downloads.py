"""The read path's pieces that need no audit: the answer to a GET, and the plaintext stream.

:func:`plaintext` turns an object's bytes in the bucket into its plaintext (whole, or one
range: the header, then only the segments the range touches); :func:`checked` releases a
whole read's last bytes only once its SHA-256 matches the catalog.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from typing import Iterator

from ..crypto import envelope
from ..db.models import StoredObject
from ..storage import ObjectStore
from .ranges import ByteRange


@dataclass
class Download:
    """What the web layer needs to answer a GET or HEAD."""

    obj: StoredObject
    status: int
    length: int
    byte_range: ByteRange | None
    body: Iterator[bytes] | None
    etag: str


def etag_of(obj: StoredObject) -> str:
    """A strong ETag: the plaintext's SHA-256 names the bytes exactly."""
    return f'"{obj.sha256}"'


def checked(body: Iterator[bytes], obj: StoredObject) -> Iterator[bytes]:
    """``body``, whose last bytes are released only once the whole plaintext's SHA-256
    matches the catalog (:class:`~gateway.crypto.envelope.DecryptionError` otherwise)."""
    sha = hashlib.sha256()
    seen = 0
    for chunk in body:
        sha.update(chunk)
        seen += len(chunk)
        if seen > obj.size or (seen == obj.size and sha.hexdigest() != obj.sha256):
            raise envelope.DecryptionError("object failed authentication")
        yield chunk
    if seen != obj.size:
        raise envelope.DecryptionError("object failed authentication")


def plaintext(store: ObjectStore, obj: StoredObject, data_key: bytes | None,
              sse_key: bytes | None, byte_range: ByteRange | None) -> Iterator[bytes]:
    """The object's plaintext (or ``byte_range`` of it), read from ``store``.

    SSE-C objects: S3 decrypts (and serves the range itself). Client-side encrypted objects:
    a whole read authenticates the header and the first segment before returning, so that a
    wrong key or a damaged header is a clean error, not a cut connection; a ranged read
    fetches the header, then only the segments the range needs.
    """
    if sse_key is not None:
        if byte_range is None:
            return store.iter_object(obj.s3_key, sse_c=sse_key)
        return store.iter_object(obj.s3_key, start=byte_range.start,
                                 end_inclusive=byte_range.end, sse_c=sse_key)
    assert data_key is not None
    if byte_range is None:
        stream = envelope.decrypt_stream(
            data_key, store.iter_object(obj.s3_key), org_id=obj.org_id,
            object_id=obj.storage_id)
        first = next(stream, None)
        return itertools.chain([] if first is None else [first], stream)
    header = store.get_range_bytes(obj.s3_key, 0, envelope.HEADER_SIZE - 1)
    decryptor = envelope.Decryptor(data_key, header, org_id=obj.org_id,
                                   object_id=obj.storage_id)
    plan = envelope.plan_range(obj.size, decryptor.segment_size, byte_range.start,
                               byte_range.end)
    chunks = store.iter_object(obj.s3_key, start=plan.ciphertext_start,
                               end_inclusive=plan.ciphertext_end_inclusive)
    return envelope.decrypt_range(decryptor, plan, obj.size, chunks)
