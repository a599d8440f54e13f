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
import base64
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
        "description": "a data key wrapped with data_key_context under a given key-encryption "
                       "key (in the gateway that key is the data KEK derived from an "
                       "organisation key version: see data-key-wrap.json); object_id is the "
                       "catalog's storage_id",
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


# --------------------------------------------------------------------------------------------
# The key chain (keys/README.md): master key file -> organisation key -> data KEK -> data key,
# the audit chain key and row hashes, the audit archive. Every "random" input below is the
# SHA-256 of an ASCII label, so that anyone can recompute it.


def fixed(label: str, size: int = 32) -> bytes:
    """The first ``size`` bytes of SHA-256(label): fixed, recomputable stand-ins for randomness."""
    return hashlib.sha256(label.encode("ascii")).digest()[:size]


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def text_field(value: str) -> bytes:
    """lp(utf8(value))."""
    return lp(value.encode("utf-8"))


ORG_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
OTHER_ORG_ID = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
OBJECT_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90"  # the catalog's (and the API's) objects.id
STORAGE_ID = "5d41402abc4b2a76b9719d911017c592"  # objects.storage_id: what the format binds
OBJECT_PATH = "uploads/forms/201/field_7/befund-müller.txt"
MASTER_KEYS = {1: fixed("master key v1"), 2: fixed("master key v2")}
MASTER_CREATED = {1: "2026-01-05T09:12:00Z", 2: "2026-07-01T08:00:00Z"}
ORG_KEYS = {1: fixed("org key v1"), 2: fixed("org key v2")}
AUDIT_KEY = fixed("audit chain key")
CHAIN_DATA_KEY = fixed("object data key")
CHAIN_SALT = fixed("object salt")
CHAIN_NONCE_PREFIX = fixed("object nonce prefix", 7)
CHAIN_SEGMENT_SIZE = 32
CHAIN_PLAINTEXT = (
    "Befund 2026-11-25, Patientin Müller: unauffällig. Kontrolle in sechs Monaten."
).encode("utf-8").ljust(100, b".")
WRAP_LABEL = b"gateway key wrap v1"
DEFAULT_SEGMENT_SIZE = 1 << 20


def master_key_file_text(keys: dict[int, bytes], current: int) -> str:
    """A master key file (keys/README.md, "The master key file")."""
    document = {
        "format": "gateway-master-key",
        "current": current,
        "versions": [
            {"version": n, "key": base64.b64encode(keys[n]).decode("ascii"),
             "created_at": MASTER_CREATED.get(n, "")}
            for n in sorted(keys)
        ],
    }
    return json.dumps(document, indent=2) + "\n"


def master_context(context: dict[str, str], master_key_id: str) -> bytes:
    """The master wrap's context bytes: label, field count, sorted fields, master key id."""
    out = b"master-wrap" + u32(len(context))
    for name in sorted(context, key=lambda n: n.encode("utf-8")):
        out += text_field(name) + text_field(context[name])
    return out + text_field(master_key_id)


def gcm_wrap(kek: bytes, key: bytes, context: bytes, nonce: bytes) -> bytes:
    """nonce || AES-256-GCM(kek, nonce, key, aad = "gateway key wrap v1" || context)."""
    return nonce + AESGCM(kek).encrypt(nonce, key, WRAP_LABEL + context)


def org_key_context(org_id: str, version: int) -> dict[str, str]:
    return {"org": org_id, "purpose": "org-key", "version": str(version)}


def audit_key_context(chain: str) -> dict[str, str]:
    return {"chain": chain, "purpose": "audit"}


def master_wrap(master_version: int, key: bytes, context: dict[str, str], label: str,
                keys: dict[int, bytes] = MASTER_KEYS) -> tuple[bytes, str, bytes]:
    """(blob, master_key_id, context bytes) of a key wrapped by master key file version N."""
    master_key_id = f"file:{master_version}"
    encoded = master_context(context, master_key_id)
    return gcm_wrap(keys[master_version], key, encoded, fixed(label, 12)), master_key_id, encoded


def derive_info(purpose: str, org_id: str, version: int) -> bytes:
    return b"gateway org key v1" + text_field(purpose) + text_field(org_id) + u32(version)


def derive(org_key: bytes, purpose: str, org_id: str, version: int) -> bytes:
    """HKDF-SHA256(ikm = org key, salt = 32 zero bytes, info, L = 32)."""
    return hkdf_sha256(org_key, bytes(32), derive_info(purpose, org_id, version), 32)


def data_key_context(org_id: str, storage_id: str, key_version: int) -> bytes:
    return b"data-key" + text_field(org_id) + text_field(storage_id) + u32(key_version)


