"""The file kinds the gateway stores: their MIME types, which are shown inline, and the words
used for them in messages to staff.

Pure data; no I/O.
"""
from __future__ import annotations

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
JP2 = "image/jp2"  # JPEG 2000, JP2 file format
JPX = "image/jpx"  # JPEG 2000 Part 2 (extended) file format
J2C = "image/j2c"  # JPEG 2000 raw codestream
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
# Healthcare interchange and correspondence
HL7_V2 = "x-application/hl7-v2+er7"  # the name HL7 itself uses for pipe-delimited v2 messages
CDA_XML = "application/xml"  # HL7 CDA documents (ClinicalDocument, urn:hl7-org:v3)
FHIR_JSON = "application/fhir+json"
EML = "message/rfc822"
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
WMV = "video/x-ms-wmv"
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
WMA = "audio/x-ms-wma"

#: Every type :func:`~gateway.files.sniff.sniff` can return.
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        JPEG, PNG, GIF, WEBP, TIFF, BMP, HEIC, HEIF, AVIF, JP2, JPX, J2C, DICOM,
        PDF, RTF, DOCX, XLSX, PPTX, ODT, ODS, ODP, DOC, XLS, PPT, TEXT, CSV, TSV,
        HL7_V2, CDA_XML, FHIR_JSON, EML,
        MP4, QUICKTIME, THREEGP, THREEG2, WEBM, MATROSKA, AVI, MPEG_TS, MPEG_PS, OGG_VIDEO, WMV,
        MP3, WAV, FLAC, OGG_AUDIO, M4A, AAC, WEBM_AUDIO, MATROSKA_AUDIO, AIFF, WMA,
    }
)  # fmt: skip

#: Markup-like types (XML, JSON, e-mail, HL7 messages): never inline, so that no browser
#: renders them; like every file they are served with ``X-Content-Type-Options: nosniff``.
MARKUP_TYPES: frozenset[str] = frozenset({HL7_V2, CDA_XML, FHIR_JSON, EML})

# Images and media a browser does not show itself, or whose decoders have a long history of
# flaws: downloaded, never shown inline.
_NOT_INLINE_MEDIA = frozenset({TIFF, JP2, JPX, J2C, WMV, WMA})

#: Types safe to serve with ``Content-Disposition: inline``: images a browser shows as pictures,
#: PDF, audio and video.  Everything else (TIFF, JPEG 2000, Windows Media, DICOM, office
#: documents, text, and every markup-like type) is served as an attachment.
INLINE_TYPES: frozenset[str] = frozenset(
    {t for t in ALLOWED_TYPES if t.startswith(("image/", "audio/", "video/"))} - _NOT_INLINE_MEDIA
    | {PDF}
)

#: File name extensions under which plain text is accepted, and the type each gives.
TEXT_EXTENSIONS: dict[str, str] = {"txt": TEXT, "csv": CSV, "tsv": TSV}

# -- names that agree with a type -------------------------------------------------------------
# A name may end in any extension of its kind's family: a JPEG called ``photo.png`` opens in
# the same picture viewer, a DOCX called ``letter.doc`` in the same word processor.  A family
# never mixes viewers with programs, web pages or archives.

_IMAGE_EXTENSIONS = frozenset(
    "jpg jpeg jpe jfif pjpeg pjp png apng gif webp tif tiff bmp dib heic heif hif avif "
    "jp2 jpx jpf jpm j2k j2c jpc".split()
)
_MEDIA_EXTENSIONS = frozenset(
    "mp4 m4v mov qt 3gp 3gpp 3g2 3gp2 webm mkv mk3d avi ts mts m2ts m2t mpg mpeg mpe m1v m2v "
    "mpv vob ogv ogg oga opus spx mp3 mp2 mpga m4a m4b m4p aac adts wav wave bwf flac mka weba "
    "aif aiff aifc wma wmv asf".split()
)
_WORD_EXTENSIONS = frozenset("doc dot docx dotx rtf odt".split())
_SHEET_EXTENSIONS = frozenset("xls xlt xlsx xltx ods".split())
_SLIDES_EXTENSIONS = frozenset("ppt pps pot pptx ppsx potx odp".split())

