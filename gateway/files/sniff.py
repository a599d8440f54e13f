"""Content types decided from a file's first bytes, never from what the client declared.

The gateway stores only file kinds that staff genuinely upload (scans, photos, PDFs, video,
audio, office documents and plain text tables) and refuses the rest: HTML, SVG, XML,
JavaScript, shell scripts, executables, archives and anything unrecognised.  Those are exactly
what an attacker uploads under an innocent name, hoping a browser will render or run them.

The caller passes the first :data:`SNIFF_BYTES` bytes of the upload (or the whole file if it is
shorter) and the file name; :func:`sniff` returns a MIME type from :data:`ALLOWED_TYPES` or
``None``.  The name only ever *narrows* a decision the bytes already allow: it tells a ``.docx``
from an ``.xlsx`` when the ZIP's first bytes do not, ``.doc`` from ``.xls`` in an OLE2 file, and
whether text is meant as ``.txt`` or ``.csv``.  It never makes disallowed bytes acceptable.

Decisions worth knowing:

* An empty file is refused (``None``): nothing to identify, and an empty upload is a mistake.
* Plain text is accepted only under a ``.txt``, ``.csv`` or ``.tsv`` name, only if it is text
  (UTF-8, UTF-16 with a byte-order mark, or an ASCII-compatible 8-bit encoding such as the
  Windows-1252 Excel writes CSV in), has no control characters other than tab, CR, LF and form
  feed, and shows no markup and no ``#!`` line.
* Office documents: OOXML (``.docx``, ``.xlsx``, ``.pptx``) is recognised from its
  ``[Content_Types].xml`` when that entry lies in the first bytes, else from its part names and
  the file name.  Macro-enabled variants are refused when the first bytes show them.  Legacy
  OLE2 files (``.doc``, ``.xls``, ``.ppt``) are told apart by their stream names when visible,
  else by the file name; any other OLE2 file (installers, Outlook messages) is refused.
* ODF text, spreadsheet and presentation files are recognised by their ``mimetype`` entry.

Pure functions; no I/O.
"""
from __future__ import annotations

import codecs
import unicodedata
import zlib

__all__ = [
    "ALLOWED_TYPES",
    "INLINE_TYPES",
    "SNIFF_BYTES",
    "TEXT_EXTENSIONS",
    "is_inline",
    "sniff",
]

#: How many leading bytes :func:`sniff` looks at; give it this many (or the whole file).
SNIFF_BYTES = 4096

# Images
JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
WEBP = "image/webp"
TIFF = "image/tiff"
BMP = "image/bmp"
HEIC = "image/heic"
HEIF = "image/heif"
AVIF = "image/avif"
DICOM = "application/dicom"
# Documents
PDF = "application/pdf"
RTF = "application/rtf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"
ODP = "application/vnd.oasis.opendocument.presentation"
DOC = "application/msword"
XLS = "application/vnd.ms-excel"
PPT = "application/vnd.ms-powerpoint"
TEXT = "text/plain"
CSV = "text/csv"
TSV = "text/tab-separated-values"
# Video
MP4 = "video/mp4"
QUICKTIME = "video/quicktime"
THREEGP = "video/3gpp"
THREEG2 = "video/3gpp2"
WEBM = "video/webm"
MATROSKA = "video/x-matroska"
AVI = "video/x-msvideo"
MPEG_TS = "video/mp2t"
MPEG_PS = "video/mpeg"
OGG_VIDEO = "video/ogg"
# Audio
MP3 = "audio/mpeg"
WAV = "audio/wav"
FLAC = "audio/flac"
OGG_AUDIO = "audio/ogg"
M4A = "audio/mp4"
AAC = "audio/aac"
WEBM_AUDIO = "audio/webm"
MATROSKA_AUDIO = "audio/x-matroska"
AIFF = "audio/aiff"

