"""The chain's exact bytes: what each row's keyed hash covers, and the hash itself.

``docs/audit.md`` specifies the format; this module is its one implementation. Pure: bytes and
values in, bytes out; imports only the standard library.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone
from typing import Any, Mapping

#: ``prev_hash`` of the first row of every chain.
GENESIS_HASH = "0" * 64
#: The format tag hashed first in every row (see :func:`row_message`).
HASH_FORMAT = "gateway-audit-v1"
#: The fields covered by ``row_hash``, in the order they are hashed.
HASHED_FIELDS: tuple[str, ...] = (
    "chain", "seq", "occurred_at", "org_id", "user_id", "user_email", "role", "action",
    "object_id", "object_path", "outcome", "http_status", "bytes", "client_addr", "user_agent",
    "request_id", "detail",
)
#: The columns of an exported event, in order (CSV header, JSON keys). An event is named by
#: its ``chain`` and ``seq``; the database's global row id, whose gaps would count other
#: organisations' events, is never part of an answer.
EXPORT_FIELDS: tuple[str, ...] = (*HASHED_FIELDS, "prev_hash", "row_hash")
#: The columns of an archived event (archives stay in the bucket; the row id lets
#: ``verify-archive`` match each line with its database row).
ARCHIVE_FIELDS: tuple[str, ...] = ("id", *EXPORT_FIELDS)

_NULL = b"\xff\xff\xff\xff"


def format_time(value: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the UTC form hashed and exported (always microseconds)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in the audit trail")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field_bytes(value: object) -> bytes:
    if value is None:
        return _NULL
    if isinstance(value, datetime):
        text = format_time(value)
    elif isinstance(value, bool):  # never stored; refuse rather than hash "True"
        raise TypeError("boolean in an audit field")
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise TypeError(f"cannot hash a {type(value).__name__} audit field")
    data = text.encode("utf-8")
    return len(data).to_bytes(4, "big") + data


def row_message(prev_hash: str, fields: Mapping[str, object]) -> bytes:
    """The exact bytes whose HMAC is a row's ``row_hash``.

    ``prev_hash`` (64 ASCII hex digits), then the format tag and each of :data:`HASHED_FIELDS`
    in order, each as a 4-byte big-endian length and its UTF-8 bytes; ``NULL`` is the length
    ``0xFFFFFFFF`` with no bytes. Integers are written in decimal, ``occurred_at`` by
    :func:`format_time`, ``detail`` as the stored JSON text.
    """
    if len(prev_hash) != 64:
        raise ValueError("prev_hash must be 64 hex digits")
    parts = [prev_hash.encode("ascii"), _field_bytes(HASH_FORMAT)]
    parts.extend(_field_bytes(fields[name]) for name in HASHED_FIELDS)
    return b"".join(parts)


def row_hash(key: bytes, prev_hash: str, fields: Mapping[str, object]) -> str:
    """HMAC-SHA256 of :func:`row_message` under the chain's key, as 64 hex digits."""
    return hmac.new(key, row_message(prev_hash, fields), hashlib.sha256).hexdigest()


def canonical_json(value: Mapping[str, Any]) -> str:
    """Sorted keys, no spaces, UTF-8 characters kept: the stored form of ``detail``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=str)


def row_fields(row: Any) -> dict[str, object]:
    """The hashed fields of a row (any object with those attributes)."""
    return {name: getattr(row, name) for name in HASHED_FIELDS}
