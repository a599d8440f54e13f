"""Sealing what a resumable upload keeps between requests: the tail of plaintext not yet in a
multipart part, and the SHA-256 state of the bytes received so far.

Both are sealed with AES-256-GCM under a key derived from the upload's data key (itself kept
only wrapped), with a fresh random nonce each time and the upload id, the purpose and the
offset as associated data: a sealed tail or state moved to another upload, another purpose or
another offset does not open. Pure: no I/O.

``key = HKDF-SHA256(ikm=data_key, salt=none, info=b"gateway interim v1" || u32(len(id)) || id)``;
``sealed = nonce (12) || AES-256-GCM(key, nonce, data, aad=purpose || u64(offset))``.
"""
from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .envelope import DecryptionError

_LABEL = b"gateway interim v1"
_NONCE = 12
TAIL = b"tail"
DIGEST = b"digest"


def interim_key(data_key: bytes, upload_id: str) -> bytes:
    """The key that seals an upload's interim data (never the data key itself)."""
    uid = upload_id.encode("utf-8")
    info = _LABEL + struct.pack(">I", len(uid)) + uid
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(bytes(data_key))


def seal(key: bytes, purpose: bytes, offset: int, data: bytes | bytearray | memoryview) -> bytes:
    """``data`` sealed for ``purpose`` at ``offset`` (see the module's description)."""
    nonce = os.urandom(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, bytes(data), purpose + struct.pack(">Q", offset))


def unseal(key: bytes, purpose: bytes, offset: int, blob: bytes) -> bytes:
    """What :func:`seal` sealed; :class:`DecryptionError` if it was altered or moved."""
    try:
        return AESGCM(key).decrypt(bytes(blob[:_NONCE]), bytes(blob[_NONCE:]),
                                   purpose + struct.pack(">Q", offset))
    except (InvalidTag, ValueError):
        raise DecryptionError("interim upload data failed authentication") from None
