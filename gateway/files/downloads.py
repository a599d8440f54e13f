"""The read path's pieces that need no audit: the answer to a GET, and the plaintext stream.

:func:`plaintext` turns an object's bytes in the bucket into its plaintext (whole, or one
range), with its first bytes already authenticated; :func:`open_ranges` does the same for
several ranges sharing one header (a ``multipart/byteranges`` answer, :func:`multipart`).

What vouches for the bytes:

* client-side encrypted objects: the format itself. Every segment is authenticated with its
  index and last flag, the header commits to the data key, the organisation and the storage
  id (fresh for every upload and re-encryption), and the header's salt must be the catalog's.
  A whole read also counts the plaintext against the catalog's size. The plaintext SHA-256
  (the upload's receipt, and the ETag) is not recomputed: it would add nothing the format
  does not prove, at more than half of a download's CPU;
* SSE-C objects: S3 alone decrypts them, so a whole read's SHA-256 is checked against the
  catalog before its last bytes are released (:func:`checked`).

A ranged read of a client-side encrypted object makes one S3 request on its critical path:
the segments are fetched at the offsets the default segment size gives while the header is
fetched beside them; the header, once authenticated, confirms the guess (an object with
another segment size is fetched again at the right offsets). A range that starts in the first
segment is one request for the header and the segments together. The header is read as the
first :data:`HEADER_FETCH` bytes, not 81: S3 engines that write a response's head and a tiny
body apart (Ceph's radosgw without ``tcp_nodelay``) hold the body back until the client's
delayed ACK, 40 ms later. Authenticated headers are kept for the next ranges of the same
object (:data:`HEADER_CACHE` of them, in memory; checked again on every use), so that a
video's seeks make one request each.
"""
from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from ..crypto import envelope
from ..db.models import EncryptionMode, StoredObject
from ..storage import ObjectStore
from .ranges import ByteRange

#: S3 body chunks of a whole read: one sealed segment of the default size each, so that
#: every segment is decrypted from one buffer, without gathering pieces
SEALED_CHUNK = envelope.DEFAULT_SEGMENT_SIZE + envelope.TAG_SIZE
#: bytes fetched to read a header apart (see above)
HEADER_FETCH = 128 * 1024
#: authenticated headers kept in memory, most recently used first out last
HEADER_CACHE = 4096

#: threads that open a download's stream (its first S3 requests and first segment) while
#: the request thread records the opening audit row
OPENING = ThreadPoolExecutor(max_workers=32, thread_name_prefix="download-open")

_headers: OrderedDict[tuple[str, str], bytes] = OrderedDict()
_headers_lock = threading.Lock()


def _cached_header(obj: StoredObject) -> bytes | None:
    with _headers_lock:
        raw = _headers.get((obj.s3_key, obj.storage_id))
        if raw is not None:
            _headers.move_to_end((obj.s3_key, obj.storage_id))
        return raw


def _keep_header(obj: StoredObject, raw: bytes) -> None:
    with _headers_lock:
        _headers[(obj.s3_key, obj.storage_id)] = raw
        _headers.move_to_end((obj.s3_key, obj.storage_id))
        while len(_headers) > HEADER_CACHE:
            _headers.popitem(last=False)


@dataclass
class Download:
    """What the web layer needs to answer a GET or HEAD.

    ``ranges`` holds two or more ranges for a ``multipart/byteranges`` answer, whose
    ``Content-Type`` (with its boundary) is ``content_type``; ``byte_range`` a single range.
    """

    obj: StoredObject
    status: int
    length: int
    byte_range: ByteRange | None
    body: Iterator[bytes] | None
    etag: str
    ranges: list[ByteRange] = field(default_factory=list)
    content_type: str | None = None


def etag_of(obj: StoredObject) -> str:
    """A strong ETag: the plaintext's SHA-256 names the bytes exactly."""
    return f'"{obj.sha256}"'


def _failed() -> envelope.DecryptionError:
    return envelope.DecryptionError("object failed authentication")


def checked(body: Iterator[bytes], obj: StoredObject) -> Iterator[bytes]:
    """``body``, whose last bytes are released only once the whole plaintext's SHA-256
    matches the catalog (:class:`~gateway.crypto.envelope.DecryptionError` otherwise)."""
    sha = hashlib.sha256()
    seen = 0
    for chunk in body:
        sha.update(chunk)
        seen += len(chunk)
        if seen > obj.size or (seen == obj.size and sha.hexdigest() != obj.sha256):
            raise _failed()
        yield chunk
    if seen != obj.size:
        raise _failed()


