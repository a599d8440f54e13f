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
    "confusable_key",
    "decode_utf8",
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
MSG_INVALID_UTF8 = "path is not valid UTF-8"
MSG_RESERVED_NAME = ("path must not use a name Windows reserves for devices "
                     "(CON, PRN, AUX, NUL, COM1-9, LPT1-9), with or without an extension")
MSG_TRAILING_DOT_SPACE = "path segments must not end with a dot or a space"
MSG_WINDOWS_CHAR = 'path must not contain any of < > : " | ? *'
MSG_LOOKALIKE_DOT = ("file name must not use a look-alike of '.' (such as the fullwidth '．') "
                     "before its extension")
MSG_LOOKALIKE_EXTENSION = "file extension must be written in ordinary (not fullwidth) letters"

# Names Windows cannot save, whatever follows them after a dot ("CON.pdf", "nul.tar.gz"); the
# superscript digits count as digits there too.
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{n}" for port in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"}
)
_WINDOWS_CHARS = frozenset('<>:"|?*')

# Characters that look like a full stop without being one.
_LOOKALIKE_DOTS = frozenset(
    "\uff0e"  # FULLWIDTH FULL STOP
    "\u2024"  # ONE DOT LEADER
    "\ufe52"  # SMALL FULL STOP
    "\u0701\u0702"  # SYRIAC SUPRALINEAR / SUBLINEAR FULL STOP
    "\ua4f8"  # LISU LETTER TONE MYA TI
    "\u06d4"  # ARABIC FULL STOP
    "\u00b7\u2027\u30fb\uff65"  # middle dots
)


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
    for segment in segments[1:]:
        _check_portable_name(segment)
    _check_extension(segments[-1])
    return ObjectPath(path=path, category=segments[0], filename=segments[-1])


def decode_utf8(raw: bytes) -> str:
    """The text of a path (or query) as it arrived in bytes, percent-decoded.

    :raises PathError: if the bytes are not valid UTF-8 (never replaced by U+FFFD: two
        different byte strings must not become one name).
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise PathError(MSG_INVALID_UTF8) from None


def _check_portable_name(segment: str) -> None:
    """Refuse what Windows cannot save as a file or folder name (staff download to Windows
    PCs; a name it silently alters or refuses is a name that gets confused with another)."""
    if segment.endswith((".", " ")):
        raise PathError(MSG_TRAILING_DOT_SPACE)
    if any(c in _WINDOWS_CHARS for c in segment):
        raise PathError(MSG_WINDOWS_CHAR)
    stem = segment.split(".", 1)[0].rstrip(" ").upper()
    if stem in _RESERVED_NAMES:
        raise PathError(MSG_RESERVED_NAME)


def _check_extension(filename: str) -> None:
    """Refuse a file name whose extension is disguised: written after a look-alike of ``.``
    (``scan．pdf`` shows as ``scan.pdf`` but has no extension), or in compatibility letters
    (``scan.ｐｄｆ``)."""
    last_dot = filename.rfind(".")
    for i, char in enumerate(filename):
        if char in _LOOKALIKE_DOTS and i > last_dot:
            tail = filename[i + 1:]
            if tail and len(tail) <= 10 and unicodedata.normalize("NFKC", tail).isascii():
                raise PathError(MSG_LOOKALIKE_DOT)
    if last_dot > 0:
        ext = filename[last_dot + 1:]
        if unicodedata.normalize("NFKC", ext) != ext:
            raise PathError(MSG_LOOKALIKE_EXTENSION)


# -- confusable names ------------------------------------------------------------------------

# Letters of other scripts drawn like Latin ones (a simplified subset of the Unicode
# confusables table of UTS #39), after case folding.
_PROTOTYPES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k",
    "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s",
    "ԁ": "d", "ԛ": "q", "ԝ": "w", "ӏ": "l", "ɡ": "g", "ү": "y", "ҽ": "e", "ԍ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j", "ω": "w",
    # Armenian and others
    "օ": "o", "ս": "u", "հ": "h", "ց": "g",
    # digits and Latin look-alikes
    "0": "o", "1": "l", "i": "l", "|": "l", "ı": "l", "ł": "l", "ø": "o",
    # dashes and dots
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-", "_": "-",
}
_PROTOTYPES.update({dot: "." for dot in _LOOKALIKE_DOTS})
_IGNORABLE = frozenset("\u00ad\u034f\u200c\u200d\u2060\ufe0e\ufe0f\u180e")


def confusable_key(name: str) -> str:
    """A key under which names a reader could take for one another compare equal.

    A simplified skeleton in the spirit of UTS #39: compatibility forms folded (fullwidth
    letters, ligatures), case folded (Windows and macOS do not tell ``A`` from ``a``),
    combining marks and default-ignorable characters dropped, letters of other scripts drawn
    like Latin ones mapped to those (Cyrillic ``а`` to ``a``), ``0``/``O``, ``1``/``l``/``I``,
    dashes and look-alike dots unified, trailing dots and spaces dropped. ``Scan.pdf``,
    ``scаn.pdf`` (Cyrillic ``а``) and ``SCAN.PDF.`` have one key; ``scan.pdf`` and
    ``scan2.pdf`` do not. Pure; for warnings, not refusals.
    """
    text = unicodedata.normalize("NFKC", name).casefold()
    text = unicodedata.normalize("NFD", text)
    out = []
    for char in text:
        if char in _IGNORABLE or unicodedata.category(char) == "Mn":
            continue
        out.append(_PROTOTYPES.get(char, char))
    skeleton = "".join(out).replace("rn", "m").replace("vv", "w")
    return unicodedata.normalize("NFC", skeleton).rstrip(". ")


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
