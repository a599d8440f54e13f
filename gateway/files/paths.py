"""Validation of object paths inside an organisation.

An object path looks like ``uploads/forms/201/field_7/scan.pdf``: segments separated by ``/``,
the first of which is a category from :data:`CATEGORIES` and the last of which is the file name.
Paths are names in the catalog only (never S3 keys), but they reach browsers, logs, CSV exports
and terminals, so anything that could hide, disguise or smuggle text is refused outright rather
than silently rewritten.  The one rewrite is Unicode NFC normalisation, so that two visually
identical names (``é`` precomposed or as ``e`` + combining accent) are one path.

Everything here is a pure function; no I/O.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from ..errors import GatewayError

__all__ = [
    "CATEGORIES",
    "MAX_PATH_CHARS",
    "MAX_SEGMENT_BYTES",
    "ObjectPath",
    "PathError",
    "normalize_path",
    "normalize_prefix",
]

#: The allowed first segments of an object path, in the order shown to users.
CATEGORIES: tuple[str, ...] = ("uploads", "documents", "signatures", "templates")

#: Longest accepted path, in characters (after NFC normalisation).
MAX_PATH_CHARS = 1024

#: Longest accepted segment, in bytes of UTF-8 (the usual file-system limit for one name).
MAX_SEGMENT_BYTES = 255

# A raw string longer than this cannot normalise to MAX_PATH_CHARS characters (NFC composes at
# most a few code points into one), so it is refused before paying for normalisation.
_MAX_RAW_CHARS = 4 * MAX_PATH_CHARS

# Format characters that reorder, hide or disguise text: the bidirectional embeddings,
# overrides, isolates and marks, zero-width space, byte-order mark and interlinear annotations.
# Zero-width (non-)joiners (U+200C, U+200D) stay allowed: several scripts and emoji need them.
_INVISIBLE = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200b"  # ZERO WIDTH SPACE
    "\u200e\u200f"  # LEFT-TO-RIGHT / RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, pop, overrides
    "\u2066\u2067\u2068\u2069"  # isolates
    "\ufeff"  # ZERO WIDTH NO-BREAK SPACE (byte-order mark)
    "\ufff9\ufffa\ufffb"  # interlinear annotation controls
)

MSG_EMPTY = "path is empty"
MSG_TOO_LONG = f"path is longer than {MAX_PATH_CHARS} characters"
MSG_ABSOLUTE = "path must not start with '/'"
MSG_BACKSLASH = "path must not contain a backslash"
MSG_CONTROL = "path must not contain control characters"
MSG_INVISIBLE = "path must not contain invisible or text-direction formatting characters"
MSG_INVALID_UNICODE = "path must not contain surrogates or Unicode noncharacters"
MSG_EMPTY_SEGMENT = "path must not contain empty segments ('//' or a trailing '/')"
MSG_DOT_SEGMENT = "path must not contain '.' or '..' segments"
MSG_SEGMENT_TOO_LONG = f"path segment is longer than {MAX_SEGMENT_BYTES} bytes"
MSG_NO_FILENAME = "path must name a file after the category"
MSG_UNKNOWN_CATEGORY = "path must start with one of: " + ", ".join(CATEGORIES)


class PathError(GatewayError, ValueError):
    """A path was refused; :attr:`message` says why, in words fit for the user (HTTP 400)."""

    status, code = 400, "bad_path"


@dataclass(frozen=True)
class ObjectPath:
    """A validated, NFC-normalised object path.

    :ivar path: the whole path, e.g. ``uploads/forms/201/field_7/scan.pdf``
    :ivar category: its first segment, one of :data:`CATEGORIES`
    :ivar filename: its last segment, e.g. ``scan.pdf``
    """

    path: str
    category: str
    filename: str

    def __str__(self) -> str:
        return self.path


def normalize_path(raw: str) -> ObjectPath:
    """Validate and normalise the path of one object.

    :param raw: the path as the client sent it (already percent-decoded)
    :returns: the NFC-normalised path with its category and file name
    :raises PathError: if the path is empty, absolute, too long, contains a backslash, a control
        or invisible formatting character, an empty, ``.`` or ``..`` segment, a segment over
        :data:`MAX_SEGMENT_BYTES` bytes, does not start with a known category, or names only the
        category
    """
    path = _normalize(raw, allow_trailing_slash=False)
    segments = path.split("/")
    if len(segments) < 2:
        raise PathError(MSG_NO_FILENAME)
    return ObjectPath(path=path, category=segments[0], filename=segments[-1])


def normalize_prefix(raw: str) -> str:
    """Validate and normalise a listing prefix.

    The empty prefix means every object.  Otherwise the rules of :func:`normalize_path` apply,
    except that a single trailing ``/`` is allowed and the category alone (``uploads`` or
    ``uploads/``) is a valid prefix.  The last segment may be partial (``uploads/forms/20``
    matches ``uploads/forms/201/...``); the caller compares paths by plain string prefix.

    :param raw: the prefix as the client sent it
    :returns: the NFC-normalised prefix, trailing ``/`` kept
    :raises PathError: as :func:`normalize_path`
    """
    if raw == "":
        return ""
    return _normalize(raw, allow_trailing_slash=True)


def _normalize(raw: str, *, allow_trailing_slash: bool) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"path must be str, not {type(raw).__name__}")
    if raw == "":
        raise PathError(MSG_EMPTY)
    if len(raw) > _MAX_RAW_CHARS:
        raise PathError(MSG_TOO_LONG)
    _check_characters(raw)
    path = unicodedata.normalize("NFC", raw)
    # NFC never introduces control or format characters, but check the result as well so the
    # guarantee holds on whatever Unicode version the interpreter carries.
    _check_characters(path)
    if len(path) > MAX_PATH_CHARS:
        raise PathError(MSG_TOO_LONG)
    if path.startswith("/"):
        raise PathError(MSG_ABSOLUTE)

    segments = path.split("/")
    if allow_trailing_slash and len(segments) > 1 and segments[-1] == "":
        segments = segments[:-1]
    for segment in segments:
        if segment == "":
            raise PathError(MSG_EMPTY_SEGMENT)
        if segment in (".", ".."):
            raise PathError(MSG_DOT_SEGMENT)
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise PathError(MSG_SEGMENT_TOO_LONG)
    if segments[0] not in CATEGORIES:
        raise PathError(MSG_UNKNOWN_CATEGORY)
    return path


def _check_characters(text: str) -> None:
    """Refuse backslashes, control characters and characters that hide or reorder text."""
    for char in text:
        if char == "\\":
            raise PathError(MSG_BACKSLASH)
        category = unicodedata.category(char)
        # Cc: C0 controls (NUL included), DEL and C1 controls.  Zl/Zp: line and paragraph
        # separators, which break lines in logs and headers like CR/LF.
        if category in ("Cc", "Zl", "Zp"):
            raise PathError(MSG_CONTROL)
        if char in _INVISIBLE:
            raise PathError(MSG_INVISIBLE)
        # Cs: lone surrogates, which have no UTF-8 form.  Noncharacters: U+FDD0..U+FDEF and the
        # last two code points of every plane (U+FFFE, U+FFFF, U+1FFFE, ...).
        code = ord(char)
        if category == "Cs" or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
            raise PathError(MSG_INVALID_UNICODE)


def folded_name(filename: str) -> str:
    """A file name as searches compare it: case-folded, at most 255 characters."""
    return unicodedata.normalize("NFC", filename.casefold())[:255]
