"""Text: plain notes and tables, HL7 v2 messages, HL7 CDA documents, FHIR resources, e-mails.

Plain text (``.txt``, ``.csv``, ``.tsv``) and HL7 v2 messages are refused when they hold
markup a browser would act on: a document type, comment or processing instruction, an active
element (``<script``, ``<svg``, ``<iframe``...), a bare or closing HTML tag (``<html>``,
``</p>``), a self-closing tag, a tag with an event handler, a URL attribute or a quoted
attribute value, or a ``javascript:`` URL.  A less-than sign before a word (``<baseline``,
``<a week``, ``<body ideal``) is not markup: clinical notes are full of them.

CDA documents are XML by nature and FHIR resources carry XHTML narrative, and e-mails HTML
parts: they are recognised by their structure instead, and served only as attachments.  A
CDA document must not declare a DTD or entities, the XHTML, SVG or MathML namespaces (which
would make a browser run its content as a web page), a remote style sheet, or a
``javascript:`` URL.

Pure functions; no I/O.
"""
from __future__ import annotations

import codecs
import json
import re
import unicodedata

from .base import Refused
from .kinds import CDA_XML, EML, FHIR_JSON, HL7_V2, TEXT_EXTENSIONS

MARKUP_REFUSED = Refused(
    "markup",
    "This file contains web page code (HTML or script), which cannot be stored here. If it "
    "is a note or a letter, save it as plain text or PDF and upload it again.",
)
SCRIPT_REFUSED = Refused("script", "This file is a program script, not a document, so it was "
                                   "not stored.")
XML_REFUSED = Refused(
    "xml_active_content",
    "This XML document contains web page code or external references, which cannot be "
    "stored here. Ask the sender for a plain CDA export.",
)

_TEXT_CONTROLS_ALLOWED = frozenset("\t\n\r\f")
_ASCII_CONTROLS = frozenset(b for b in [*range(0x20), 0x7F] if chr(b) not in _TEXT_CONTROLS_ALLOWED)

# -- markup --------------------------------------------------------------------------------

# Elements that act whatever follows their name: scripts, frames, plug-ins, SVG and MathML
# (which carry their own scripts), style sheets and templates.
_ACTIVE = "script|iframe|frame|frameset|object|embed|applet|svg|math|style|noscript|template|portal"
# HTML elements, recognised as tags when bare (``<p>``, ``</b>``).
_HTML = (
    "html|head|body|title|meta|link|base|form|input|button|textarea|select|option|img|image|"
    "picture|video|audio|source|track|canvas|a|div|span|p|br|hr|b|i|u|s|em|strong|font|center|"
    "marquee|table|thead|tbody|tfoot|tr|td|th|caption|col|colgroup|ul|ol|li|dl|dt|dd|h[1-6]|"
    "pre|code|blockquote|section|article|header|footer|nav|main|aside|label|fieldset|legend|"
    "details|summary|dialog|area|map|bgsound|blink|keygen|isindex|listing|plaintext|xmp|sub|"
    "sup|small|big|tt|q|cite|kbd|var|nobr|wbr|xml"
)
# Attributes that run script or load something, whatever their value's quoting.
_URL_OR_HANDLER = (
    "on[a-z]+|href|src|srcset|srcdoc|action|formaction|xmlns(?::[-.\\w]+)?|xlink:href|"
    "http-equiv|background|poster|dynsrc|lowsrc|codebase"
)
_NAME = "[a-z][^\\s/<>=\"'`]*"
_ATTR = "[^\\s/<>=\"'`]+(?:\\s*=\\s*(?:\"[^\"]*\"|'[^']*'|[^\\s/<>=\"'`]+))?"
_MARKUP = re.compile(
    "<!doctype|<!--|<!\\[cdata\\[|<\\?[a-z]|javascript:|vbscript:|data:text/html"
    f"|<(?:{_ACTIVE})(?![^\\s/>])"
    f"|</?(?:{_HTML})\\s*/?>"
    f"|</{_NAME}\\s*>"
    f"|<{_NAME}\\s*/>"
    f"|<{_NAME}(?:[\\s/]+{_ATTR})*?[\\s/]+(?:(?:{_URL_OR_HANDLER})\\s*=|[^\\s/<>=\"'`]+\\s*=\\s*[\"'])"
)


def has_markup(text: str) -> bool:
    """Whether ``text`` holds markup a browser would act on (see the module's description)."""
    return _MARKUP.search(text.lower()) is not None


# -- plain text ----------------------------------------------------------------------------


def plain_text(head: bytes, ext: str) -> str | Refused | None:
    """Text under a ``.txt``, ``.csv`` or ``.tsv`` name, without markup or a ``#!`` line."""
    mime = TEXT_EXTENSIONS.get(ext)
    if mime is None:
        return None
    text = decode_text(head)
    if text is None:
        return None
    if text.lstrip(" \t\r\n\f\ufeff").startswith("#!"):
        return SCRIPT_REFUSED
    if has_markup(text):
        return MARKUP_REFUSED
    return mime


def decode_text(head: bytes) -> str | None:
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


def _lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


# -- HL7 v2 --------------------------------------------------------------------------------

