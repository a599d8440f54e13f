"""Pictures, audio and video: the containers and codecs recognised from their first bytes.

Pure functions; no I/O.
"""
from __future__ import annotations

from .base import u32be, u32le
from .kinds import (
    AAC,
    AVIF,
    FLAC,
    HEIC,
    HEIF,
    J2C,
    JP2,
    JPX,
    M4A,
    MATROSKA,
    MATROSKA_AUDIO,
    MP3,
    MP4,
    OGG_AUDIO,
    OGG_VIDEO,
    QUICKTIME,
    THREEG2,
    THREEGP,
    WEBM,
    WEBM_AUDIO,
    WMA,
    WMV,
)

# -- images --------------------------------------------------------------------------------


def is_bmp(head: bytes) -> bool:
    # "BM" alone is too weak (text can start with it): require the zero reserved fields and a
    # known DIB header size.
    return (
        head.startswith(b"BM")
        and len(head) >= 18
        and head[6:10] == b"\x00\x00\x00\x00"
        and u32le(head, 14) in (12, 16, 40, 52, 56, 64, 108, 124)
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


def iso_media(head: bytes, ext: str) -> str | None:
    size = u32be(head, 0)
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


def is_legacy_quicktime(head: bytes) -> bool:
    # QuickTime files older than the ftyp box start directly with one of these atoms.
    atom = head[4:8]
    size = u32be(head, 0)
    if atom == b"wide":
        return size == 8
    if atom in (b"moov", b"mdat", b"free", b"skip", b"pnot"):
        return size == 1 or (8 <= size and head[0] == 0)
    return False


# -- Matroska / WebM -----------------------------------------------------------------------


def matroska(head: bytes, ext: str) -> str | None:
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


def ogg(head: bytes) -> str | None:
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


def audio_frames(head: bytes, pos: int) -> str | None:
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


def after_id3(head: bytes) -> str | None:
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


def is_mpeg_ts(head: bytes) -> bool:
    # 188-byte packets, each starting with 0x47; M2TS adds a 4-byte timestamp before each
    # (192-byte packets).  Three packets at least, and every packet start in view must agree.
    for offset, stride in ((0, 188), (4, 192)):
        starts = range(offset, len(head), stride)
        if len(starts) >= 3 and all(head[i] == 0x47 for i in starts):
            return True
    return False




# -- ASF (Windows Media: WMA, WMV) ---------------------------------------------------------

#: The ASF Header Object's GUID (75B22630-668E-11CF-A6D9-00AA0062CE6C, as stored).
ASF_HEADER = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
# Stream Properties objects name each stream's type with one of these GUIDs.
_ASF_VIDEO_STREAM = bytes.fromhex("c0ef19bc4d5bcf11a8fd00805f5c442b")
_ASF_AUDIO_STREAM = bytes.fromhex("409e69f84d5bcf11a8fd00805f5c442b")
_ASF_AUDIO_EXTENSIONS = frozenset({"wma"})


def asf(head: bytes, ext: str) -> str | None:
    """WMV when a video stream is declared in view, WMA when only audio is; else the name says.

    The Header Object (GUID, 64-bit size, 32-bit object count, two reserved bytes) must be
    well formed: at least 30 bytes and a handful of sub-objects.
    """
    if len(head) < 30 or not head.startswith(ASF_HEADER):
        return None
    size = int.from_bytes(head[16:24], "little")
    objects = u32le(head, 24)
    if size < 30 or not 1 <= objects <= 1024 or head[28:30] != b"\x01\x02":
        return None
    if _ASF_VIDEO_STREAM in head:
        return WMV
    if _ASF_AUDIO_STREAM in head:
        return WMA
    return WMA if ext in _ASF_AUDIO_EXTENSIONS else WMV


# -- JPEG 2000 -----------------------------------------------------------------------------

#: The JPEG 2000 signature box (ISO/IEC 15444-1, annex I): length 12, type "jP  ", content.
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
#: A raw JPEG 2000 codestream starts with SOC (FF4F) followed by SIZ (FF51).
J2C_SIGNATURE = b"\xff\x4f\xff\x51"
_JP2_BRANDS = {b"jp2 ": JP2, b"jpx ": JPX, b"jph ": JP2}


def jpeg2000(head: bytes) -> str | None:
    """JP2 or JPX from the File Type box after the signature box; or a raw codestream."""
    if head.startswith(J2C_SIGNATURE):
        # SIZ's length (Lsiz) is 38 + 3 * components, components from 1 to 16384.
        lsiz = int.from_bytes(head[4:6], "big")
        return J2C if len(head) < 6 or (41 <= lsiz <= 38 + 3 * 16384 and lsiz % 3 == 2) else None
    if not head.startswith(JP2_SIGNATURE) or head[16:20] != b"ftyp":
        return None
    size = u32be(head, 12)
    if size < 20:
        return None
    major = head[20:24]
    compatible = [head[i : i + 4] for i in range(28, min(12 + size, len(head)) - 3, 4)]
    for brand in (major, *compatible):
        if brand in _JP2_BRANDS:
            return _JP2_BRANDS[brand]
    return None
