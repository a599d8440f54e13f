"""The object encryption format: a segmented, key-committing AES-256-GCM envelope.

Every object is encrypted under its own random 32-byte data key. The data key, with a random
salt and the object's organisation and object id, derives a segment key and a key commitment
(HKDF-SHA256). The object is the fixed-size header followed by the plaintext cut into
segments of ``segment_size`` bytes, each sealed with AES-256-GCM under a nonce that holds the
segment's index and a last-segment flag. ``docs/format.md`` is the specification; this module
is one implementation of it.

This module is pure: bytes and iterators in, bytes out. It performs no I/O and imports only
the standard library, ``cryptography`` and :mod:`gateway.errors`.

Every failure to decrypt, whatever its cause (wrong key, damaged or truncated data, bytes
moved from another object), raises the same :class:`DecryptionError` with the same message,
so that callers learn nothing about which check failed. Wrong *arguments* (a key of the wrong
length, a negative size) raise :class:`ValueError`: those are programming errors, not data
errors.
"""
from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import GatewayError

__all__ = [
    "ALGORITHM_AES256GCM_HKDF_SHA256",
    "DATA_KEY_SIZE",
    "DEFAULT_SEGMENT_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_SEGMENTS",
    "MAX_SEGMENT_SIZE",
    "MIN_SEGMENT_SIZE",
    "TAG_SIZE",
    "VERSION",
    "WRAP_NONCE_SIZE",
    "DecryptionError",
    "Decryptor",
    "Encryptor",
    "Header",
    "RangePlan",
    "SegmentSpan",
    "ciphertext_size",
    "data_key_context",
    "decrypt_range",
    "decrypt_stream",
    "encrypt",
    "encrypt_stream",
    "new_data_key",
    "parse_header",
    "plaintext_size",
    "plan_range",
    "segment_count",
    "segment_span",
    "unwrap_key",
    "wrap_key",
]

MAGIC = b"GWEN"
VERSION = 1
ALGORITHM_AES256GCM_HKDF_SHA256 = 1

DATA_KEY_SIZE = 32
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
COMMITMENT_SIZE = 32
TAG_SIZE = 16

MIN_SEGMENT_SIZE = 16
MAX_SEGMENT_SIZE = 16 * 1024 * 1024
DEFAULT_SEGMENT_SIZE = 1 << 20
#: Segments per object. The index fits a u32 and the count does too.
MAX_SEGMENTS = 2**32 - 1

WRAP_NONCE_SIZE = 12

# magic, version, algorithm, segment size (u32 BE)
_FIXED = struct.Struct(">4sBBI")
#: Length of the header fields that the commitment covers (everything before it).
_COMMITTED_SIZE = _FIXED.size + SALT_SIZE + NONCE_PREFIX_SIZE
HEADER_SIZE = _COMMITTED_SIZE + COMMITMENT_SIZE

_SEGMENT_NONCE_SUFFIX = struct.Struct(">IB")  # segment index (u32 BE), last flag
_U32 = struct.Struct(">I")

_OBJECT_LABEL = b"gateway object v1"
_WRAP_LABEL = b"gateway key wrap v1"
_DATA_KEY_LABEL = b"data-key"

_OBJECT_FAILED = "object failed authentication"
_KEY_FAILED = "wrapped key failed authentication"


class DecryptionError(GatewayError):
    """The data could not be decrypted and authenticated.

    Raised for every kind of failure alike: wrong key, damaged, truncated, reordered or
    extended ciphertext, a header or wrapped key moved from another object. The message
    never says which check failed. Over HTTP: 502 ``integrity_failure``.
    """

    status, code = 502, "integrity_failure"
    public_message = "the stored object failed its integrity check"


def _fail() -> DecryptionError:
    return DecryptionError(_OBJECT_FAILED)


# --------------------------------------------------------------------------------------------
# Keys and derivation


def new_data_key() -> bytes:
    """Return a fresh random data key (32 bytes) for one object."""
    return os.urandom(DATA_KEY_SIZE)


