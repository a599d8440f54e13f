"""The decision: which allowed type a file's first bytes show, and whether its name agrees.

:func:`sniff` looks at the bytes (and, only to narrow what the bytes allow, at the name's
extension); :func:`check_upload` adds the policy of an upload: a reasoned refusal for staff,
and the refusal of a name whose extension contradicts the type.

Pure functions; no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import dicom as _dicom
from . import media, office, text
from .base import Refused
from .kinds import (
    AIFF,
    AVI,
    BMP,
    FLAC,
    GIF,
    JPEG,
    MP4,
    MPEG_PS,
    MPEG_TS,
    PDF,
    PNG,
    QUICKTIME,
    RTF,
    TIFF,
    WAV,
    WEBP,
)
from .names import name_conflict

#: How many leading bytes :func:`sniff` looks at; give it this many (or the whole file).
SNIFF_BYTES = 4096
#: PDF readers find ``%PDF-`` anywhere in a file's first 1,024 bytes.
PDF_HEADER_WINDOW = 1024

EMPTY_REFUSED = Refused("empty", "The file is empty; nothing was stored.")
UNKNOWN_REFUSED = Refused(
    "unknown_type",
    "This kind of file cannot be stored here. Accepted are scans and photos, PDFs, office "
    "documents, text notes and tables, audio, video, DICOM images, HL7 messages, CDA and FHIR "
    "documents, and e-mails (.eml). The type is decided from the file's content, not its name.",
)
PROGRAM_REFUSED = Refused(
    "program",
    "This file is a program, not a document, so it was not stored.",
)
# Executables and compiled code of the common systems (Windows PE, ELF, Mach-O, Java class
# files and universal binaries, WebAssembly).
_PROGRAMS = (b"MZ", b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xce",
             b"\xfe\xed\xfa\xcf", b"\xca\xfe\xba\xbe", b"\x00asm")  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    """What :func:`check_upload` decided.

    :ivar content_type: the type to store the file under, or ``None`` if it is refused
    :ivar reason: why it was refused, a short fixed code (``""`` when accepted)
    :ivar message: why it was refused, in words for the person uploading
    """

    content_type: str | None
    reason: str = ""
    message: str = ""

    @property
    def accepted(self) -> bool:
        return self.content_type is not None


def sniff(head: bytes, filename: str | None = None) -> str | None:
    """Decide an upload's content type from its first bytes.

    :param head: the first :data:`SNIFF_BYTES` bytes of the file, or all of it if shorter;
        bytes beyond :data:`SNIFF_BYTES` are not looked at
    :param filename: the file's name, used only to narrow what the bytes allow (``.docx``
        from ``.xlsx``, ``.txt`` from ``.csv``, ``.m4a`` from ``.mp4``...)
    :returns: a type from :data:`~gateway.files.sniff.ALLOWED_TYPES`, or ``None`` if the file
        is empty or not an allowed kind
    """
    found = _detect(head, _extension(filename))
    return found if isinstance(found, str) else None


def check_upload(head: bytes, filename: str | None) -> Verdict:
    """:func:`sniff`, and the name's agreement with the type, with a reason for a refusal.

    :param head: as for :func:`sniff`
    :param filename: the name the file is stored and downloaded under
    """
    found = _detect(head, _extension(filename))
    if found is None:
        found = PROGRAM_REFUSED if _is_program(bytes(head[:SNIFF_BYTES])) else UNKNOWN_REFUSED
    if isinstance(found, str):
        conflict = name_conflict(found, filename)
        if conflict is None:
            return Verdict(found)
        found = conflict
    return Verdict(None, found.reason, found.message)


def _is_program(head: bytes) -> bool:
    return head.startswith(_PROGRAMS) and text.decode_text(head) is None


def _extension(filename: str | None) -> str:
    """The extension that narrows the bytes' type: after the last dot of a non-empty stem."""
    if not filename:
        return ""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def _detect(head: bytes, ext: str) -> str | Refused | None:
    head = bytes(head[:SNIFF_BYTES])
    if not head:
        return EMPTY_REFUSED
    complete = len(head) < SNIFF_BYTES

    if head[128:132] == _dicom.MAGIC or head.startswith((b"\x02\x00\x00\x00", b"\x08\x00")):
        if (found := _dicom.dicom(head)) is not None:
            return found
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
    if media.is_bmp(head):
        return BMP
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith((media.JP2_SIGNATURE, media.J2C_SIGNATURE)):
        return media.jpeg2000(head)
    if head[4:8] == b"ftyp":
        return media.iso_media(head, ext)
    if media.is_legacy_quicktime(head):
        return {"mov": QUICKTIME, "qt": QUICKTIME, "mp4": MP4, "m4v": MP4}.get(ext)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return media.matroska(head, ext)
    if head.startswith(b"OggS"):
        return media.ogg(head)
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"FORM") and head[8:12] in (b"AIFF", b"AIFC"):
        return AIFF
    if head.startswith(b"ID3"):
        return media.after_id3(head)
    if media.is_mpeg_ts(head):
        return MPEG_TS
    if head.startswith((b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")):
        return MPEG_PS
    if head[0] == 0xFF and (audio := media.audio_frames(head, 0)) is not None:
        return audio
    if head.startswith(media.ASF_HEADER):
        return media.asf(head, ext)
    if head.startswith(b"PK\x03\x04"):
        return office.zip_package(head, ext)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return office.ole2(head, ext)
    if head.startswith(b"{\\rtf"):
        return RTF
    return _textual(head, ext, complete)


def _textual(head: bytes, ext: str, complete: bool) -> str | Refused | None:
    """The text-based kinds: the name narrows plain text and e-mail, the structure the rest."""
    if ext in text.TEXT_EXTENSIONS:
        return text.plain_text(head, ext)
    if _late_pdf(head):
        return PDF
    if (found := text.hl7_v2(head, complete)) is not None:
        return found
    if ext == "eml" and (found := text.email(head)) is not None:
        return found
    if (found := text.fhir_json(head, complete)) is not None:
        return found
    return text.cda_xml(head)


def _late_pdf(head: bytes) -> bool:
    """A PDF whose ``%PDF-`` follows a line of junk: accepted when that junk is plain text
    (a printer's escape sequences allowed) and neither markup, a script nor PostScript."""
    at = head.find(b"%PDF-", 1, PDF_HEADER_WINDOW + 4)
    if at < 0:
        return False
    junk = text.decode_text(head[:at].replace(b"\x1b", b""))
    if junk is None:
        return False
    if junk.lstrip().startswith(("#!", "%!")):
        return False
    return not text.has_markup(junk)