#: Every type :func:`sniff` can return.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        JPEG, PNG, GIF, WEBP, TIFF, BMP, HEIC, HEIF, AVIF, DICOM,
        PDF, RTF, DOCX, XLSX, PPTX, ODT, ODS, ODP, DOC, XLS, PPT, TEXT, CSV, TSV,
        MP4, QUICKTIME, THREEGP, THREEG2, WEBM, MATROSKA, AVI, MPEG_TS, MPEG_PS, OGG_VIDEO,
        MP3, WAV, FLAC, OGG_AUDIO, M4A, AAC, WEBM_AUDIO, MATROSKA_AUDIO, AIFF,
    }
)  # fmt: skip

#: Types safe to serve with ``Content-Disposition: inline``: images a browser shows as pictures
#: (not TIFF, whose decoders have a long history of flaws and which most browsers download
#: anyway, nor DICOM), PDF, audio and video.  Everything else is served as an attachment.
INLINE_TYPES: frozenset[str] = frozenset(
    {t for t in ALLOWED_TYPES if t.startswith(("image/", "audio/", "video/")) and t != TIFF}
    | {PDF}
)

#: File name extensions under which plain text is accepted, and the type each gives.
TEXT_EXTENSIONS: dict[str, str] = {"txt": TEXT, "csv": CSV, "tsv": TSV}


def is_inline(mime: str) -> bool:
    """Whether a type may be shown inline in the browser (see :data:`INLINE_TYPES`).

    :param mime: a MIME type; parameters such as ``; charset=...`` and case are ignored
    """
    return mime.split(";", 1)[0].strip().lower() in INLINE_TYPES


def sniff(head: bytes, filename: str | None = None) -> str | None:
    """Decide an upload's content type from its first bytes.

    :param head: the first :data:`SNIFF_BYTES` bytes of the file, or all of it if shorter;
        bytes beyond :data:`SNIFF_BYTES` are not looked at
    :param filename: the file's name, used only to narrow what the bytes allow
    :returns: a type from :data:`ALLOWED_TYPES`, or ``None`` if the file is empty or not an
        allowed kind
    """
    head = bytes(head[:SNIFF_BYTES])
    if not head:
        return None
    ext = _extension(filename)

    if head[128:132] == b"DICM":
        return DICOM
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"RIFF") and len(head) >= 12:
        return {b"WEBP": WEBP, b"WAVE": WAV, b"AVI ": AVI}.get(head[8:12])
    if head.startswith((b"RF64", b"BW64", b"RIFX")) and head[8:12] == b"WAVE":
        return WAV  # WAVE over 4 GiB (RF64, BW64) or big-endian (RIFX)
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return TIFF
    if _is_bmp(head):
        return BMP
    if head.startswith(b"%PDF-"):
        return PDF
    if head[4:8] == b"ftyp":
        return _iso_media(head, ext)
    if _is_legacy_quicktime(head):
        return {"mov": QUICKTIME, "qt": QUICKTIME, "mp4": MP4, "m4v": MP4}.get(ext)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _matroska(head, ext)
    if head.startswith(b"OggS"):
        return _ogg(head)
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    if head.startswith(b"ID3"):
        return _after_id3(head)
    if _is_mpeg_ts(head):
        return MPEG_TS
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return MPEG_PS
    if head[0] == 0xFF and (audio := _audio_frames(head, 0)) is not None:
        return audio
    if head.startswith(b"PK\x03\x04"):
        return _zip(head, ext)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _ole2(head, ext)
    if head.startswith(b"{\\rtf"):
        return RTF
    return _text(head, ext)


def _extension(filename: str | None) -> str:
    if not filename:
        return ""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _u16le(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "little")


def _u32le(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "little")


def _u32be(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 4], "big")


# -- images --------------------------------------------------------------------------------


def _is_bmp(head: bytes) -> bool:
    # "BM" alone is too weak (text can start with it): require the zero reserved fields and a
    # known DIB header size.
    return (
        head.startswith(b"BM")
        and len(head) >= 18
        and head[6:10] == b"\x00\x00\x00\x00"
        and _u32le(head, 14) in (12, 16, 40, 52, 56, 64, 108, 124)
    )


# -- ISO base media (MP4, MOV, 3GP, M4A, HEIF, AVIF) -----------------------------------------

