"""Regenerate the envelope test vectors in this folder.

Run ``python tests/vectors/generate.py`` (``--check`` only compares). This script is a second,
deliberately plain implementation of ``docs/format.md`` written straight from the document,
with HKDF written out from RFC 5869 on the standard library's ``hmac`` and AES-GCM from
``cryptography``; it does not import ``gateway``. The tests
check ``gateway.envelope`` against the files it writes, so the two implementations (and the
document) must agree byte for byte.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = Path(__file__).resolve().parent

# Fixed inputs. Never random: the point is that anyone can recompute them.
DATA_KEY = bytes(range(0x00, 0x20))
SALT = bytes(range(0x40, 0x60))
NONCE_PREFIX = bytes(range(0xA0, 0xA7))
KEK = bytes(range(0xC0, 0xE0))
WRAP_NONCE = bytes(range(0xF0, 0xFC))


def lp(value: bytes) -> bytes:
    """u32 big-endian length, then the bytes."""
    return struct.pack(">I", len(value)) + value


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Extract then HKDF-Expand with SHA-256 (RFC 5869)."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def seal_object(
    data_key: bytes, org_id: str, object_id: str, segment_size: int,
    salt: bytes, nonce_prefix: bytes, plaintext: bytes,
) -> dict[str, object]:
    """Encrypt one object following docs/format.md; return every intermediate value."""
    committed = b"GWEN" + bytes([1, 1]) + struct.pack(">I", segment_size) + salt + nonce_prefix
    info = (
        b"gateway object v1"
        + lp(org_id.encode("utf-8"))
        + lp(object_id.encode("utf-8"))
        + committed
    )
    okm = hkdf_sha256(data_key, salt, info, 64)
    segment_key, commitment = okm[:32], okm[32:]
    header = committed + commitment

    pieces = [plaintext[i:i + segment_size] for i in range(0, len(plaintext), segment_size)]
    pieces = pieces or [b""]
    aead = AESGCM(segment_key)
    segments = []
    body = b""
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        nonce = nonce_prefix + struct.pack(">I", index) + bytes([1 if last else 0])
        sealed = aead.encrypt(nonce, piece, b"")
        segments.append(
            {"index": index, "last": last, "nonce": nonce.hex(), "sealed": sealed.hex()}
        )
        body += sealed

    return {
        "data_key": data_key.hex(),
        "org_id": org_id,
        "object_id": object_id,
        "segment_size": segment_size,
        "salt": salt.hex(),
        "nonce_prefix": nonce_prefix.hex(),
        "plaintext": plaintext.hex(),
        "hkdf_info": info.hex(),
        "segment_key": segment_key.hex(),
        "commitment": commitment.hex(),
        "header": header.hex(),
        "segments": segments,
        "ciphertext": (header + body).hex(),
    }


def key_wrap_vector() -> dict[str, object]:
    """A data key wrapped under an organisation key version, following docs/format.md."""
    org_id, object_id, key_version = "org-0001", "obj-0001", 3
    context = (
        b"data-key"
        + lp(org_id.encode("utf-8"))
        + lp(object_id.encode("utf-8"))
        + struct.pack(">I", key_version)
    )
    wrapped = WRAP_NONCE + AESGCM(KEK).encrypt(
        WRAP_NONCE, DATA_KEY, b"gateway key wrap v1" + context
    )
    return {
        "description": "data key wrapped under an organisation key version",
        "kek": KEK.hex(),
        "key": DATA_KEY.hex(),
        "org_id": org_id,
        "object_id": object_id,
        "key_version": key_version,
        "context": context.hex(),
        "nonce": WRAP_NONCE.hex(),
        "wrapped": wrapped.hex(),
    }


def object_vectors() -> dict[str, dict[str, object]]:
    """The object vectors, by file stem."""
    fox = b"The quick brown fox jumps over the lazy dog. "
    cases = {
        "empty": ("empty object: one tag-only last segment", "obj-empty", 16, b""),
        "one-short-segment": ("one segment, shorter than the segment size",
                              "obj-short", 64, b"hello world"),
        "one-full-segment": ("one segment, exactly the segment size",
                             "obj-full", 32, fox[:32]),
        "several-segments-last-partial": ("three segments, the last one partial",
                                          "obj-partial", 16, fox),
        "several-segments-last-full": ("three segments, the last one full",
                                       "obj-last-full", 16, fox + b"End"),
    }
    vectors = {}
    for stem, (description, object_id, segment_size, plaintext) in cases.items():
        vectors[stem] = {
            "description": description,
            **seal_object(DATA_KEY, "org-0001", object_id, segment_size, SALT, NONCE_PREFIX,
                          plaintext),
        }
    vectors["non-ascii-ids"] = {
        "description": "ids outside ASCII are encoded in UTF-8",
        **seal_object(DATA_KEY, "Praxis Müller", "befund-ü-7", 16, SALT, NONCE_PREFIX,
                      b"Befund: unauff\xc3\xa4llig"),
    }
    return vectors


def render(vector: dict[str, object]) -> str:
    return json.dumps(vector, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    files = {f"{stem}.json": render(vector) for stem, vector in object_vectors().items()}
    files["key-wrap.json"] = render(key_wrap_vector())
    stale = []
    for name, text in files.items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