def counted(body: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``body``, whose last bytes are released only if it holds exactly ``size`` bytes."""
    seen = 0
    for chunk in body:
        seen += len(chunk)
        if seen > size:
            raise _failed()
        if seen == size:
            # the end must come now: an authenticated last segment after it is impossible,
            # but the count is what the answer's Content-Length promised
            rest = next(body, None)
            if rest:
                raise _failed()
            yield chunk
            return
        yield chunk
    if seen != size:
        raise _failed()


def _opened(stream: Iterator[bytes]) -> Iterator[bytes]:
    """``stream`` with its first item already made (so its failures happen here, now)."""
    first = next(stream, None)
    return itertools.chain([] if first is None else [first], stream)


def _decryptor(obj: StoredObject, data_key: bytes, header: bytes) -> envelope.Decryptor:
    """The authenticated header's decryptor; the header must also carry the catalog's salt."""
    decryptor = envelope.Decryptor(data_key, header, org_id=obj.org_id, object_id=obj.storage_id)
    if obj.envelope_salt is not None and decryptor.header.salt != obj.envelope_salt:
        raise _failed()
    return decryptor


def _split_header(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[bytes]]:
    """The first :data:`~gateway.crypto.envelope.HEADER_SIZE` bytes, and the rest."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= envelope.HEADER_SIZE:
            rest = memoryview(buffer)[envelope.HEADER_SIZE:]
            head = buffer[:envelope.HEADER_SIZE]
            return head, itertools.chain([rest] if len(rest) else [], chunks)
    raise _failed()


def _whole(store: ObjectStore, obj: StoredObject, data_key: bytes) -> Iterator[bytes]:
    # No read-ahead thread of its own: the thread that decrypts (ObjectService._audited's)
    # reads the socket too, and the kernel's socket buffer reads ahead (measured: less CPU
    # per download than one more thread and queue, docs/performance.md)
    chunks = store.iter_object(obj.s3_key, first_chunk=envelope.HEADER_SIZE,
                               chunk_size=SEALED_CHUNK, ahead=0)
    header, rest = _split_header(chunks)
    _decryptor(obj, data_key, header)  # fails here, before the stream, on a foreign header
    stream = envelope.decrypt_stream(data_key, itertools.chain([header], rest),
                                     org_id=obj.org_id, object_id=obj.storage_id)
    return _opened(counted(stream, obj.size))


@dataclass
class _Header:
    """An object's header, fetched (or being fetched) once for every range of one answer."""

    obj: StoredObject
    data_key: bytes
    pending: Future[bytes] | None = None
    decryptor: envelope.Decryptor | None = None

    def get(self) -> envelope.Decryptor:
        if self.decryptor is None:
            assert self.pending is not None
            raw = self.pending.result()[:envelope.HEADER_SIZE]
            self.decryptor = _decryptor(self.obj, self.data_key, raw)
            self.pending = None
            _keep_header(self.obj, raw)
        return self.decryptor


def _planned(store: ObjectStore, obj: StoredObject, header: _Header, byte_range: ByteRange,
             segment_size: int) -> tuple[envelope.RangePlan, Iterator[bytes]]:
    plan = envelope.plan_range(obj.size, segment_size, byte_range.start, byte_range.end)
    start = plan.ciphertext_start
    if header.decryptor is None and header.pending is None and plan.first_segment == 0:
        start = 0  # the header and the first segments in one request
    # chunks of one sealed segment each, so that the first segment is decrypted as soon as
    # it has arrived (1 MiB chunks would wait for most of the next segment too)
    # and no read-ahead thread of their own, as for a whole read: the first segment is read
    # by the thread that opens the stream, the next ones by the one that decrypts them
    chunks = store.iter_object(obj.s3_key, start=start,
                               end_inclusive=plan.ciphertext_end_inclusive,
                               chunk_size=segment_size + envelope.TAG_SIZE,
                               first_chunk=envelope.HEADER_SIZE if start == 0 else None,
                               ahead=0)
    if start == 0:
        raw, chunks = _split_header(chunks)
        done: Future[bytes] = Future()
        done.set_result(raw)
        header.pending = done
    return plan, chunks


def _range(store: ObjectStore, obj: StoredObject, header: _Header,
           byte_range: ByteRange) -> Iterator[bytes]:
    """One range's plaintext, its first segment authenticated before this returns."""
    guess = header.decryptor.segment_size if header.decryptor else envelope.DEFAULT_SEGMENT_SIZE
    try:
        plan, chunks = _planned(store, obj, header, byte_range, guess)
    except BaseException:
        if header.pending is not None:  # the header's request is not left running unseen
            header.pending.cancel()
        raise
    try:
        decryptor = header.get()
    except BaseException:
        getattr(chunks, "close", lambda: None)()
        raise
    if decryptor.segment_size != guess:  # another segment size: fetch the right bytes
        getattr(chunks, "close", lambda: None)()
        plan, chunks = _planned(store, obj, header, byte_range, decryptor.segment_size)
    return _opened(envelope.decrypt_range(decryptor, plan, obj.size, chunks))


def _header(store: ObjectStore, obj: StoredObject, data_key: bytes,
            ranges: Iterable[ByteRange]) -> _Header:
    """The header of an answer: fetched beside the first range's segments, unless that range
    starts in the first segment (then the same request brings both)."""
    first = next(iter(ranges))
    header = _Header(obj, data_key)
    cached = _cached_header(obj)
    if cached is not None:
        header.decryptor = _decryptor(obj, data_key, cached)
    elif first.start >= envelope.DEFAULT_SEGMENT_SIZE:
        header.pending = store.get_range_bytes_async(obj.s3_key, 0, HEADER_FETCH - 1)
    return header


def plaintext(store: ObjectStore, obj: StoredObject, data_key: bytes | None,
              sse_key: bytes | None, byte_range: ByteRange | None) -> Iterator[bytes]:
    """The object's plaintext (or ``byte_range`` of it), read from ``store``.

    Its first bytes are authenticated before this returns, so that a wrong key, a damaged
    header or first segment, or a missing object is a clean error, not a cut connection.
    SSE-C objects: S3 decrypts (and serves the range itself); a whole read is
    :func:`checked`.
    """
    if sse_key is not None:
        if byte_range is None:
            return _opened(checked(store.iter_object(obj.s3_key, sse_c=sse_key), obj))
        return _opened(store.iter_object(obj.s3_key, start=byte_range.start,
                                         end_inclusive=byte_range.end, sse_c=sse_key))
    assert data_key is not None
    if obj.encryption == EncryptionMode.SSEC.value:  # pragma: no cover  (keys say otherwise)
        raise _failed()
    if byte_range is None:
        return _whole(store, obj, data_key)
    return _range(store, obj, _header(store, obj, data_key, [byte_range]), byte_range)


def open_ranges(store: ObjectStore, obj: StoredObject, data_key: bytes | None,
                sse_key: bytes | None, ranges: list[ByteRange]
                ) -> list[Callable[[], Iterator[bytes]]]:
    """One opener per range, all sharing one header: the first range is opened (and its
    first segment authenticated) now, the others when their turn comes."""
    if sse_key is not None:
        openers = [lambda r=r: _opened(store.iter_object(
            obj.s3_key, start=r.start, end_inclusive=r.end, sse_c=sse_key)) for r in ranges]
    else:
        assert data_key is not None
        header = _header(store, obj, data_key, ranges)
        openers = [lambda r=r: _range(store, obj, header, r) for r in ranges]
    first = openers[0]()
    return [lambda: first, *openers[1:]]


def boundary() -> str:
    """A fresh multipart boundary (random: it cannot be chosen to occur in the content)."""
    return "gateway-" + secrets.token_hex(16)


def part_head(boundary_text: str, content_type: str, byte_range: ByteRange, *,
              first: bool) -> bytes:
    """The delimiter and headers that open one part of a ``multipart/byteranges`` body."""
    lead = b"" if first else b"\r\n"
    return lead + (f"--{boundary_text}\r\nContent-Type: {content_type}\r\n"
                   f"Content-Range: {byte_range.content_range}\r\n\r\n").encode("latin-1")


def closing(boundary_text: str) -> bytes:
    return f"\r\n--{boundary_text}--\r\n".encode("latin-1")


def multipart_length(boundary_text: str, content_type: str, ranges: list[ByteRange]) -> int:
    """The exact length of :func:`multipart`'s body (the answer's ``Content-Length``)."""
    return sum(len(part_head(boundary_text, content_type, r, first=i == 0)) + r.length
               for i, r in enumerate(ranges)) + len(closing(boundary_text))


def multipart(boundary_text: str, content_type: str, ranges: list[ByteRange],
              openers: list[Callable[[], Iterator[bytes]]]) -> Iterator[bytes]:
    """A ``multipart/byteranges`` body (RFC 9110, section 14.6): each part's plaintext comes
    from its opener, authenticated like a single range."""
    for index, (byte_range, opener) in enumerate(zip(ranges, openers)):
        yield part_head(boundary_text, content_type, byte_range, first=index == 0)
        yield from opener()
    yield closing(boundary_text)
