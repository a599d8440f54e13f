"""Office documents: OOXML and ODF (ZIP packages) and the legacy OLE2 formats.

OOXML (``.docx``, ``.xlsx``, ``.pptx``) is recognised from its ``[Content_Types].xml`` when
that entry lies in the first bytes, else from its part names and the file name.
Macro-enabled variants are refused when the first bytes show them.  Legacy OLE2 files
(``.doc``, ``.xls``, ``.ppt``) are told apart by their stream names when visible, else by the
file name; any other OLE2 file (installers, Outlook messages) is refused.  ODF text,
spreadsheet and presentation files are recognised by their ``mimetype`` entry.

Pure functions; no I/O.
"""
from __future__ import annotations

import zlib

from .base import Refused, u16le, u32le
from .kinds import DOC, DOCX, ODP, ODS, ODT, PPT, PPTX, XLS, XLSX

MACROS_REFUSED = Refused(
    "office_macros",
    "Office documents with macros are not accepted. Save it again as a normal document "
    "(.docx, .xlsx or .pptx, without macros) and upload that.",
)

_OOXML_MAIN: dict[bytes, str | None] = {
    b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": DOCX,
    b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": XLSX,
    b"application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": PPTX,
    # Macro-enabled documents are refused.
    b"application/vnd.ms-word.document.macroenabled.main+xml": None,
    b"application/vnd.ms-excel.sheet.macroenabled.main+xml": None,
    b"application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": None,
    b"application/vnd.ms-office.vbaproject": None,
}
_OOXML_BY_EXTENSION = {"docx": (DOCX, b"word/"), "xlsx": (XLSX, b"xl/"), "pptx": (PPTX, b"ppt/")}
_ODF_TYPES = frozenset({ODT, ODS, ODP})
_CONTENT_TYPES = b"[Content_Types].xml"
_MAX_INFLATE = 64 * 1024


def zip_package(head: bytes, ext: str) -> str | Refused | None:
    """An OOXML or ODF document in a ZIP package; any other ZIP is ``None``."""
    entries = _zip_entries(head)
    if not entries:
        return None
    first_name, first_method, first_data = entries[0]
    if first_name == b"mimetype" and first_method == 0:
        declared = first_data.decode("ascii", "replace").strip()
        return declared if declared in _ODF_TYPES else None

    names = [name for name, _, _ in entries]
    if any(name.endswith(b"vbaProject.bin") for name in names):
        return MACROS_REFUSED
    for name, method, data in entries:
        if name == _CONTENT_TYPES:
            decided, complete = _ooxml_from_content_types(method, data)
            if decided is not None or complete:
                return decided
    # [Content_Types].xml was not readable in the first bytes: fall back on the part names and
    # the file name, which must agree.
    if ext not in _OOXML_BY_EXTENSION:
        return None
    mime, folder = _OOXML_BY_EXTENSION[ext]
    other_folders = [f for _, f in _OOXML_BY_EXTENSION.values() if f != folder]
    if any(name.startswith(f) for name in names for f in other_folders):
        return None
    if _CONTENT_TYPES in names or any(name.startswith(folder) for name in names):
        return mime
    return None


def _zip_entries(head: bytes) -> list[tuple[bytes, int, bytes]]:
    """(name, method, visible data) of every local file header found in ``head``.

    Local headers are read in sequence while their sizes are known, and found by signature
    after an entry whose size is deferred to a data descriptor.
    """
    entries: list[tuple[bytes, int, bytes]] = []
    pos = 0
    while 0 <= pos and pos + 30 <= len(head):
        if head[pos : pos + 4] != b"PK\x03\x04":
            pos = head.find(b"PK\x03\x04", pos + 1)
            continue
        flags = u16le(head, pos + 6)
        method = u16le(head, pos + 8)
        compressed = u32le(head, pos + 18)
        name_end = pos + 30 + u16le(head, pos + 26)
        data_start = name_end + u16le(head, pos + 28)
        name = head[pos + 30 : name_end]
        if flags & 0x08:  # sizes follow the data; search for the next header instead
            entries.append((name, method, head[data_start:]))
            pos = head.find(b"PK\x03\x04", max(data_start, pos + 1))
        else:
            entries.append((name, method, head[data_start : data_start + compressed]))
            pos = data_start + compressed
    return entries


def _ooxml_from_content_types(method: int, data: bytes) -> tuple[str | Refused | None, bool]:
    """The type named by ``[Content_Types].xml`` and whether that entry was read completely."""
    if method == 8:
        inflater = zlib.decompressobj(-15)
        try:
            xml = inflater.decompress(data, _MAX_INFLATE)
        except zlib.error:
            return None, True
        complete = inflater.eof
    elif method == 0:
        xml = data
        complete = b"</Types>" in data
    else:
        return None, False
    xml = xml.lower()
    found = {mime for marker, mime in _OOXML_MAIN.items() if marker in xml}
    if None in found:
        return MACROS_REFUSED, True
    if len(found) > 1:
        return None, True
    if found:
        return found.pop(), True
    return None, complete


# -- OLE2 (legacy office) ------------------------------------------------------------------

_OLE_STREAMS: tuple[tuple[bytes, str], ...] = (
    ("WordDocument\x00".encode("utf-16-le"), DOC),
    ("Workbook\x00".encode("utf-16-le"), XLS),
    ("Book\x00".encode("utf-16-le"), XLS),  # Excel 5/95
    ("PowerPoint Document\x00".encode("utf-16-le"), PPT),
)
_OLE_BY_EXTENSION = {"doc": DOC, "xls": XLS, "ppt": PPT}
_OLE_MACROS = "_VBA_PROJECT".encode("utf-16-le")


def ole2(head: bytes, ext: str) -> str | Refused | None:
    """A Word, Excel or PowerPoint 97-2003 file; any other OLE2 file is ``None``."""
    if _OLE_MACROS in head:
        return MACROS_REFUSED
    seen = {mime for name, mime in _OLE_STREAMS if name in head}
    if len(seen) == 1:
        return seen.pop()
    if len(seen) > 1:
        return _OLE_BY_EXTENSION.get(ext) if _OLE_BY_EXTENSION.get(ext) in seen else None
    return _OLE_BY_EXTENSION.get(ext)