def flip(data: bytes, position: int) -> bytes:
    """``data`` with the lowest bit of byte ``position`` flipped (negative counts from the end)."""
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def org_key_rows() -> tuple[list[dict[str, object]], dict[int, dict[str, bytes | str]]]:
    """The org_key_versions rows of the worked example: v1 under file:1, v2 under file:2."""
    rows, parts = [], {}
    for version, master_version, state in ((1, 1, "active"), (2, 2, "current")):
        blob, master_key_id, encoded = master_wrap(
            master_version, ORG_KEYS[version], org_key_context(ORG_ID, version),
            f"org key v{version} wrap nonce")
        parts[version] = {"blob": blob, "master_key_id": master_key_id, "encoded": encoded}
        rows.append({"org_id": ORG_ID, "version": version, "wrapped_key": blob.hex(),
                     "master_key_id": master_key_id, "state": state})
    return rows, parts


def audit_key_row() -> tuple[dict[str, object], bytes, bytes]:
    blob, master_key_id, encoded = master_wrap(
        2, AUDIT_KEY, audit_key_context(ORG_ID), "audit key wrap nonce")
    return ({"chain": ORG_ID, "wrapped_key": blob.hex(), "master_key_id": master_key_id},
            blob, encoded)


def master_wrap_vector() -> dict[str, object]:
    _rows, parts = org_key_rows()
    audit_row, audit_blob, audit_encoded = audit_key_row()
    cases = []
    for version in (1, 2):
        context = org_key_context(ORG_ID, version)
        cases.append({
            "name": f"organisation key version {version}",
            "master_key_version": int(str(parts[version]["master_key_id"])[5:]),
            "master_key_id": parts[version]["master_key_id"],
            "context": context,
            "kms_encryption_context": context,
            "context_bytes": bytes(parts[version]["encoded"]).hex(),  # type: ignore[arg-type]
            "aad": (WRAP_LABEL + bytes(parts[version]["encoded"])).hex(),  # type: ignore[arg-type]
            "nonce": bytes(parts[version]["blob"])[:12].hex(),  # type: ignore[index]
            "key": ORG_KEYS[version].hex(),
            "wrapped": bytes(parts[version]["blob"]).hex(),  # type: ignore[arg-type]
        })
    cases.append({
        "name": "audit chain key of the organisation's chain",
        "master_key_version": 2,
        "master_key_id": "file:2",
        "context": audit_key_context(ORG_ID),
        "kms_encryption_context": audit_key_context(ORG_ID),
        "context_bytes": audit_encoded.hex(),
        "aad": (WRAP_LABEL + audit_encoded).hex(),
        "nonce": audit_blob[:12].hex(),
        "key": AUDIT_KEY.hex(),
        "wrapped": audit_blob.hex(),
    })
    v2 = bytes(parts[2]["blob"])  # type: ignore[arg-type]
    other_file = master_key_file_text({1: MASTER_KEYS[1], 2: fixed("another master key v2")}, 2)
    negative = [
        {"tampered": "master_key_id relabelled file:2 -> file:1 (the id is in the context)",
         "master_key_id": "file:1", "context": org_key_context(ORG_ID, 2), "wrapped": v2.hex()},
        {"tampered": "master_key_id relabelled file:2 -> file:1, and the blob re-made under "
                     "version 1's key with file:2 in the context",
         "master_key_id": "file:1", "context": org_key_context(ORG_ID, 2),
         "wrapped": gcm_wrap(MASTER_KEYS[1], ORG_KEYS[2], master_context(
             org_key_context(ORG_ID, 2), "file:2"), fixed("relabel nonce", 12)).hex()},
        {"tampered": "version 2's wrapped key presented as version 1's (context version)",
         "master_key_id": "file:2", "context": org_key_context(ORG_ID, 1), "wrapped": v2.hex()},
        {"tampered": "organisation key presented for another organisation (context org)",
         "master_key_id": "file:2", "context": org_key_context(OTHER_ORG_ID, 2),
         "wrapped": v2.hex()},
        {"tampered": "organisation key presented as the audit key (context purpose and fields)",
         "master_key_id": "file:2", "context": audit_key_context(ORG_ID), "wrapped": v2.hex()},
        {"tampered": "audit key of this chain presented for the system chain (context chain)",
         "master_key_id": "file:2", "context": audit_key_context("system"),
         "wrapped": audit_blob.hex()},
        {"tampered": "one bit of the nonce flipped", "master_key_id": "file:2",
         "context": org_key_context(ORG_ID, 2), "wrapped": flip(v2, 0).hex()},
        {"tampered": "one bit of the encrypted key flipped", "master_key_id": "file:2",
         "context": org_key_context(ORG_ID, 2), "wrapped": flip(v2, 20).hex()},
        {"tampered": "one bit of the tag flipped", "master_key_id": "file:2",
         "context": org_key_context(ORG_ID, 2), "wrapped": flip(v2, -1).hex()},
        {"tampered": "blob cut to 28 bytes (nonce and tag only)", "master_key_id": "file:2",
         "context": org_key_context(ORG_ID, 2), "wrapped": (v2[:12] + v2[-16:]).hex()},
        {"tampered": "another key file (its version 2 holds another key)",
         "master_key_file": other_file, "master_key_id": "file:2",
         "context": org_key_context(ORG_ID, 2), "wrapped": v2.hex()},
        {"tampered": "master key version 3 is not in the file", "master_key_id": "file:3",
         "context": org_key_context(ORG_ID, 2), "wrapped": v2.hex()},
    ]
    return {
        "description": "organisation and audit keys wrapped by the master key file's versions "
                       "(keys/README.md, 'The master wrap'); kms_encryption_context is what "
                       "the aws-kms: provider sends as EncryptionContext for the same key",
        "master_key_file": master_key_file_text(MASTER_KEYS, 2),
        "cases": cases,
        "negative": negative,
    }


