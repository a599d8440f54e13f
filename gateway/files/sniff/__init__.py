"""Content types decided from a file's first bytes, never from what the client declared.

The gateway stores only file kinds that staff genuinely upload (scans, photos, PDFs, video,
audio, office documents, text notes and tables, DICOM images, and healthcare's interchange
formats: HL7 v2 messages, CDA documents, FHIR resources, e-mails) and refuses the rest: HTML,
SVG, JavaScript, shell scripts, executables, archives, polyglots and anything unrecognised.
``docs/file-types.md`` lists every kind, how it is recognised and how it is served.

Rooms: :mod:`.kinds` (the types, which are inline, their extensions and names),
:mod:`.detect` (:func:`sniff` and :func:`check_upload`), :mod:`.media`, :mod:`.dicom`,
:mod:`.office` and :mod:`.text` (the detectors), :mod:`.names` (a name's extension against the
type), :mod:`.base`.  Everything here is pure: bytes and names in, decisions out, no I/O.
"""
from .base import Refused
from .detect import SNIFF_BYTES, Verdict, check_upload, sniff
from .kinds import (
    AAC,
    AIFF,
    ALLOWED_TYPES,
    AVI,
    AVIF,
    BMP,
    CDA_XML,
    CSV,
    DICOM,
    DOC,
    DOCX,
    EML,
    EXTENSIONS,
    FHIR_JSON,
    FLAC,
    GIF,
    HEIC,
    HEIF,
    HL7_V2,
    INLINE_TYPES,
    J2C,
    JP2,
    JPEG,
    JPX,
    M4A,
    MARKUP_TYPES,
    MATROSKA,
    MATROSKA_AUDIO,
    MP3,
    MP4,
    MPEG_PS,
    MPEG_TS,
    ODP,
    ODS,
    ODT,
    OGG_AUDIO,
    OGG_VIDEO,
    PDF,
    PNG,
    PPT,
    PPTX,
    QUICKTIME,
    RTF,
    TEXT,
    TEXT_EXTENSIONS,
    THREEG2,
    THREEGP,
    TIFF,
    TSV,
    WAV,
    WEBM,
    WEBM_AUDIO,
    WEBP,
    WMA,
    WMV,
    XLS,
    XLSX,
    describe,
    is_inline,
)
from .names import name_conflict, name_extension

__all__ = [
    "AAC", "AIFF", "ALLOWED_TYPES", "AVI", "AVIF", "BMP", "CDA_XML", "CSV", "DICOM", "DOC",
    "DOCX", "EML", "EXTENSIONS", "FHIR_JSON", "FLAC", "GIF", "HEIC", "HEIF", "HL7_V2",
    "INLINE_TYPES", "J2C", "JP2", "JPEG", "JPX", "M4A", "MARKUP_TYPES", "MATROSKA",
    "MATROSKA_AUDIO", "MP3", "MP4", "MPEG_PS", "MPEG_TS", "ODP", "ODS", "ODT", "OGG_AUDIO",
    "OGG_VIDEO", "PDF", "PNG", "PPT", "PPTX", "QUICKTIME", "RTF", "Refused", "SNIFF_BYTES",
    "TEXT", "TEXT_EXTENSIONS", "THREEG2", "THREEGP", "TIFF", "TSV", "Verdict", "WAV", "WEBM",
    "WEBM_AUDIO", "WEBP", "WMA", "WMV", "XLS", "XLSX", "check_upload", "describe", "is_inline",
    "name_conflict", "name_extension", "sniff",
]
