"""HTTP range requests (RFC 9110, section 14) and a safe ``Content-Disposition`` (RFC 6266).

Pure functions over header values and a known object size; no I/O, no web framework.

Only a single ``bytes`` range is served.  A header the gateway does not serve (another unit,
several ranges, or a syntax error) is ignored, as RFC 9110 permits, and the whole object is
sent with ``200``.  A well-formed range that does not overlap the object raises
:class:`RangeNotSatisfiable`, answered ``416`` with ``Content-Range: bytes */SIZE``.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote

from ..errors import GatewayError

__all__ = [
    "ByteRange",
    "RangeNotSatisfiable",
    "content_disposition",
    "if_range_allows",
    "parse_range",
]

_RANGE_SPEC = re.compile(r"(\d*)-(\d*)", re.ASCII)
# Positions longer than this are beyond any object; they are compared as "infinitely far"
# instead of being converted (Python refuses to convert very long digit strings).
_MAX_DIGITS = 20


class RangeNotSatisfiable(GatewayError, ValueError):
    """The range does not overlap the object: answer ``416`` with :attr:`content_range`.

    :ivar size: the object's size in bytes
    :ivar content_range: the ``Content-Range`` value for the answer, ``bytes */SIZE``
    :ivar message: the error text for the user
    """

    status, code = 416, "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        self.size = size
        self.content_range = f"bytes */{size}"
        super().__init__(f"the requested range is outside the object's {size} bytes",
                         headers={"Content-Range": self.content_range})


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable byte range of an object of ``size`` bytes.

    :ivar start: first byte, ``0 <= start <= end``
    :ivar end: last byte, inclusive, ``end < size``
    :ivar size: the whole object's size
    """

    start: int
    end: int
    size: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end < self.size:
            raise ValueError(f"invalid byte range {self.start}-{self.end} of {self.size}")

    @property
    def length(self) -> int:
        """Number of bytes in the range (the answer's ``Content-Length``)."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The answer's ``Content-Range``, e.g. ``bytes 0-99/1000``."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Decide what a ``Range`` header asks of an object of ``size`` bytes.

    Supported forms: ``bytes=FIRST-LAST``, ``bytes=FIRST-`` and the suffix ``bytes=-N`` (the last
    N bytes).  A ``LAST`` beyond the object is clamped to its end, and a suffix longer than the
    object means the whole object (still a ``206``).

    :param header: the ``Range`` header value, or ``None`` if absent
    :param size: the object's size in bytes
    :returns: the range to serve with ``206``, or ``None`` to serve the whole object with ``200``
        (no header, a unit other than ``bytes``, several ranges, or an invalid header)
    :raises RangeNotSatisfiable: ``FIRST`` is at or beyond the end, the suffix is ``-0``, or the
        object is empty
    """
    if size < 0:
        raise ValueError("size must not be negative")
    if header is None:
        return None
    unit, sep, range_set = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    # A list may carry empty elements (RFC 9110, section 5.6.1); they do not count.
    specs = [spec.strip(" \t") for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first_text, last_text = match.groups()

    if first_text == "":
        if last_text == "":
            return None  # "bytes=-" is not a range
        suffix = _position(last_text)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1, size)

    first = _position(first_text)
    last = _position(last_text) if last_text else None
    if last is not None and last < first:
        return None  # invalid range-spec: ignore the header
    if first >= size:
        raise RangeNotSatisfiable(size)
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end, size)


def _position(digits: str) -> int:
    """A byte position; absurdly long numbers become one larger than any real size."""
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > _MAX_DIGITS:
        return 10**_MAX_DIGITS
    return int(stripped)