def data_kek_vector() -> dict[str, object]:
    cases = []
    for version in (1, 2):
        for purpose, name in (("data-kek", "data_kek"), ("sse-c", "ssec_key")):
            cases.append({
                "name": f"{name} of organisation key version {version}",
                "org_key": ORG_KEYS[version].hex(),
                "org_id": ORG_ID,
                "version": version,
                "purpose": purpose,
                "salt": bytes(32).hex(),
                "info": derive_info(purpose, ORG_ID, version).hex(),
                "derived": derive(ORG_KEYS[version], purpose, ORG_ID, version).hex(),
            })
    return {
        "description": "keys derived from an organisation key version with HKDF-SHA256 "
                       "(keys/README.md, 'Keys derived from an organisation key'): the data "
                       "KEK that wraps data keys, and the SSE-C customer key. A derivation "
                       "cannot fail by itself: a KEK derived with another purpose, version or "
                       "organisation fails at the data key wrap (data-key-wrap.json).",
        "cases": cases,
    }


def data_key_wrap_parts() -> dict[str, bytes]:
    kek = derive(ORG_KEYS[2], "data-kek", ORG_ID, 2)
    context = data_key_context(ORG_ID, STORAGE_ID, 2)
    wrapped = gcm_wrap(kek, CHAIN_DATA_KEY, context, fixed("data key wrap nonce", 12))
    return {"kek": kek, "context": context, "wrapped": wrapped}


def data_key_wrap_vector() -> dict[str, object]:
    parts = data_key_wrap_parts()
    wrapped, kek = parts["wrapped"], parts["kek"]
    good = {"org_id": ORG_ID, "storage_id": STORAGE_ID, "key_version": 2}

    def case(tampered: str, **changes: object) -> dict[str, object]:
        out: dict[str, object] = {"tampered": tampered, **good, "kek": kek.hex(),
                                  "wrapped": wrapped.hex()}
        out.update(changes)
        return out

    negative = [
        case("bound to the API object id (objects.id) instead of objects.storage_id",
             storage_id=OBJECT_ID),
        case("moved to another organisation (context org id)", org_id=OTHER_ORG_ID),
        case("relabelled with key version 1 (context version), same KEK", key_version=1),
        case("unwrapped with the data KEK of key version 1",
             kek=derive(ORG_KEYS[1], "data-kek", ORG_ID, 1).hex()),
        case("unwrapped with the organisation key itself, not the derived KEK",
             kek=ORG_KEYS[2].hex()),
        case("unwrapped with the SSE-C key of the same version (wrong purpose)",
             kek=derive(ORG_KEYS[2], "sse-c", ORG_ID, 2).hex()),
        case("unwrapped with a KEK derived for another organisation id",
             kek=derive(ORG_KEYS[2], "data-kek", OTHER_ORG_ID, 2).hex()),
        case("one bit of the nonce flipped", wrapped=flip(wrapped, 3).hex()),
        case("one bit of the encrypted key flipped", wrapped=flip(wrapped, 12).hex()),
        case("one bit of the tag flipped", wrapped=flip(wrapped, -1).hex()),
        case("cut by one byte", wrapped=wrapped[:-1].hex()),
        case("cut to 28 bytes", wrapped=wrapped[:28].hex()),
    ]
    return {
        "description": "an object's data key wrapped under the data KEK derived from its "
                       "organisation key version (not under the organisation key itself), "
                       "bound to the organisation id, objects.storage_id and the version",
        "org_key": ORG_KEYS[2].hex(),
        **good,
        "kek": kek.hex(),
        "key": CHAIN_DATA_KEY.hex(),
        "context": parts["context"].hex(),
        "aad": (WRAP_LABEL + parts["context"]).hex(),
        "nonce": wrapped[:12].hex(),
        "wrapped": wrapped.hex(),
        "negative": negative,
    }