def _length_prefixed(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


def _encode_id(name: str, value: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str.")
    if not value:
        raise ValueError(f"{name} must not be empty.")
    return _length_prefixed(value.encode("utf-8"))


def _check_data_key(data_key: bytes) -> None:
    if not isinstance(data_key, (bytes, bytearray)):
        raise TypeError("data key must be bytes.")
    if len(data_key) != DATA_KEY_SIZE:
        raise ValueError("data key must be 32 bytes.")


def _check_segment_size(segment_size: int) -> None:
    if not isinstance(segment_size, int) or isinstance(segment_size, bool):
        raise TypeError("segment size must be an int.")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise ValueError("segment size must be between 16 bytes and 16 MiB.")


def _derive(data_key: bytes, committed: bytes, org_id: str, object_id: str) -> tuple[bytes, bytes]:
    """Return ``(segment_key, commitment)`` for the header fields ``committed``."""
    salt = committed[_FIXED.size:_FIXED.size + SALT_SIZE]
    info = (
        _OBJECT_LABEL
        + _encode_id("org_id", org_id)
        + _encode_id("object_id", object_id)
        + committed
    )
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=info).derive(bytes(data_key))
    return okm[:32], okm[32:]


# --------------------------------------------------------------------------------------------
# Sizes


def segment_count(plaintext_size: int, segment_size: int) -> int:
    """Number of segments of an object of ``plaintext_size`` bytes (at least one).

    :raises ValueError: for a negative size, a bad segment size, or an object larger than
        :data:`MAX_SEGMENTS` segments.
    """
    _check_segment_size(segment_size)
    if plaintext_size < 0:
        raise ValueError("plaintext size must not be negative.")
    count = max(1, -(-plaintext_size // segment_size))
    if count > MAX_SEGMENTS:
        raise ValueError("plaintext is too large for this segment size.")
    return count


def ciphertext_size(plaintext_size: int, segment_size: int) -> int:
    """Size of the whole object (header included) for ``plaintext_size`` plaintext bytes.

    ``HEADER_SIZE + plaintext_size + TAG_SIZE * max(1, ceil(plaintext_size / segment_size))``.

    :raises ValueError: as :func:`segment_count`.
    """
    return HEADER_SIZE + plaintext_size + TAG_SIZE * segment_count(plaintext_size, segment_size)


def plaintext_size(ciphertext_size: int, segment_size: int) -> int:
    """Plaintext size of a whole object (header included) of ``ciphertext_size`` bytes.

    The inverse of :func:`ciphertext_size`. It checks only that the size is possible; the
    object is authenticated when it is decrypted.

    :raises DecryptionError: if no plaintext size gives this ciphertext size.
    :raises ValueError: for a bad segment size.
    """
    _check_segment_size(segment_size)
    body = ciphertext_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise _fail()
    sealed = segment_size + TAG_SIZE
    count = -(-body // sealed)
    last = body - (count - 1) * sealed
    # The last segment holds 1..segment_size bytes, or 0 when it is the only one.
    if count > MAX_SEGMENTS or last < TAG_SIZE + (1 if count > 1 else 0):
        raise _fail()
    return body - count * TAG_SIZE


# --------------------------------------------------------------------------------------------
# Header


@dataclass(frozen=True)
class Header:
    """The fields of an object header, as read by :func:`parse_header`.

    **Unverified**: these are whatever bytes the object carries. Nothing here is authentic
    until :class:`Decryptor` has checked the commitment with the right data key, org id and
    object id.
    """

    version: int
    algorithm: int
    segment_size: int
    salt: bytes
    nonce_prefix: bytes
    commitment: bytes
    raw: bytes


def parse_header(data: bytes) -> Header:
    """Split the first :data:`HEADER_SIZE` bytes of ``data`` into **unverified** fields.

    Only the shape is checked (magic, version, algorithm, segment size range, length);
    nothing is authenticated. Use it to learn the segment size or the salt of an object (for
    example to find its catalog row), never to trust the object. Bytes after the header are
    ignored, so ``data`` may be the start of an object.

    :raises DecryptionError: if ``data`` does not start with a header this module can read.
    """
    if len(data) < HEADER_SIZE:
        raise _fail()
    raw = bytes(data[:HEADER_SIZE])
    magic, version, algorithm, segment_size = _FIXED.unpack_from(raw, 0)
    if (
        magic != MAGIC
        or version != VERSION
        or algorithm != ALGORITHM_AES256GCM_HKDF_SHA256
        or not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE
    ):
        raise _fail()
    salt_end = _FIXED.size + SALT_SIZE
    return Header(
        version=version,
        algorithm=algorithm,
        segment_size=segment_size,
        salt=raw[_FIXED.size:salt_end],
        nonce_prefix=raw[salt_end:_COMMITTED_SIZE],
        commitment=raw[_COMMITTED_SIZE:],
        raw=raw,
    )


# --------------------------------------------------------------------------------------------
# Encryption


def _byte_view(data: bytes | bytearray | memoryview) -> memoryview:
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _is_immutable(data: object) -> bool:
    if isinstance(data, memoryview):
        return isinstance(data.obj, bytes)
    return isinstance(data, bytes)


_Piece = bytes | bytearray | memoryview


def _stable_view(chunk: bytes | bytearray | memoryview) -> memoryview:
    """A byte view of ``chunk`` that may be kept across ``yield``.

    A view of immutable bytes is kept as is (no copy). Anything else is copied first, since
    the caller may reuse or resize its buffer as soon as control returns to it (and a live
    view would stop it from resizing).
    """
    if not _is_immutable(chunk):
        chunk = bytes(chunk)
    return _byte_view(chunk)


def _gather(pending: list[_Piece], piece: memoryview) -> None:
    """Append ``piece`` to a segment being gathered, keeping at most two pieces.

    A segment straddling two chunks stays two views (no copy); beyond that (many small
    chunks) the tail is accumulated in a buffer of our own, so memory stays proportional to
    the segment size whatever the chunking.
    """
    if len(pending) < 2:
        pending.append(piece)
        return
    tail = pending[-1]
    if not isinstance(tail, bytearray):
        tail = pending[-1] = bytearray(tail)
    tail += piece


class Encryptor:
    """Incremental encryption of one object.

    Write :attr:`header` first, then every result of :meth:`update`, then the result of
    :meth:`finalize`. The segment holding the end of the data must carry the last flag, so
    :meth:`update` holds back up to one segment until it knows more data follows.

    :param data_key: the object's 32-byte data key (:func:`new_data_key`).
    :param org_id: the owning organisation's id; bound into the ciphertext.
    :param object_id: the object's id; bound into the ciphertext.
    :param segment_size: plaintext bytes per segment (16 bytes to 16 MiB).
    :param salt: 32 bytes; random unless given (known-answer tests only).
    :param nonce_prefix: 7 bytes; random unless given (known-answer tests only).
    :raises ValueError: for a bad key, segment size, salt, nonce prefix or id.
    """

    def __init__(
        self,
        data_key: bytes,
        *,
        org_id: str,
        object_id: str,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        salt: bytes | None = None,
        nonce_prefix: bytes | None = None,
    ) -> None:
        _check_data_key(data_key)
        _check_segment_size(segment_size)
        if salt is None:
            salt = os.urandom(SALT_SIZE)
        elif len(salt) != SALT_SIZE:
            raise ValueError("salt must be 32 bytes.")
        if nonce_prefix is None:
            nonce_prefix = os.urandom(NONCE_PREFIX_SIZE)
        elif len(nonce_prefix) != NONCE_PREFIX_SIZE:
            raise ValueError("nonce prefix must be 7 bytes.")
        committed = (
            _FIXED.pack(MAGIC, VERSION, ALGORITHM_AES256GCM_HKDF_SHA256, segment_size)
            + bytes(salt)
            + bytes(nonce_prefix)
        )
        segment_key, commitment = _derive(data_key, committed, org_id, object_id)
        #: The object's header; write it before the segments.
        self.header: bytes = committed + commitment
        self.segment_size: int = segment_size
        self._aead = AESGCM(segment_key)
        self._nonce_prefix = bytes(nonce_prefix)
        self._index = 0
        # Plaintext not yet sealed: either copied into _buffer, or (zero-copy) a view of an
        # immutable bytes object the caller passed in. At most one of them holds data.
        self._buffer = bytearray()
        self._borrowed: memoryview | None = None
        self._finalized = False
        self._plaintext_size = 0
        self._ciphertext_size = HEADER_SIZE

    @classmethod
    def resume(cls, data_key: bytes, header: bytes, *, org_id: str, object_id: str,
               segment_index: int) -> "Encryptor":
        """An encryptor that carries on an object whose ``header`` and first
        ``segment_index`` segments were written earlier (a resumable upload).

        Feed it with :meth:`seal_segment` only: it has no knowledge of earlier plaintext.

        :raises ValueError: if ``header`` is not this format's, or for a bad key or id.
        """
        parsed = parse_header(header)
        enc = cls(data_key, org_id=org_id, object_id=object_id,
                  segment_size=parsed.segment_size, salt=parsed.salt,
                  nonce_prefix=parsed.nonce_prefix)
        if enc.header != bytes(header):
            raise ValueError("header does not belong to this key, organisation and object.")
        enc._index = segment_index
        return enc

    def seal_segment(self, plaintext: bytes | bytearray | memoryview, *, last: bool) -> bytes:
        """Seal one whole segment (``segment_size`` bytes, or fewer for the ``last`` one) at
        the next index, for a caller that knows where the object ends.

        :raises ValueError: for a segment of the wrong size.
        """
        if len(plaintext) > self.segment_size or (not last and len(plaintext) != self.segment_size):
            raise ValueError("a segment must be segment_size bytes, or fewer for the last one.")
        self._plaintext_size += len(plaintext)
        return self._seal(plaintext, last)

    @property
    def plaintext_size(self) -> int:
        """Plaintext bytes accepted so far."""
        return self._plaintext_size

    @property
    def ciphertext_size(self) -> int:
        """Object bytes produced so far, :attr:`header` included.

        After :meth:`finalize` it equals ``ciphertext_size(plaintext_size, segment_size)``.
        """
        return self._ciphertext_size

    def _seal(self, plaintext: bytes | bytearray | memoryview, last: bool) -> bytes:
        if self._index >= MAX_SEGMENTS:
            raise ValueError("plaintext is too large for this segment size.")
        nonce = self._nonce_prefix + _SEGMENT_NONCE_SUFFIX.pack(self._index, last)
        self._index += 1
        sealed = self._aead.encrypt(nonce, plaintext, None)
        self._ciphertext_size += len(sealed)
        return sealed

    def _pending(self) -> int:
        return len(self._borrowed) if self._borrowed is not None else len(self._buffer)

    def _update_parts(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        if self._finalized:
            raise ValueError("Encryptor is already finalized.")
        view = _byte_view(data)
        size = len(view)
        if not size:
            return []
        self._plaintext_size += size
        segment = self.segment_size
        parts: list[bytes] = []
        pos = 0
        pending = self._pending()
        if pending:
            if pending < segment:
                if self._borrowed is not None:
                    self._buffer[:] = self._borrowed
                    self._borrowed = None
                pos = min(segment - pending, size)
                self._buffer += view[:pos]
            if pos == size:
                return parts  # the pending segment may still be the last one
            # A full segment is pending and more data follows: it is not the last.
            if self._borrowed is not None:
                parts.append(self._seal(self._borrowed, False))
                self._borrowed = None
            else:
                parts.append(self._seal(self._buffer, False))
                self._buffer.clear()
        while size - pos > segment:
            parts.append(self._seal(view[pos:pos + segment], False))
            pos += segment
        rest = view[pos:]
        # Keep a view instead of a copy when the caller's bytes cannot change under us and
        # holding on to them does not pin much more memory than the rest itself.
        if _is_immutable(data) and 4 * len(rest) >= size:
            self._borrowed = rest
        else:
            self._buffer[:] = rest
        return parts

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Add plaintext; return the ciphertext of the segments now complete (maybe ``b""``).

        :raises ValueError: after :meth:`finalize`, or past :data:`MAX_SEGMENTS` segments.
        """
        parts = self._update_parts(data)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def finalize(self) -> bytes:
        """Seal the rest as the last segment and return it (at least :data:`TAG_SIZE` bytes).

        :raises ValueError: if called twice.
        """
        if self._finalized:
            raise ValueError("Encryptor is already finalized.")
        self._finalized = True
        if self._borrowed is not None:
            rest: bytes | bytearray | memoryview = self._borrowed
            self._borrowed = None
        else:
            rest = self._buffer
        sealed = self._seal(rest, True)
        self._buffer = bytearray()
        return sealed


def encrypt_stream(
    data_key: bytes,
    chunks: Iterable[bytes],
    *,
    org_id: str,
    object_id: str,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    salt: bytes | None = None,
    nonce_prefix: bytes | None = None,
) -> Iterator[bytes]:
    """Yield the object: the header, then ciphertext as segments complete.

    ``chunks`` may have any sizes. Parameters as for :class:`Encryptor`.
    """
    encryptor = Encryptor(
        data_key,
        org_id=org_id,
        object_id=object_id,
        segment_size=segment_size,
        salt=salt,
        nonce_prefix=nonce_prefix,
    )
    yield encryptor.header
    for chunk in chunks:
        yield from encryptor._update_parts(chunk)
    yield encryptor.finalize()


def encrypt(
    data_key: bytes,
    plaintext: bytes,
    *,
    org_id: str,
    object_id: str,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    salt: bytes | None = None,
    nonce_prefix: bytes | None = None,
) -> bytes:
    """Encrypt a whole object at once and return it, header included.

    Parameters as for :class:`Encryptor`.
    """
    encryptor = Encryptor(
        data_key,
        org_id=org_id,
        object_id=object_id,
        segment_size=segment_size,
        salt=salt,
        nonce_prefix=nonce_prefix,
    )
    parts = [encryptor.header, *encryptor._update_parts(plaintext), encryptor.finalize()]
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# Decryption


class Decryptor:
    """Decrypts the segments of one object, in any order.

    The constructor checks the header's key commitment, which authenticates every header
    field and proves that ``data_key``, ``org_id`` and ``object_id`` are the ones the object
    was encrypted for, before any segment is touched.

    :param data_key: the object's 32-byte data key.
    :param header: the object's first :data:`HEADER_SIZE` bytes, exactly.
    :param org_id: the organisation the object must belong to.
    :param object_id: the id the object must have.
    :raises DecryptionError: if the header is malformed or the commitment does not match.
    :raises ValueError: for a data key of the wrong length or an empty id.
    """

    def __init__(self, data_key: bytes, header: bytes, *, org_id: str, object_id: str) -> None:
        _check_data_key(data_key)
        if len(header) != HEADER_SIZE:
            raise _fail()
        parsed = parse_header(header)
        segment_key, commitment = _derive(
            data_key, parsed.raw[:_COMMITTED_SIZE], org_id, object_id
        )
        if not hmac.compare_digest(commitment, parsed.commitment):
            raise _fail()
        #: The verified header.
        self.header: Header = parsed
        #: Plaintext bytes per segment, from the verified header.
        self.segment_size: int = parsed.segment_size
        self._segment_key = segment_key
        self._aead = AESGCM(segment_key)
        self._nonce_prefix = parsed.nonce_prefix

    def decrypt_segment(
        self, index: int, segment: bytes | bytearray | memoryview, *, last: bool
    ) -> bytes:
        """Authenticate and decrypt segment ``index`` (ciphertext and tag).

        :param last: whether this is the object's final segment; decided by the caller from
            the end of the stream or from the object's plaintext size, never from the data.
        :raises DecryptionError: if the segment is not segment ``index`` (with that last
            flag) of this object.
        :raises ValueError: for a negative index.
        """
        nonce = self._segment_nonce(index, len(segment), last)
        try:
            return self._aead.decrypt(nonce, segment, None)
        except InvalidTag:
            raise _fail() from None

    def _segment_nonce(self, index: int, length: int, last: bool) -> bytes:
        """Check a sealed segment's length against its position; return its nonce."""
        if index < 0:
            raise ValueError("segment index must not be negative.")
        sealed = self.segment_size + TAG_SIZE
        if last:
            # Only an empty object has an empty (tag-only) last segment.
            valid = TAG_SIZE + (1 if index else 0) <= length <= sealed
        else:
            valid = length == sealed
        if not valid or index >= MAX_SEGMENTS:
            raise _fail()
        return self._nonce_prefix + _SEGMENT_NONCE_SUFFIX.pack(index, last)

    def _decrypt_pieces(self, index: int, pieces: list[_Piece], *, last: bool) -> list[bytes]:
        """Like :meth:`decrypt_segment` for a segment given as consecutive pieces.

        Two pieces (a segment straddling two chunks) are decrypted in place, without
        joining them, through the hazmat streaming GCM context. That context hands out
        plaintext before the tag is checked: here it is kept back and returned only once
        ``finalize_with_tag`` has verified the tag.
        """
        if len(pieces) == 1:
            return [self.decrypt_segment(index, pieces[0], last=last)]
        if len(pieces) > 2:
            return [self.decrypt_segment(index, b"".join(pieces), last=last)]
        total = len(pieces[0]) + len(pieces[1])
        nonce = self._segment_nonce(index, total, last)
        context = Cipher(algorithms.AES(self._segment_key), modes.GCM(nonce)).decryptor()
        body = total - TAG_SIZE
        plaintext: list[bytes] = []
        tag: list[_Piece] = []
        seen = 0
        for piece in map(memoryview, pieces):
            inside = max(0, min(len(piece), body - seen))
            if inside:
                plaintext.append(context.update(piece[:inside]))
            if inside < len(piece):
                tag.append(piece[inside:])
            seen += len(piece)
        try:
            context.finalize_with_tag(b"".join(tag))
        except InvalidTag:
            raise _fail() from None
        return [part for part in plaintext if part] or [b""]


def _read_header(chunks: Iterator[bytes]) -> tuple[bytes, memoryview]:
    """Return the header and whatever followed it in the chunk that completed it."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= HEADER_SIZE:
            return bytes(buffer[:HEADER_SIZE]), memoryview(bytes(buffer[HEADER_SIZE:]))
    raise _fail()


def decrypt_stream(
    data_key: bytes, chunks: Iterable[bytes], *, org_id: str, object_id: str
) -> Iterator[bytes]:
    """Decrypt a whole object given as chunks of any size, header first; yield plaintext.

    Yields one segment's plaintext at a time, each only after it was authenticated. The
    stream must end exactly after a segment sealed as the last one.

    Bytes already yielded stay authentic when a later segment fails, but the object as a
    whole is only proven complete when the generator finishes without error.

    :raises DecryptionError: on any failure, including a wrong key or ids, truncation, or
        data after the last segment.
    :raises ValueError: for a data key of the wrong length or an empty id.
    """
    iterator = iter(chunks)
    header, rest = _read_header(iterator)
    decryptor = Decryptor(data_key, header, org_id=org_id, object_id=object_id)
    sealed = decryptor.segment_size + TAG_SIZE
    index = 0
    # The segment being gathered, as pieces of consecutive chunks. It is decrypted once it
    # is complete and more data follows (not last) or the stream has ended (last).
    pending: list[_Piece] = []
    pending_size = 0
    for chunk in chain((rest,), iterator):
        view = _stable_view(chunk)
        size = len(view)
        if not size:
            continue
        pos = 0
        if pending:
            if pending_size < sealed:
                pos = min(sealed - pending_size, size)
                _gather(pending, view[:pos])
                pending_size += pos
            if pos == size:
                continue  # the pending segment may still be the last one
            yield from decryptor._decrypt_pieces(index, pending, last=False)
            index += 1
            pending, pending_size = [], 0
        while size - pos > sealed:
            yield decryptor.decrypt_segment(index, view[pos:pos + sealed], last=False)
            index += 1
            pos += sealed
        _gather(pending, view[pos:])
        pending_size = size - pos
    if not pending:
        raise _fail()
    yield from decryptor._decrypt_pieces(index, pending, last=True)


# --------------------------------------------------------------------------------------------
# Random access


@dataclass(frozen=True)
class SegmentSpan:
    """Where one segment lies, in the plaintext and in the whole object (header included)."""

    index: int
    plaintext_start: int
    plaintext_length: int
    ciphertext_start: int
    ciphertext_length: int
    last: bool


def segment_span(plaintext_size: int, segment_size: int, index: int) -> SegmentSpan:
    """Return where segment ``index`` of an object of ``plaintext_size`` bytes lies.

    :raises ValueError: if the object has no such segment.
    """
    count = segment_count(plaintext_size, segment_size)
    if not 0 <= index < count:
        raise ValueError("segment index is out of range.")
    start = index * segment_size
    length = min(segment_size, plaintext_size - start)
    return SegmentSpan(
        index=index,
        plaintext_start=start,
        plaintext_length=length,
        ciphertext_start=HEADER_SIZE + index * (segment_size + TAG_SIZE),
        ciphertext_length=length + TAG_SIZE,
        last=index == count - 1,
    )


@dataclass(frozen=True)
class RangePlan:
    """What to fetch and what to deliver for one plaintext byte range.

    Offsets are absolute within the whole stored object, header included, so
    ``ciphertext_start``/``ciphertext_end_inclusive`` go straight into a ranged GET.
    """

    first_segment: int
    last_segment: int
    ciphertext_start: int
    ciphertext_end_inclusive: int
    #: Plaintext bytes to drop from the start of the first segment.
    skip: int
    #: Plaintext bytes to deliver.
    length: int

    @property
    def ciphertext_length(self) -> int:
        """Number of object bytes to fetch."""
        return self.ciphertext_end_inclusive - self.ciphertext_start + 1

    @property
    def http_range(self) -> str:
        """The ``Range`` header value that fetches exactly the planned segments."""
        return f"bytes={self.ciphertext_start}-{self.ciphertext_end_inclusive}"


def plan_range(
    plaintext_size: int, segment_size: int, start: int, end_inclusive: int
) -> RangePlan:
    """Plan a read of plaintext bytes ``start..end_inclusive`` of an object.

    The plan covers only the segments the range touches.

    :raises ValueError: unless ``0 <= start <= end_inclusive < plaintext_size``.
    """
    segment_count(plaintext_size, segment_size)  # validates both sizes
    if not 0 <= start <= end_inclusive < plaintext_size:
        raise ValueError("range is not satisfiable for this object.")
    first = segment_span(plaintext_size, segment_size, start // segment_size)
    last = segment_span(plaintext_size, segment_size, end_inclusive // segment_size)
    return RangePlan(
        first_segment=first.index,
        last_segment=last.index,
        ciphertext_start=first.ciphertext_start,
        ciphertext_end_inclusive=last.ciphertext_start + last.ciphertext_length - 1,
        skip=start - first.plaintext_start,
        length=end_inclusive - start + 1,
    )


def _exact_pieces(chunks: Iterable[bytes], lengths: Iterable[int]) -> Iterator[list[_Piece]]:
    """Cut ``chunks`` into runs of exactly ``lengths`` bytes, each as a list of pieces.

    :raises DecryptionError: if the chunks end early or hold more bytes than ``lengths``.
    """
    needs = iter(lengths)
    need = next(needs, None)
    pending: list[_Piece] = []
    pending_size = 0
    for chunk in chunks:
        view = _stable_view(chunk)
        pos = 0
        while pos < len(view):
            if need is None:
                raise _fail()
            take = min(need - pending_size, len(view) - pos)
            _gather(pending, view[pos:pos + take])
            pending_size += take
            pos += take
            if pending_size == need:
                yield pending
                pending, pending_size = [], 0
                need = next(needs, None)
    if need is not None:
        raise _fail()


def decrypt_range(
    decryptor: Decryptor, plan: RangePlan, plaintext_size: int, chunks: Iterable[bytes]
) -> Iterator[bytes]:
    """Decrypt a planned range from the fetched bytes; yield exactly the plaintext slice.

    ``chunks`` must hold exactly bytes ``plan.ciphertext_start..plan.ciphertext_end_inclusive``
    of the object (a ranged GET's body), in pieces of any size. Each segment's last flag
    comes from ``plaintext_size``, which must be the object's true size (from the catalog).

    :raises DecryptionError: if any segment fails, or the bytes are too few or too many.
    :raises ValueError: if ``plan`` was not made for this object's segment size and size.
    """
    segment = decryptor.segment_size
    start = plan.first_segment * segment + plan.skip
    try:
        expected = plan_range(plaintext_size, segment, start, start + plan.length - 1)
    except ValueError:
        expected = None
    if expected != plan:
        raise ValueError("range plan does not match this object.")
    spans = [
        segment_span(plaintext_size, segment, index)
        for index in range(plan.first_segment, plan.last_segment + 1)
    ]
    remaining = plan.length
    skip = plan.skip
    runs = _exact_pieces(chunks, [span.ciphertext_length for span in spans])
    for span in spans:
        pieces = next(runs)  # raises DecryptionError itself when the bytes run out
        for plaintext in decryptor._decrypt_pieces(span.index, pieces, last=span.last):
            if skip >= len(plaintext):
                skip -= len(plaintext)
                continue
            if skip or remaining < len(plaintext):
                plaintext = plaintext[skip:skip + remaining]
                skip = 0
            remaining -= len(plaintext)
            if plaintext:
                yield plaintext
    next(runs, None)  # reads to the end of the chunks: extra bytes raise DecryptionError


# --------------------------------------------------------------------------------------------
# Key wrapping


def _check_kek(kek: bytes) -> None:
    if not isinstance(kek, (bytes, bytearray)):
        raise TypeError("key-encryption key must be bytes.")
    if len(kek) != 32:
        raise ValueError("key-encryption key must be 32 bytes.")


def data_key_context(org_id: str, object_id: str, key_version: int) -> bytes:
    """The wrapping context of an object's data key under an organisation key version.

    ``b"data-key" || u32(len(org)) || org || u32(len(object)) || object || u32(version)``
    with the ids in UTF-8: a data key wrapped for one object, organisation or version does
    not unwrap for another.

    :raises ValueError: for an empty id or a version outside ``0..2**32-1``.
    """
    if not isinstance(key_version, int) or not 0 <= key_version < 2**32:
        raise ValueError("key version must be between 0 and 2**32 - 1.")
    return (
        _DATA_KEY_LABEL
        + _encode_id("org_id", org_id)
        + _encode_id("object_id", object_id)
        + _U32.pack(key_version)
    )


def wrap_key(kek: bytes, key: bytes, context: bytes, *, nonce: bytes | None = None) -> bytes:
    """Encrypt ``key`` under the key-encryption key ``kek``, bound to ``context``.

    Returns ``nonce (12) || AES-256-GCM(kek, nonce, key, aad=b"gateway key wrap v1" || context)``,
    that is ``len(key) + 28`` bytes.

    :param nonce: 12 bytes; random unless given (known-answer tests only).
    :raises ValueError: for a ``kek`` that is not 32 bytes, an empty key, or a bad nonce.
    """
    _check_kek(kek)
    if not key:
        raise ValueError("key to wrap must not be empty.")
    if nonce is None:
        nonce = os.urandom(WRAP_NONCE_SIZE)
    elif len(nonce) != WRAP_NONCE_SIZE:
        raise ValueError("nonce must be 12 bytes.")
    return bytes(nonce) + AESGCM(bytes(kek)).encrypt(nonce, bytes(key), _WRAP_LABEL + context)


def unwrap_key(kek: bytes, blob: bytes, context: bytes) -> bytes:
    """Return the key that :func:`wrap_key` wrapped in ``blob`` for ``context``.

    :raises DecryptionError: if ``blob`` was not made by :func:`wrap_key` with this ``kek``
        and this exact ``context``, or was altered.
    :raises ValueError: for a ``kek`` that is not 32 bytes.
    """
    _check_kek(kek)
    if len(blob) <= WRAP_NONCE_SIZE + TAG_SIZE:
        raise DecryptionError(_KEY_FAILED)
    try:
        return AESGCM(bytes(kek)).decrypt(
            bytes(blob[:WRAP_NONCE_SIZE]), bytes(blob[WRAP_NONCE_SIZE:]), _WRAP_LABEL + context
        )
    except InvalidTag:
        raise DecryptionError(_KEY_FAILED) from None