#: For each type, the file name extensions that agree with it.
EXTENSIONS: dict[str, frozenset[str]] = {
    **{t: _IMAGE_EXTENSIONS for t in (JPEG, PNG, GIF, WEBP, TIFF, BMP, HEIC, HEIF, AVIF,
                                       JP2, JPX, J2C)},
    **{t: _MEDIA_EXTENSIONS for t in ALLOWED_TYPES if t.startswith(("audio/", "video/"))},
    DICOM: frozenset({"dcm", "dicom", "dic", "dc3", "ima", "img"}),
    PDF: frozenset({"pdf"}),
    RTF: _WORD_EXTENSIONS, DOC: _WORD_EXTENSIONS, DOCX: _WORD_EXTENSIONS, ODT: _WORD_EXTENSIONS,
    XLS: _SHEET_EXTENSIONS, XLSX: _SHEET_EXTENSIONS, ODS: _SHEET_EXTENSIONS,
    PPT: _SLIDES_EXTENSIONS, PPTX: _SLIDES_EXTENSIONS, ODP: _SLIDES_EXTENSIONS,
    TEXT: frozenset({"txt"}), CSV: frozenset({"csv"}), TSV: frozenset({"tsv"}),
    HL7_V2: frozenset({"hl7", "er7"}),
    CDA_XML: frozenset({"xml", "cda"}),
    FHIR_JSON: frozenset({"json"}),
    EML: frozenset({"eml"}),
}  # fmt: skip

#: The extension suggested when a name must be corrected.
USUAL_EXTENSION: dict[str, str] = {
    JPEG: "jpg", PNG: "png", GIF: "gif", WEBP: "webp", TIFF: "tif", BMP: "bmp", HEIC: "heic",
    HEIF: "heif", AVIF: "avif", JP2: "jp2", JPX: "jpx", J2C: "j2c", DICOM: "dcm",
    PDF: "pdf", RTF: "rtf", DOCX: "docx", XLSX: "xlsx", PPTX: "pptx", ODT: "odt", ODS: "ods",
    ODP: "odp", DOC: "doc", XLS: "xls", PPT: "ppt", TEXT: "txt", CSV: "csv", TSV: "tsv",
    HL7_V2: "hl7", CDA_XML: "xml", FHIR_JSON: "json", EML: "eml",
    MP4: "mp4", QUICKTIME: "mov", THREEGP: "3gp", THREEG2: "3g2", WEBM: "webm", MATROSKA: "mkv",
    AVI: "avi", MPEG_TS: "ts", MPEG_PS: "mpg", OGG_VIDEO: "ogv", WMV: "wmv",
    MP3: "mp3", WAV: "wav", FLAC: "flac", OGG_AUDIO: "ogg", M4A: "m4a", AAC: "aac",
    WEBM_AUDIO: "weba", MATROSKA_AUDIO: "mka", AIFF: "aiff", WMA: "wma",
}  # fmt: skip

#: How each type is named in messages to staff.
DESCRIPTIONS: dict[str, str] = {
    JPEG: "a JPEG picture", PNG: "a PNG picture", GIF: "a GIF picture", WEBP: "a WebP picture",
    TIFF: "a TIFF scan", BMP: "a bitmap picture", HEIC: "a HEIC photo", HEIF: "a HEIF photo",
    AVIF: "an AVIF picture", JP2: "a JPEG 2000 scan", JPX: "a JPEG 2000 scan",
    J2C: "a JPEG 2000 scan", DICOM: "a DICOM image",
    PDF: "a PDF document", RTF: "an RTF document", DOCX: "a Word document",
    XLSX: "an Excel spreadsheet", PPTX: "a PowerPoint presentation", ODT: "a text document",
    ODS: "a spreadsheet", ODP: "a presentation", DOC: "a Word document",
    XLS: "an Excel spreadsheet", PPT: "a PowerPoint presentation", TEXT: "a text file",
    CSV: "a CSV table", TSV: "a tab-separated table", HL7_V2: "an HL7 message",
    CDA_XML: "an HL7 CDA document", FHIR_JSON: "a FHIR resource", EML: "an e-mail",
    WMV: "a Windows Media video", WMA: "a Windows Media recording",
}  # fmt: skip


def describe(mime: str) -> str:
    """The words for a type in a message to staff, e.g. ``a PDF document``."""
    if mime in DESCRIPTIONS:
        return DESCRIPTIONS[mime]
    if mime.startswith("video/"):
        return "a video"
    if mime.startswith("audio/"):
        return "an audio recording"
    return "a file"


def is_inline(mime: str) -> bool:
    """Whether a type may be shown inline in the browser (see :data:`INLINE_TYPES`).

    :param mime: a MIME type; parameters such as ``; charset=...`` and case are ignored
    """
    return mime.split(";", 1)[0].strip().lower() in INLINE_TYPES