def chain_object() -> dict[str, object]:
    return seal_object(CHAIN_DATA_KEY, ORG_ID, STORAGE_ID, CHAIN_SEGMENT_SIZE, CHAIN_SALT,
                       CHAIN_NONCE_PREFIX, CHAIN_PLAINTEXT)


def full_chain_vector() -> dict[str, object]:
    org_rows, org_parts = org_key_rows()
    audit_row, _blob, _encoded = audit_key_row()
    wrap = data_key_wrap_parts()
    sealed = chain_object()
    obj = bytes.fromhex(str(sealed["ciphertext"]))
    header_size, sealed_size = 81, CHAIN_SEGMENT_SIZE + 16
    segments = [obj[header_size + i * sealed_size:header_size + (i + 1) * sealed_size]
                for i in range(4)]
    object_row = {
        "id": OBJECT_ID,
        "org_id": ORG_ID,
        "path": OBJECT_PATH,
        "category": "uploads",
        "size": len(CHAIN_PLAINTEXT),
        "content_type": "text/plain",
        "sha256": hashlib.sha256(CHAIN_PLAINTEXT).hexdigest(),
        "encryption": "cse",
        "key_version": 2,
        "wrapped_data_key": wrap["wrapped"].hex(),
        "envelope_salt": CHAIN_SALT.hex(),
        "storage_id": STORAGE_ID,
        "s3_key": f"{ORG_ID}/uploads/{STORAGE_ID}",
    }

    def case(tampered: str, *, objects: dict[str, object] | None = None,
             org_key_versions: dict[int, dict[str, object]] | None = None,
             master_key_file: str | None = None, object_bytes: bytes | None = None,
             checked_by: str = "format") -> dict[str, object]:
        out: dict[str, object] = {"tampered": tampered, "checked_by": checked_by}
        if objects:
            out["objects"] = objects
        if org_key_versions:
            out["org_key_versions"] = {str(v): c for v, c in org_key_versions.items()}
        if master_key_file is not None:
            out["master_key_file"] = master_key_file
        if object_bytes is not None:
            out["object"] = object_bytes.hex()
        return out

    other_file = master_key_file_text({1: MASTER_KEYS[1], 2: fixed("another master key v2")}, 2)
    header = obj[:header_size]
    negative = [
        case("catalog row: storage_id replaced by the object's API id",
             objects={"storage_id": OBJECT_ID}),
        case("catalog row: key_version relabelled 2 -> 1", objects={"key_version": 1}),
        case("catalog row: wrapped_data_key tag bit flipped",
             objects={"wrapped_data_key": flip(wrap["wrapped"], -1).hex()}),
        case("catalog row: moved to another organisation (org_id)",
             objects={"org_id": OTHER_ORG_ID}),
        case("org_key_versions: version 2's master_key_id relabelled file:1",
             org_key_versions={2: {"master_key_id": "file:1"}}),
        case("org_key_versions: the wrapped keys of versions 1 and 2 swapped (with their ids)",
             org_key_versions={1: {"wrapped_key": org_rows[1]["wrapped_key"],
                                   "master_key_id": "file:2"},
                               2: {"wrapped_key": org_rows[0]["wrapped_key"],
                                   "master_key_id": "file:1"}}),
        case("another master key file (version 2 holds another key)",
             master_key_file=other_file),
        case("object: segments 1 and 2 swapped",
             object_bytes=header + segments[0] + segments[2] + segments[1] + segments[3]),
        case("object: truncated after segment 2 (the last segment dropped)",
             object_bytes=header + b"".join(segments[:3])),
        case("object: one bit flipped in segment 1's ciphertext",
             object_bytes=flip(obj, header_size + sealed_size + 5)),
        case("object: the header's segment size changed from 32 to 48",
             object_bytes=obj[:6] + u32(48) + obj[10:]),
        case("catalog row: sha256 of the plaintext altered (the format decrypts; the "
             "recovery check against the catalog must refuse)",
             objects={"sha256": hashlib.sha256(b"other").hexdigest()}, checked_by="catalog"),
    ]
    return {
        "description": "the worked example of keys/README.md: from a master key file, the "
                       "catalog rows and the stored object bytes to the plaintext",
        "master_key_file": master_key_file_text(MASTER_KEYS, 2),
        "rows": {
            "organisations": [{"id": ORG_ID, "name": "Clinic One", "encryption_mode": "cse"}],
            "org_key_versions": org_rows,
            "audit_keys": [audit_row],
            "objects": [object_row],
        },
        "object": obj.hex(),
        "plaintext": CHAIN_PLAINTEXT.hex(),
        "steps": {
            "master_key_v2": MASTER_KEYS[2].hex(),
            "org_key_context_bytes": bytes(org_parts[2]["encoded"]).hex(),  # type: ignore[arg-type]
            "org_key_aad": (WRAP_LABEL + bytes(org_parts[2]["encoded"])).hex(),  # type: ignore[arg-type]
            "org_key_v2": ORG_KEYS[2].hex(),
            "data_kek_info": derive_info("data-kek", ORG_ID, 2).hex(),
            "data_kek": wrap["kek"].hex(),
            "data_key_context": wrap["context"].hex(),
            "data_key": CHAIN_DATA_KEY.hex(),
            "hkdf_info": sealed["hkdf_info"],
            "segment_key": sealed["segment_key"],
            "commitment": sealed["commitment"],
            "segments": sealed["segments"],
        },
        "negative": negative,
    }