# MSH (or a batch's FHS / BHS), the field separator, 4 or 5 encoding characters, the separator.
_HL7_START = re.compile(r"(?:MSH|FHS|BHS)([^\w\s])[^\w\s]{4,5}?\1")
_HL7_SEGMENT = re.compile(r"[A-Z][A-Z0-9]{2}")


def hl7_v2(head: bytes, complete: bool) -> str | Refused | None:
    """An HL7 v2 message (or batch) in the pipe-delimited ER7 encoding.

    :param complete: whether ``head`` is the whole file (else its last line may be cut)
    """
    # Files captured from an interface may keep the MLLP framing (VT before, FS after).
    body = head[1:] if head.startswith(b"\x0b") else head
    if not body.startswith((b"MSH", b"FHS", b"BHS")):
        return None
    text = decode_text(body.replace(b"\x1c", b""))
    if text is None:
        return None
    match = _HL7_START.match(text)
    if match is None:
        return None
    separator = match.group(1)
    lines = _lines(text)
    if not complete:
        lines = lines[:-1]
    for line in lines:
        if line and not (_HL7_SEGMENT.match(line) and line[3:4] in (separator, "")):
            return None
    return MARKUP_REFUSED if has_markup(text) else HL7_V2


# -- e-mail (RFC 5322, saved as .eml) ------------------------------------------------------

_FIELD = re.compile(r"[!-9;-~]+:")
_MAIL_FIELDS = frozenset(
    "from to cc bcc subject date message-id mime-version received return-path delivered-to "
    "reply-to sender in-reply-to references content-type x-mailer".split()
)
_MAIL_ORIGIN = frozenset({"from", "date", "received", "message-id", "return-path"})


def email(head: bytes) -> str | None:
    """An e-mail: a header block of ``Name: value`` fields naming at least its origin."""
    text = decode_text(head)
    if text is None:
        return None
    lines = _lines(text)[:-1]  # the last line may be cut off
    if lines and lines[0].startswith("From "):
        lines = lines[1:]  # an mbox separator line
    names: set[str] = set()
    for line in lines:
        if line == "":
            break
        if line[0] in " \t":
            if not names:
                return None
            continue
        field = _FIELD.match(line)
        if field is None:
            return None
        names.add(field.group()[:-1].lower())
    if len(names & _MAIL_FIELDS) >= 2 and names & _MAIL_ORIGIN:
        return EML
    return None


# -- FHIR (JSON) ---------------------------------------------------------------------------

_RESOURCE_TYPE = re.compile(r'"resourceType"\s*:\s*"[A-Z][A-Za-z]{1,63}"')


def fhir_json(head: bytes, complete: bool) -> str | None:
    """A FHIR resource in JSON: an object naming its ``resourceType``, valid JSON when the
    whole file is in view."""
    text = decode_text(head)
    if text is None or not text.lstrip("\ufeff \t\r\n").startswith("{"):
        return None
    if _RESOURCE_TYPE.search(text) is None:
        return None
    if complete:
        try:
            value = json.loads(text.lstrip("\ufeff"))
        except ValueError:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            return None
    return FHIR_JSON


# -- HL7 CDA (XML) -------------------------------------------------------------------------

# The prolog: the declaration, style sheets, comments, and a document type (refused later).
_PROLOG = re.compile(
    r"\s*(?:<\?xml(?:-stylesheet)?\s[^<>]*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)",
    re.S | re.I,
)
_CDA_ROOT = re.compile(r"<(?:([A-Za-z_][-.\w]*):)?ClinicalDocument(?=[\s/>])")
_STYLESHEET_HREF = re.compile(r"<\?xml-stylesheet\s[^<>]*?href\s*=\s*[\"']([^\"']*)[\"']", re.S)
_ACTIVE_NAMESPACES = (
    "http://www.w3.org/1999/xhtml",
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1998/math/mathml",
)
_XML_DANGERS = ("<!doctype", "<!entity", "javascript:", "vbscript:", "data:text/html",
                "xi:include", "<script")


def cda_xml(head: bytes) -> str | Refused | None:
    """An HL7 CDA document: XML whose root element is ``ClinicalDocument`` in the
    ``urn:hl7-org:v3`` namespace, after an optional declaration, comments and style sheet."""
    text = decode_text(head)
    if text is None:
        return None
    text = text.lstrip("\ufeff")
    pos = 0
    while match := _PROLOG.match(text, pos):
        pos = match.end()
    pos = len(text) - len(text[pos:].lstrip())
    root = _CDA_ROOT.match(text, pos)
    if root is None:
        return None
    end = text.find(">", root.end())
    start_tag = text[root.end() : end if end >= 0 else len(text)]
    prefix = f":{root.group(1)}" if root.group(1) else ""
    if re.search(rf"xmlns{re.escape(prefix)}\s*=\s*[\"']urn:hl7-org:v3[\"']", start_tag) is None:
        return None
    lowered = text.lower()
    if any(danger in lowered for danger in _XML_DANGERS):
        return XML_REFUSED
    if any(namespace in lowered for namespace in _ACTIVE_NAMESPACES):
        return XML_REFUSED
    for href in _STYLESHEET_HREF.findall(text[:pos]):
        if ":" in href or href.startswith(("/", "\\")):
            return XML_REFUSED
    return CDA_XML
