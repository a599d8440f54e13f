"""DICOM files (PS3.10), with and without the 128-byte preamble, and the preamble's dangers.

A DICOM file normally starts with a 128-byte preamble, the letters ``DICM``, and the File Meta
Information (group 0002, explicit VR little endian).  The standard leaves the preamble to
applications, which is how a Windows or Linux program, a shell script or a web page can sit
in front of a perfectly valid image and still be read as DICOM (CVE-2019-11687): saved under
another name, the same bytes run.

So the preamble must be one of the two the standard actually describes: all zeros (what every
writer puts there when it does not use it), or a TIFF header for the dual-personality files of
whole-slide imaging, and then without markup, a PDF header or a ZIP entry.  A preamble whose
first 8 bytes are zero (some writers leave a stray value further on) is treated like the TIFF
one: no program, script or page can start there.  Anything else is refused.
After ``DICM`` the File Meta Information must be well formed: (0002,0000) group length first,
every element of group 0002 with a valid VR and a length inside the group, (0002,0001) the
version ``00 01``, and (0002,0010) a transfer syntax UID.

DICOM written without the preamble (``DICM`` absent) is accepted when it starts directly with
that File Meta Information, or with a data set whose first elements (group 0008, implicit or
explicit VR little endian) parse cleanly.

Pure functions; no I/O.
"""
from __future__ import annotations

import re

from .base import Refused, u16le, u32le
from .kinds import DICOM
from .text import has_markup

PREAMBLE_BYTES = 128
MAGIC = b"DICM"
#: TIFF headers a dual-personality (DICOM and TIFF) preamble may start with.
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Some writers leave a stray value in an otherwise empty preamble.  Starting with this many
# zero bytes, it cannot be the start of a program, a script or a web page (their signatures
# are at offset 0); it still must not hold a PDF header, a ZIP entry or markup.
_ZEROS = b"\x00" * 8
_SIGNATURES = (b"%PDF-", b"PK\x03\x04", b"MZ", b"\x7fELF", b"#!")

# VRs with a 2-byte length, and those with 2 reserved bytes and a 4-byte length (PS3.5 7.1.2).
_SHORT_VRS = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT PN SH SL SS ST TM UI UL US".split()
)
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_UNDEFINED = 0xFFFFFFFF
_UID = re.compile(rb"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")

PREAMBLE_REFUSED = Refused(
    "dicom_preamble",
    "This DICOM image was not stored: the start of the file holds something other than the "
    "empty space the DICOM standard expects there (it can hide a program). Ask the sender or "
    "the imaging system for a fresh export.",
)
HEADER_REFUSED = Refused(
    "dicom_header",
    "This file looks like a DICOM image but its header is damaged or incomplete, so it was "
    "not stored. Ask the sender or the imaging system for a fresh export.",
)


def dicom(head: bytes) -> str | Refused | None:
    """DICOM, a reasoned refusal (a bad preamble or header after ``DICM``), or ``None``."""
    if head[PREAMBLE_BYTES : PREAMBLE_BYTES + 4] == MAGIC:
        if not _benign_preamble(head[:PREAMBLE_BYTES]):
            return PREAMBLE_REFUSED
        return DICOM if _file_meta_ok(head, PREAMBLE_BYTES + 4) else HEADER_REFUSED
    if head.startswith(b"\x02\x00\x00\x00"):  # (0002,0000): File Meta Information, no preamble
        return DICOM if _file_meta_ok(head, 0) else None
    if head.startswith(b"\x08\x00"):  # a data set without any meta information
        return DICOM if _dataset_ok(head) else None
    return None


def _benign_preamble(preamble: bytes) -> bool:
    if preamble.count(0) == len(preamble):
        return True
    if preamble.startswith(_TIFF_HEADERS) or preamble.startswith(_ZEROS):
        return not any(sign in preamble for sign in _SIGNATURES) and not has_markup(
            preamble.decode("latin-1")
        )
    return False


def _element(head: bytes, pos: int, explicit: bool) -> tuple[int, int, bytes, int, int] | None:
    """(group, element, VR, value start, value length) of the element at ``pos``, or ``None``
    if its header is not in view or not valid."""
    if pos + 8 > len(head):
        return None
    group, element = u16le(head, pos), u16le(head, pos + 2)
    if not explicit:
        return group, element, b"", pos + 8, u32le(head, pos + 4)
    vr = head[pos + 4 : pos + 6]
    if vr in _SHORT_VRS:
        return group, element, vr, pos + 8, u16le(head, pos + 6)
    if vr in _LONG_VRS and pos + 12 <= len(head) and head[pos + 6 : pos + 8] == b"\x00\x00":
        return group, element, vr, pos + 12, u32le(head, pos + 8)
    return None


def _is_uid(value: bytes) -> bool:
    value = value.rstrip(b"\x00 ")
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def _file_meta_ok(head: bytes, pos: int) -> bool:
    """Whether the File Meta Information starting at ``pos`` is well formed (as far as the
    first bytes show it), with its version and transfer syntax."""
    first = _element(head, pos, explicit=True)
    if first is None or first[:3] != (0x0002, 0x0000, b"UL") or first[4] != 4:
        return False
    group_length = u32le(head, first[3])
    end = first[3] + 4 + group_length
    seen: dict[int, tuple[bytes, bytes]] = {}
    last = 0
    pos = first[3] + 4
    while pos < end:
        parsed = _element(head, pos, explicit=True)
        if parsed is None:
            if pos + 12 > len(head):
                break  # the rest of the group lies beyond the first bytes
            return False
        group, element, vr, start, length = parsed
        if group != 0x0002 or element <= last or length == _UNDEFINED or start + length > end:
            return False
        seen[element] = (vr, head[start : start + length])
        last = element
        pos = start + length
    version, syntax = seen.get(0x0001), seen.get(0x0010)
    if version is None or version != (b"OB", b"\x00\x01"):
        return False
    if syntax is None or syntax[0] != b"UI" or not _is_uid(syntax[1]):
        return False
    for element in (0x0002, 0x0003):  # media storage SOP class and instance, when given
        vr, value = seen.get(element, (b"UI", b""))
        if vr != b"UI" or (value.strip(b"\x00 ") and not _is_uid(value)):
            return False
    if end + 2 <= len(head) and u16le(head, end) <= 0x0002:
        return False  # the data set after the meta information must start with a later group
    return True


def _dataset_ok(head: bytes) -> bool:
    """Whether ``head`` starts with a DICOM data set: at least two (three, if the first bytes
    allow) complete elements of group 0008 or later, in ascending order, with sane lengths."""
    explicit = head[4:6] in _SHORT_VRS or head[4:6] in _LONG_VRS
    pos, last, complete = 0, (0, -1), 0
    while complete < 3:
        parsed = _element(head, pos, explicit)
        if parsed is None:
            return complete >= 2 and pos == len(head)
        group, element, vr, start, length = parsed
        if group < 0x0008 or (group, element) <= last:
            return False
        if length == _UNDEFINED:
            return complete >= 2 and (not explicit or vr in (b"SQ", b"UN"))
        if start + length > len(head):
            return complete >= 2
        if vr == b"UI" and not _is_uid(head[start : start + length]):
            return False
        complete += 1
        last = (group, element)
        pos = start + length
    return True