def object_negative_vector() -> dict[str, object]:
    sealed = chain_object()
    obj = bytes.fromhex(str(sealed["ciphertext"]))
    h, s = 81, CHAIN_SEGMENT_SIZE + 16
    seg = [obj[h + i * s:h + (i + 1) * s] for i in range(4)]
    header = obj[:h]
    good = {"data_key": CHAIN_DATA_KEY.hex(), "org_id": ORG_ID, "object_id": STORAGE_ID}

    def case(tampered: str, data: bytes, **changes: str) -> dict[str, object]:
        return {"tampered": tampered, **good, **changes, "object": data.hex()}

    empty = seal_object(CHAIN_DATA_KEY, ORG_ID, STORAGE_ID, 16, CHAIN_SALT, CHAIN_NONCE_PREFIX,
                        b"")
    empty_obj = bytes.fromhex(str(empty["ciphertext"]))
    cases = [
        case("decrypted under the API object id instead of the storage id", obj,
             object_id=OBJECT_ID),
        case("decrypted for another organisation", obj, org_id=OTHER_ORG_ID),
        case("decrypted with another data key", obj, data_key=fixed("wrong data key").hex()),
        case("magic changed (GWEN -> GWEM)", flip(obj, 3)),
        case("version byte changed 1 -> 2", obj[:4] + b"\x02" + obj[5:]),
        case("algorithm byte changed 1 -> 2", obj[:5] + b"\x02" + obj[6:]),
        case("segment size changed 32 -> 48", obj[:6] + u32(48) + obj[10:]),
        case("segment size below the minimum (8)", obj[:6] + u32(8) + obj[10:]),
        case("one bit of the salt flipped", flip(obj, 10)),
        case("one bit of the nonce prefix flipped", flip(obj, 42)),
        case("one bit of the commitment flipped", flip(obj, 49)),
        case("header cut to 80 bytes, nothing else", obj[:80]),
        case("header only: every segment dropped", header),
        case("segments 0 and 1 swapped", header + seg[1] + seg[0] + seg[2] + seg[3]),
        case("segment 1 duplicated", header + seg[0] + seg[1] + seg[1] + seg[2] + seg[3]),
        case("segment 1 dropped", header + seg[0] + seg[2] + seg[3]),
        case("truncated at a segment boundary (last segment dropped)",
             header + seg[0] + seg[1] + seg[2]),
        case("truncated inside the last segment (one byte cut)", obj[:-1]),
        case("extended by 16 zero bytes", obj + bytes(16)),
        case("extended by a copy of the last segment", obj + seg[3]),
        case("one bit of segment 2's ciphertext flipped", flip(obj, h + 2 * s + 1)),
        case("one bit of the last segment's tag flipped", flip(obj, -1)),
        case("segment 0 from another object (other salt, same data key) spliced in",
             header + bytes.fromhex(str(seal_object(
                 CHAIN_DATA_KEY, ORG_ID, STORAGE_ID, CHAIN_SEGMENT_SIZE, fixed("other salt"),
                 CHAIN_NONCE_PREFIX, CHAIN_PLAINTEXT)["ciphertext"]))[h:h + s] + b"".join(seg[1:])),
        case("empty object: its tag-only last segment dropped", empty_obj[:81]),
        case("empty object: tag-only segment followed by another tag-only segment",
             empty_obj + empty_obj[81:]),
    ]
    return {
        "description": "objects that MUST NOT decrypt (docs/format.md, 'Decrypting an "
                       "object'); each is the worked example's object (or the empty object) "
                       "with one thing tampered, and the ids and key to try it with",
        "cases": cases,
    }