_BRANDS: dict[bytes, str] = {
    **dict.fromkeys([b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"], HEIC),
    **dict.fromkeys([b"mif1", b"msf1", b"mif2"], HEIF),
    **dict.fromkeys([b"avif", b"avis"], AVIF),
    **dict.fromkeys([b"M4A ", b"M4B ", b"M4P "], M4A),
    **dict.fromkeys([b"qt  "], QUICKTIME),
    **dict.fromkeys(
        [b"3gp4", b"3gp5", b"3gp6", b"3gp7", b"3gs7", b"3ge6", b"3ge7", b"3gg6"], THREEGP
    ),
    **dict.fromkeys([b"3g2a", b"3g2b", b"3g2c"], THREEG2),
    **dict.fromkeys(
        [
            b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9",
            b"mp41", b"mp42", b"mp71", b"avc1", b"dash", b"M4V ", b"M4VH", b"M4VP",
            b"mmp4", b"MSNV", b"XAVC", b"f4v ",
        ],
        MP4,
    ),
}  # fmt: skip
# Brands that say "MP4 file" without saying whether it holds video or audio only.
_GENERIC_MP4 = frozenset(
    [b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9", b"mp41", b"mp42",
     b"mp71", b"dash"]
)  # fmt: skip
_AUDIO_EXTENSIONS = frozenset({"m4a", "m4b", "m4p", "aac"})
_VIDEO_EXTENSIONS = frozenset({"mp4", "m4v", "mov", "qt", "3gp", "3g2"})


def _iso_media(head: bytes, ext: str) -> str | None:
    size = _u32be(head, 0)
    if size < 16:
        return None
    major = head[8:12]
    end = min(size, len(head))
    compatible = [head[i : i + 4] for i in range(16, end - 3, 4)]
    if major == b"mif1" or major == b"msf1":
        # HEIF is the container; the compatible brands say whether it holds HEVC or AV1.
        for brand in compatible:
            if _BRANDS.get(brand) in (HEIC, AVIF):
                return _BRANDS[brand]
    if major in _BRANDS:
        mime = _BRANDS[major]
    else:
        mime = next((_BRANDS[b] for b in compatible if b in _BRANDS), None)
        if mime is None:
            return None
    if mime == MP4 and (major in _GENERIC_MP4 or major not in _BRANDS):
        # A generic MP4 brand may hold audio only; the name or an M4A brand says so.
        if ext in _AUDIO_EXTENSIONS or (b"M4A " in compatible and ext not in _VIDEO_EXTENSIONS):
            return M4A
    return mime


def _is_legacy_quicktime(head: bytes) -> bool:
    # QuickTime files older than the ftyp box start directly with one of these atoms.
    atom = head[4:8]
    size = _u32be(head, 0)
    if atom == b"wide":
        return size == 8
    if atom in (b"moov", b"mdat", b"free", b"skip", b"pnot"):
        return size == 1 or (8 <= size and head[0] == 0)
    return False


# -- Matroska / WebM -----------------------------------------------------------------------


def _matroska(head: bytes, ext: str) -> str | None:
    doc_type = _ebml_doc_type(head)
    if doc_type == b"webm":
        return WEBM_AUDIO if ext == "weba" else WEBM
    if doc_type == b"matroska":
        return MATROSKA_AUDIO if ext == "mka" else MATROSKA
    return None


def _ebml_doc_type(head: bytes) -> bytes | None:
    """The DocType string of an EBML header (element id 0x4282), if it is in ``head``."""
    pos = head.find(b"\x42\x82", 4, 64)
    if pos < 0 or pos + 3 > len(head):
        return None
    first = head[pos + 2]
    if first == 0:
        return None
    width = 8 - first.bit_length() + 1  # leading zero bits + 1
    if pos + 2 + width > len(head):
        return None
    length = first & (0xFF >> width)
    for byte in head[pos + 3 : pos + 2 + width]:
        length = (length << 8) | byte
    start = pos + 2 + width
    return head[start : start + length].rstrip(b"\x00")


# -- Ogg -----------------------------------------------------------------------------------

_OGG_CODECS: tuple[tuple[bytes, str], ...] = (
    (b"\x01vorbis", OGG_AUDIO),
    (b"OpusHead", OGG_AUDIO),
    (b"Speex   ", OGG_AUDIO),
    (b"\x7fFLAC", OGG_AUDIO),
    (b"\x80theora", OGG_VIDEO),
    (b"\x01video\x00\x00\x00", OGG_VIDEO),
    (b"fishead\x00", OGG_VIDEO),
)


def _ogg(head: bytes) -> str | None:
    # Page header: 27 bytes, then one lacing byte per segment, then the first packet, which
    # starts with the codec's identification header.
    if len(head) < 28:
        return None
    packet = head[27 + head[26] :]
    for prefix, mime in _OGG_CODECS:
        if packet.startswith(prefix):
            return mime
    return None


# -- MPEG audio, AAC, transport and program streams ----------------------------------------

_MPEG_BITRATES = {  # kbit/s by (MPEG-1?, layer); index 0 (free format) and 15 are invalid
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MPEG_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_ADTS_SAMPLE_RATE_INDEXES = 13


def _mpeg_frame_length(header: bytes) -> int | None:
    """Length of the MPEG audio frame starting with these 4 bytes, or ``None`` if invalid."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = 4 - ((header[1] >> 1) & 3)  # 1, 2, 3; 4 means reserved
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    # Layer I is refused: no one records it any more, and its sync pattern is also the start
    # of UTF-16 text (byte-order mark FF FE).
    if version == 1 or layer in (1, 4) or bitrate_index in (0, 15) or rate_index == 3:
        return None
    if header[3] & 3 == 2:  # reserved emphasis
        return None
    bitrate = _MPEG_BITRATES[(version == 3, layer)][bitrate_index] * 1000
    sample_rate = _MPEG_SAMPLE_RATES[version][rate_index]
    padding = (header[2] >> 1) & 1
    samples = 1152 if layer == 2 or version == 3 else 576  # Layer II or III
    return samples // 8 * bitrate // sample_rate + padding


def _adts_frame_length(header: bytes) -> int | None:
    """Length of the AAC ADTS frame starting with these bytes, or ``None`` if invalid."""
    if len(header) < 7 or header[0] != 0xFF or header[1] & 0xF6 != 0xF0:
        return None
    if (header[2] >> 2) & 0xF >= _ADTS_SAMPLE_RATE_INDEXES:
        return None
    length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
    return length if length >= 7 else None


def _audio_frames(head: bytes, pos: int) -> str | None:
    """MP3 or AAC if ``head[pos:]`` starts with a valid frame, followed by a second one when the
    first frame ends inside ``head``."""
    for measure, mime in ((_adts_frame_length, AAC), (_mpeg_frame_length, MP3)):
        length = measure(head[pos : pos + 7])
        if length is None:
            continue
        following = pos + length
        if following + 7 <= len(head) and measure(head[following : following + 7]) is None:
            return None
        return mime
    return None


def _after_id3(head: bytes) -> str | None:
    """The audio behind one or more ID3v2 tags: MP3 unless FLAC or AAC frames follow."""
    pos = 0
    while head.startswith(b"ID3", pos):
        tag = head[pos : pos + 10]
        if len(tag) < 10:
            return MP3
        if tag[3] not in (2, 3, 4) or tag[4] == 0xFF or any(b & 0x80 for b in tag[6:10]):
            return None
        size = (tag[6] << 21) | (tag[7] << 14) | (tag[8] << 7) | tag[9]
        pos += 10 + size + (10 if tag[5] & 0x10 else 0)
    while pos < len(head) and head[pos] == 0:  # padding some writers leave after the tag
        pos += 1
    if pos >= len(head):
        return MP3  # the audio lies beyond the first bytes (large cover art)
    if head.startswith(b"fLaC", pos):
        return FLAC
    if _adts_frame_length(head[pos : pos + 7]) is not None:
        return AAC
    return MP3


def _is_mpeg_ts(head: bytes) -> bool:
    # 188-byte packets, each starting with 0x47; M2TS adds a 4-byte timestamp before each
    # (192-byte packets).  Three packets at least, and every packet start in view must agree.
    for offset, stride in ((0, 188), (4, 192)):
        starts = range(offset, len(head), stride)
        if len(starts) >= 3 and all(head[i] == 0x47 for i in starts):
            return True
    return False


# -- ZIP-based office documents ----------------------------------------------------------

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


def _zip(head: bytes, ext: str) -> str | None:
    entries = _zip_entries(head)
    if not entries:
        return None
    first_name, first_method, first_data = entries[0]
    if first_name == b"mimetype" and first_method == 0:
        declared = first_data.decode("ascii", "replace").strip()
        return declared if declared in _ODF_TYPES else None

    names = [name for name, _, _ in entries]
    if any(name.endswith(b"vbaProject.bin") for name in names):
        return None
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
        flags = _u16le(head, pos + 6)
        method = _u16le(head, pos + 8)
        compressed = _u32le(head, pos + 18)
        name_end = pos + 30 + _u16le(head, pos + 26)
        data_start = name_end + _u16le(head, pos + 28)
        name = head[pos + 30 : name_end]
        if flags & 0x08:  # sizes follow the data; search for the next header instead
            entries.append((name, method, head[data_start:]))
            pos = head.find(b"PK\x03\x04", max(data_start, pos + 1))
        else:
            entries.append((name, method, head[data_start : data_start + compressed]))
            pos = data_start + compressed
    return entries


def _ooxml_from_content_types(method: int, data: bytes) -> tuple[str | None, bool]:
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
    if None in found or len(found) > 1:
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


def _ole2(head: bytes, ext: str) -> str | None:
    if _OLE_MACROS in head:
        return None
    seen = {mime for name, mime in _OLE_STREAMS if name in head}
    if len(seen) == 1:
        return seen.pop()
    if len(seen) > 1:
        return _OLE_BY_EXTENSION.get(ext) if _OLE_BY_EXTENSION.get(ext) in seen else None
    return _OLE_BY_EXTENSION.get(ext)


# -- plain text ----------------------------------------------------------------------------

_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r\f")
_ASCII_CONTROLS = frozenset(b for b in [*range(0x20), 0x7F] if chr(b) not in _TEXT_CONTROLS_ALLOWED)
_MARKUP = (
    "<!doctype", "<html", "<head", "<body", "<script", "<svg", "<?xml", "<iframe", "<frame",
    "<object", "<embed", "<meta", "<link", "<style", "<form", "<img", "<a ", "<base",
    "<math", "<!--", "<![cdata[", "javascript:", "vbscript:",
)  # fmt: skip


def _text(head: bytes, ext: str) -> str | None:
    mime = TEXT_EXTENSIONS.get(ext)
    if mime is None:
        return None
    text = _decode_text(head)
    if text is None:
        return None
    lowered = text.lstrip(" \t\r\n\f\ufeff").lower()
    if lowered.startswith(("<", "#!")):
        return None
    if any(marker in lowered for marker in _MARKUP):
        return None
    return mime


def _decode_text(head: bytes) -> str | None:
    """The text in ``head``, or ``None`` if it is not text.

    UTF-16 needs its byte-order mark; then UTF-8 is tried (a character cut off at the end of
    ``head`` is tolerated); anything else is read as some ASCII-compatible 8-bit encoding
    (Windows-1252, Latin-1, Shift_JIS, GBK...), checked only for its ASCII part.  Control
    characters other than tab, CR, LF and form feed mean binary data, not text.
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16-le" if head.startswith(b"\xff\xfe") else "utf-16-be"
        text = _decode(encoding, head[2:])
    else:
        text = _decode("utf-8-sig", head)
    if text is not None:
        if any(c not in _TEXT_CONTROLS_ALLOWED and unicodedata.category(c) == "Cc" for c in text):
            return None
        return text
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    if any(byte in _ASCII_CONTROLS for byte in head):
        return None
    # Markup is ASCII in every ASCII-compatible encoding, so Latin-1 shows it wherever it is.
    return head.decode("latin-1")


def _decode(encoding: str, data: bytes) -> str | None:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        return decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return None
