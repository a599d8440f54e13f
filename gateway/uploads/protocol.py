"""The tus 1.0.0 headers, parsed and checked: pure functions, no I/O.

See https://tus.io/protocols/resumable-upload (core, and the creation, creation-with-upload,
termination, expiration and checksum extensions). Every refusal is a
:class:`~gateway.uploads.errors.BadUploadRequest` (400) with a message that says what is wrong.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from .errors import BadUploadRequest, UnsupportedChecksum

TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "termination", "expiration", "checksum")
CHECKSUM_ALGORITHMS = ("sha256", "sha1", "md5")
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
#: longest ``Upload-Metadata`` header accepted
MAX_METADATA = 8192


def parse_count(name: str, value: str | None, *, required: bool = True) -> int | None:
    """A non-negative decimal header value (``Upload-Length``, ``Upload-Offset``)."""
    if value is None or value == "":
        if required:
            raise BadUploadRequest(f"the {name} header is missing")
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 19:
        raise BadUploadRequest(f"{name} must be a whole number of bytes")
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (the value may be absent).

    Keys must be unique ASCII without spaces or commas; values must decode as UTF-8.
    """
    if not value:
        return {}
    if len(value) > MAX_METADATA:
        raise BadUploadRequest("Upload-Metadata is too long")
    found: dict[str, str] = {}
    for pair in value.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not key.isascii() or not key.isprintable() or key in found:
            raise BadUploadRequest("Upload-Metadata has a bad or repeated key")
        encoded = encoded.strip()
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8") if encoded else ""
        except (binascii.Error, UnicodeDecodeError):
            raise BadUploadRequest(f"Upload-Metadata value of {key!r} is not base64 UTF-8") from None
        found[key] = decoded
    return found


def target_path(metadata: dict[str, str]) -> str:
    """The object path an upload names: ``path``, or ``folder`` and ``filename``."""
    if metadata.get("path"):
        return metadata["path"]
    folder, filename = metadata.get("folder", ""), metadata.get("filename", "")
    if folder and filename:
        return folder.rstrip("/") + "/" + filename
    raise BadUploadRequest("Upload-Metadata must name a path, or a folder and a filename")


def flag(metadata: dict[str, str], key: str) -> bool:
    return metadata.get(key, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class Checksum:
    """An ``Upload-Checksum``: the algorithm and the digest the PATCH body must have."""

    algorithm: str
    digest: bytes

    def hasher(self) -> "hashlib._Hash":
        return hashlib.new(self.algorithm)


def parse_checksum(value: str | None) -> Checksum | None:
    """``Upload-Checksum: ALGORITHM BASE64DIGEST``."""
    if not value:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise UnsupportedChecksum(
            f"checksum algorithm {algorithm[:20]!r} is not supported; use one of "
            + ", ".join(CHECKSUM_ALGORITHMS))
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise BadUploadRequest("Upload-Checksum's digest is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise BadUploadRequest("Upload-Checksum's digest has the wrong length")
    return Checksum(algorithm, digest)