def if_range_allows(if_range: str | None, etag: str, last_modified: datetime | None) -> bool:
    """Whether a ``Range`` may be honoured given the request's ``If-Range`` (RFC 9110, 13.1.5).

    :param if_range: the ``If-Range`` header value, or ``None`` if absent
    :param etag: the object's current entity tag, quoted (``"abc"``) or bare (``abc``); a weak
        tag (``W/"abc"``) never matches
    :param last_modified: the object's modification time (naive values are taken as UTC), or
        ``None`` if unknown
    :returns: ``True`` to honour the range; ``False`` to ignore it and send the whole object.
        Absent means ``True``.  An entity tag must match by strong comparison; an HTTP-date must
        equal ``last_modified`` to the second.  Anything else, including an unparseable value,
        is ``False``.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value == "":
        return True
    if value.startswith('"') or value.startswith("W/"):
        if value.startswith("W/") or etag.startswith("W/"):
            return False
        return value == _quote_etag(etag)
    if last_modified is None:
        return False
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    if when.tzinfo is None:  # "-0000" and asctime dates: UTC by definition in HTTP
        when = when.replace(tzinfo=timezone.utc)
    if last_modified.tzinfo is None:
        last_modified = last_modified.replace(tzinfo=timezone.utc)
    return when == last_modified.replace(microsecond=0)


def _quote_etag(etag: str) -> str:
    return etag if etag.startswith('"') and etag.endswith('"') and len(etag) >= 2 else f'"{etag}"'


# RFC 5987 attr-char, besides letters and digits (which quote() always keeps).
_ATTR_CHAR_SAFE = "!#$&+-.^_`|~"
# Characters replaced in the quoted ASCII fallback: they end or escape the quoted string,
# separate parameters, are read as directories, or are percent-decoded by some browsers.
_FALLBACK_UNSAFE = frozenset('"\\/;%')
# Latin letters that compatibility decomposition leaves alone, and their usual ASCII spelling.
_LATIN_EXTRA = {
    "ß": "ss", "ẞ": "SS", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O",
    "đ": "d", "Đ": "D", "ð": "d", "Ð": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "Th",
    "ı": "i", "ħ": "h", "Ħ": "H", "ŋ": "ng", "Ŋ": "Ng",
}  # fmt: skip
_HASH_CHARS = 8


def content_disposition(filename: str, *, attachment: bool) -> str:
    """A ``Content-Disposition`` value that is safe whatever the file name contains.

    ``filename*`` (RFC 6266, RFC 5987) carries the exact name as percent-encoded UTF-8 whenever
    the plain ``filename`` parameter cannot.  That parameter is an ASCII fallback for clients
    that ignore ``filename*`` (``curl -OJ``, say), quoted:

    * letters are transliterated (``Ärztebrief München.pdf`` becomes ``Arztebrief
      Munchen.pdf``: compatibility decomposition, accents dropped, ``ß`` as ``ss``...);
    * letters and digits of scripts that have no ASCII spelling are dropped and a short hash
      of the exact name is added before the extension (``患者.pdf`` becomes
      ``file-1b2c3d4e.pdf``), so that two such names never share a fallback;
    * quotes, backslashes, ``/``, ``;``, ``%``, control characters and any other character
      without an ASCII form become ``_``; a decomposition never adds a dot, so the fallback's
      extension is the name's own.

    The result never contains CR, LF, NUL or non-ASCII.

    :param filename: the file name shown to the user (the object path's last segment)
    :param attachment: ``True`` for ``attachment`` (download), ``False`` for ``inline``
    :returns: e.g. ``inline; filename="scan.pdf"`` or
        ``attachment; filename="resume.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf``
    """
    disposition = "attachment" if attachment else "inline"
    # Lone surrogates have no UTF-8 form; they become U+FFFD rather than fail the download.
    exact = "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in filename)
    fallback = _ascii_fallback(exact)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += "; filename*=UTF-8''" + quote(exact, safe=_ATTR_CHAR_SAFE)
    return value


def _ascii_fallback(name: str) -> str:
    """The quoted ``filename`` parameter's value for ``name`` (see :func:`content_disposition`)."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or not _plain_ascii(ext):
        stem, dot, ext = name, "", ""
    pieces: list[str] = []
    lost = False
    for char in stem:
        ascii_form = _ascii_form(char)
        if ascii_form is None:
            lost = True
        else:
            pieces.append(ascii_form)
    fallback = "".join(pieces)
    if lost:
        # Letters without an ASCII spelling were dropped: the hash keeps distinct names apart.
        kept = " ".join(fallback.split()).strip(" .-_")
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_HASH_CHARS]
        fallback = f"{kept}-{digest}" if kept else f"file-{digest}"
    fallback += dot + ext
    if fallback.strip(" .") == "":
        fallback = "download"
    return fallback


def _plain_ascii(text: str) -> bool:
    return all(" " < char <= "~" and char not in _FALLBACK_UNSAFE for char in text)


def _ascii_form(char: str) -> str | None:
    """How ``char`` is written in the fallback; ``None`` for a letter or digit without one."""
    if " " <= char <= "~":
        return "_" if char in _FALLBACK_UNSAFE else char
    if char in _LATIN_EXTRA:
        return _LATIN_EXTRA[char]
    decomposed = "".join(c for c in unicodedata.normalize("NFKD", char)
                         if c.isascii() and (c.isalnum() or c == " "))
    if decomposed:
        return decomposed
    if unicodedata.category(char)[0] in "LN":
        return None
    return "_"