def range_plan_vector() -> dict[str, object]:
    sealed = chain_object()
    obj = bytes.fromhex(str(sealed["ciphertext"]))
    size, segment = len(CHAIN_PLAINTEXT), CHAIN_SEGMENT_SIZE
    final = max(1, -(-size // segment)) - 1

    def plan(p: int, a: int, b: int) -> dict[str, int]:
        first, last = a // segment, b // segment
        len_last = min(segment, p - last * segment)
        start = 81 + first * (segment + 16)
        end = 81 + last * (segment + 16) + len_last + 16 - 1
        return {"first_segment": first, "last_segment": last, "ciphertext_start": start,
                "ciphertext_end_inclusive": end, "skip": a - first * segment,
                "length": b - a + 1}

    ranges = []
    for a, b in ((0, 0), (0, size - 1), (31, 32), (32, 63), (5, 70), (40, size - 1),
                 (size - 1, size - 1), (96, 97)):
        p = plan(size, a, b)
        ranges.append({
            "start": a, "end_inclusive": b, **p,
            "http_range": f"bytes={p['ciphertext_start']}-{p['ciphertext_end_inclusive']}",
            "last_flags": [i == final for i in range(p["first_segment"], p["last_segment"] + 1)],
            "fetched": obj[p["ciphertext_start"]:p["ciphertext_end_inclusive"] + 1].hex(),
            "plaintext": CHAIN_PLAINTEXT[a:b + 1].hex(),
        })

    def bad(tampered: str, believed: int, a: int, b: int, fetched: bytes) -> dict[str, object]:
        return {"tampered": tampered, "plaintext_size": believed, "start": a,
                "end_inclusive": b, "fetched": fetched.hex()}

    def span(p: int, a: int, b: int) -> bytes:
        q = plan(p, a, b)
        return obj[q["ciphertext_start"]:q["ciphertext_end_inclusive"] + 1]

    negative = [
        bad("fetched span missing its last byte", size, 31, 32, span(size, 31, 32)[:-1]),
        bad("fetched span with one extra byte", size, 31, 32, span(size, 31, 32) + b"\0"),
        bad("fetched span one segment later than planned", size, 0, 31, span(size, 32, 63)),
        bad("catalog size 64 instead of 100: segment 1 read as the last one", 64, 32, 63,
            span(64, 32, 63)),
        bad("catalog size 132 instead of 100: the real last segment read as a full, "
            "non-last one (the fetched bytes end where the object ends)", 132, 96, 99,
            obj[81 + 3 * (segment + 16):]),
        bad("catalog size 98 instead of 100: the last segment's span cut by two bytes", 98,
            96, 97, span(98, 96, 97)),
        bad("one bit of the first fetched segment flipped", size, 5, 70,
            flip(span(size, 5, 70), 2)),
    ]
    return {
        "description": "range plans (docs/format.md, 'Random access'): which object bytes a "
                       "plaintext range needs, and what they decrypt to; the object is the "
                       "worked example's (full-chain.json)",
        "data_key": CHAIN_DATA_KEY.hex(),
        "org_id": ORG_ID,
        "object_id": STORAGE_ID,
        "segment_size": segment,
        "plaintext_size": size,
        "object": obj.hex(),
        "ranges": ranges,
        "unsatisfiable": [{"start": size, "end_inclusive": size},
                          {"start": 10, "end_inclusive": size},
                          {"start": 20, "end_inclusive": 10}],
        "negative": negative,
    }


AUDIT_FIELDS = (
    "chain", "seq", "occurred_at", "org_id", "user_id", "user_email", "role", "action",
    "object_id", "object_path", "outcome", "http_status", "bytes", "client_addr", "user_agent",
    "request_id", "detail",
)
EXPORT_FIELDS = ("id", *AUDIT_FIELDS, "prev_hash", "row_hash")
GENESIS = "0" * 64


def audit_field(value: object) -> bytes:
    if value is None:
        return b"\xff\xff\xff\xff"
    return text_field(str(value))


def audit_message(prev_hash: str, row: dict[str, object]) -> bytes:
    return (prev_hash.encode("ascii") + audit_field("gateway-audit-v1")
            + b"".join(audit_field(row[name]) for name in AUDIT_FIELDS))


def audit_sign(key: bytes, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Chain the rows in order: prev_hash, then row_hash = HMAC-SHA256(key, message)."""
    prev, out = GENESIS, []
    for row in rows:
        row = dict(row, prev_hash=prev)
        row["row_hash"] = hmac.new(key, audit_message(prev, row), hashlib.sha256).hexdigest()
        prev = str(row["row_hash"])
        out.append(row)
    return out


def audit_rows() -> list[dict[str, object]]:
    base: dict[str, object] = {
        "chain": ORG_ID, "org_id": ORG_ID, "user_id": 42, "user_email": "nurse@example.test",
        "role": "staff", "object_id": OBJECT_ID, "object_path": OBJECT_PATH,
        "client_addr": "192.0.2.10", "user_agent": "Mozilla/5.0", "detail": None,
        "http_status": None, "bytes": None,
    }
    rows = [
        dict(base, id=101, seq=1, occurred_at="2026-11-25T14:30:00.123456Z", action="upload",
             outcome="started", request_id="req-1"),
        dict(base, id=102, seq=2, occurred_at="2026-11-25T14:30:00.300000Z", action="upload",
             outcome="completed", http_status=201, bytes=len(CHAIN_PLAINTEXT),
             request_id="req-1", detail='{"key_version":2}'),
        dict(base, id=105, seq=3, occurred_at="2026-11-25T14:31:02.000001Z",
             action="range_read", outcome="started", http_status=206, request_id="req-2",
             user_agent="Mozilla/5.0 (Größe)", detail='{"range":"bytes=0-31"}'),
    ]
    return audit_sign(AUDIT_KEY, rows)


def audit_chain_vector() -> dict[str, object]:
    audit_row, _blob, _encoded = audit_key_row()
    rows = audit_rows()
    head = {"chain": ORG_ID, "seq": 3, "row_hash": rows[-1]["row_hash"]}
    messages = [audit_message(str(r["prev_hash"]), r).hex() for r in rows]

    def case(tampered: str, reason: str, seq: int, new_rows: list[dict[str, object]],
             new_head: dict[str, object] | None = None) -> dict[str, object]:
        return {"tampered": tampered, "reason": reason, "seq": seq, "rows": new_rows,
                "head": new_head or head}

    edited = [dict(r) for r in rows]
    edited[1]["user_email"] = "admin@example.test"
    swapped = [dict(r) for r in rows]
    swapped[1]["id"], swapped[2]["id"] = swapped[2]["id"], swapped[1]["id"]
    forged = audit_sign(fixed("not the chain key"), [dict(r) for r in rows])
    forged = rows[:2] + [dict(forged[2], prev_hash=rows[1]["row_hash"])]
    forged[2]["row_hash"] = hmac.new(fixed("not the chain key"),
                                     audit_message(str(rows[1]["row_hash"]), forged[2]),
                                     hashlib.sha256).hexdigest()
    negative = [
        case("row seq 2: user_email edited, hashes kept", "hash_mismatch", 2, edited),
        case("row seq 2 deleted", "seq_gap", 3, [rows[0], rows[2]]),
        case("rows seq 2 and 3 stored with swapped ids (reordered)", "out_of_order", 3,
             swapped),
        case("row seq 3 re-hashed under another key (forged without the chain key)",
             "hash_mismatch", 3, forged,
             {"chain": ORG_ID, "seq": 3, "row_hash": forged[2]["row_hash"]}),
        case("row seq 3 deleted, the head left at seq 3", "head_mismatch", 3, rows[:2]),
        case("chain head's row_hash edited", "head_mismatch", 3, rows,
             {"chain": ORG_ID, "seq": 3, "row_hash": "f" * 64}),
        case("row seq 1's prev_hash not the genesis value", "prev_hash_mismatch", 1,
             [dict(rows[0], prev_hash="1" * 64)] + rows[1:]),
    ]
    return {
        "description": "an organisation's audit chain (docs/audit.md 'The chain', "
                       "keys/README.md 'The audit chain key'): the chain key (random, stored "
                       "wrapped by the master key: see master-wrap.json), the exact bytes "
                       "hashed per row and the row hashes; negative cases name the row and "
                       "the reason gateway audit verify must report",
        "master_key_file": master_key_file_text(MASTER_KEYS, 2),
        "audit_key_row": audit_row,
        "chain_key": AUDIT_KEY.hex(),
        "rows": rows,
        "messages": messages,
        "head": head,
        "negative": negative,
    }


def archive_lines(rows: list[dict[str, object]]) -> bytes:
    lines = [json.dumps({name: row[name] for name in EXPORT_FIELDS}, sort_keys=True,
                        separators=(",", ":"), ensure_ascii=False) for row in rows]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def audit_archive_vector() -> dict[str, object]:
    import gzip

    rows = audit_rows()
    year, month = 2026, 11
    storage_id = f"audit-archive-{ORG_ID}-{year:04d}-{month:02d}"
    key = f"audit-archive/{ORG_ID}/{year:04d}/{month:02d}.jsonl.gz"
    data_key = fixed("archive data key")
    salt, prefix = fixed("archive salt"), fixed("archive nonce prefix", 7)
    kek = derive(ORG_KEYS[2], "data-kek", ORG_ID, 2)
    context = data_key_context(ORG_ID, storage_id, 2)
    wrapped = gcm_wrap(kek, data_key, context, fixed("archive wrap nonce", 12))
    jsonl = archive_lines(rows)
    compressed = gzip.compress(jsonl, compresslevel=9, mtime=0)
    sealed = seal_object(data_key, ORG_ID, storage_id, DEFAULT_SEGMENT_SIZE, salt, prefix,
                         compressed)
    obj = bytes.fromhex(str(sealed["ciphertext"]))
    metadata = {
        "format": "gateway-audit-archive-v1",
        "wrapped-key": base64.b64encode(wrapped).decode("ascii"),
        "key-version": "2",
        "rows": str(len(rows)),
        "first-seq": str(rows[0]["seq"]),
        "last-seq": str(rows[-1]["seq"]),
        "last-row-hash": str(rows[-1]["row_hash"]),
    }
    edited = [dict(r) for r in rows]
    edited[1]["user_email"] = "admin@example.test"
    edited_obj = bytes.fromhex(str(seal_object(
        data_key, ORG_ID, storage_id, DEFAULT_SEGMENT_SIZE, salt, prefix,
        gzip.compress(archive_lines(edited), compresslevel=9, mtime=0))["ciphertext"]))

    def case(tampered: str, *, month_: int = month, object_bytes: bytes = obj,
             **meta: str) -> dict[str, object]:
        return {"tampered": tampered, "year": year, "month": month_,
                "object": object_bytes.hex(), "metadata": dict(metadata, **meta)}

    negative = [
        case("the November archive copied to December's key (bound to November's storage "
             "id)", month_=12),
        case("metadata key-version relabelled 2 -> 1", **{"key-version": "1"}),
        case("metadata wrapped-key: one bit of the tag flipped",
             **{"wrapped-key": base64.b64encode(flip(wrapped, -1)).decode("ascii")}),
        case("object: one bit of the compressed content's ciphertext flipped",
             object_bytes=flip(obj, 100)),
        case("object: truncated by one byte", object_bytes=obj[:-1]),
        case("a row edited (seq 2 user_email) and the archive re-encrypted with its own data "
             "key: it decrypts, but the row no longer matches its hash",
             object_bytes=edited_obj),
        case("metadata last-row-hash altered", **{"last-row-hash": "0" * 64}),
    ]
    return {
        "description": "the monthly audit archive audit-archive/{org}/{yyyy}/{mm}.jsonl.gz "
                       "(keys/README.md, 'Audit archives'): JSON lines, gzip, then the object "
                       "format under a data key wrapped like an object's, bound to the "
                       "storage id audit-archive-{org}-{yyyy}-{mm}; the wrapped key travels in "
                       "the S3 object's metadata",
        "org_id": ORG_ID,
        "year": year,
        "month": month,
        "s3_key": key,
        "storage_id": storage_id,
        "org_key": ORG_KEYS[2].hex(),
        "key_version": 2,
        "kek": kek.hex(),
        "data_key": data_key.hex(),
        "data_key_context": context.hex(),
        "wrapped_key": wrapped.hex(),
        "metadata": metadata,
        "rows": rows,
        "jsonl": jsonl.decode("utf-8"),
        "gzip": compressed.hex(),
        "segment_size": DEFAULT_SEGMENT_SIZE,
        "salt": salt.hex(),
        "nonce_prefix": prefix.hex(),
        "header": obj[:81].hex(),
        "object": obj.hex(),
        "negative": negative,
    }


def chain_vectors() -> dict[str, dict[str, object]]:
    """The key chain vectors, by file stem."""
    return {
        "master-wrap": master_wrap_vector(),
        "data-kek": data_kek_vector(),
        "data-key-wrap": data_key_wrap_vector(),
        "full-chain": full_chain_vector(),
        "object-negative": object_negative_vector(),
        "range-plan": range_plan_vector(),
        "audit-chain": audit_chain_vector(),
        "audit-archive": audit_archive_vector(),
    }


def render(vector: dict[str, object]) -> str:
    return json.dumps(vector, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    files = {f"{stem}.json": render(vector) for stem, vector in object_vectors().items()}
    files["key-wrap.json"] = render(key_wrap_vector())
    files.update({f"{stem}.json": render(vector) for stem, vector in chain_vectors().items()})
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
