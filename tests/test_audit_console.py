"""The audit console in Chromium against the real gateway (gunicorn, moto's S3): an auditor
finds who opened a named file in three actions (type the name, press Search, read the row),
opens that user's activity from the row, exports a folder's access report as CSV and PDF,
reads the review dashboard (a failed sign-in counted and linked to its events) and verifies
the trail from the page; staff cannot open these pages (403 page, audited). Screenshots at
desktop and phone width go to the test's temporary directory, or to docs/screenshots/ with
``GATEWAY_SCREENSHOTS=1``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway.db.models import AuditEvent
from tests.stack import ROOT, LiveGateway
from tests.stack import sign_in_page as sign_in

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"z" * 4000
DOC_SHOTS = ROOT / "docs" / "screenshots"

pytestmark = pytest.mark.browser


def audit(live: LiveGateway, action: str, email: str | None = None) -> list[AuditEvent]:
    with live.stack.services.sessions() as s:
        stmt = select(AuditEvent).where(AuditEvent.action == action)
        if email:
            stmt = stmt.where(AuditEvent.user_email == email)
        return list(s.scalars(stmt.order_by(AuditEvent.id)))


def shots(tmp_path: Path) -> Path:
    out = DOC_SHOTS if os.environ.get("GATEWAY_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def opened(live: LiveGateway) -> str:
    """staff1 uploads a wound photo report; staff1b opens it."""
    bearer = {"Authorization": f"Bearer {live.stack.users['staff1'].token}"}
    for path in ("uploads/ward-3/wound-photo.pdf", "uploads/ward-3/discharge.pdf"):
        resp = requests.put(f"{live.url}/api/v1/files/{path}", data=PDF, headers=bearer,
                            timeout=30)
        assert resp.status_code == 201
    got = requests.get(f"{live.url}/api/v1/files/uploads/ward-3/wound-photo.pdf", timeout=30,
                       headers={"Authorization": f"Bearer {live.stack.users['staff1b'].token}"})
    assert got.status_code == 200 and got.content == PDF
    return "uploads/ward-3/wound-photo.pdf"


def test_an_auditor_finds_who_opened_a_named_file(live: LiveGateway, page, opened: str,
                                                  tmp_path: Path) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live, "auditor1")
    page.click("header nav >> text=Audit")
    page.wait_for_url(live.url + "/audit")
    page.wait_for_selector("#audit-summary >> text=match")

    # 1: type the name, 2: press Search, 3: read the row
    page.fill("#f-file", "wound-photo.pdf")
    page.click("#audit-search")
    page.wait_for_url("**/audit?*name=wound-photo.pdf*")
    row = page.locator("#audit-list tbody tr", has_text="staff1b@example.test").first
    row.wait_for()
    text = row.inner_text()
    assert "view" in text and opened in text
    assert "event" in page.inner_text("#audit-summary")
    assert page.locator("#audit-list tbody tr").count() >= 2  # the upload and the read
    query = audit(live, "audit_query", "auditor1@example.test")[-1]
    assert json.loads(query.detail)["filters"]["name"] == "wound-photo.pdf"

    out = shots(tmp_path)
    page.wait_for_timeout(200)
    page.screenshot(path=str(out / "audit-search-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(out / "audit-search-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # the file's whole history, one click away
    row.locator("a", has_text=opened).click()
    page.wait_for_url("**/audit/objects/*")
    page.wait_for_selector(f"#history-subject >> text={opened}")
    page.wait_for_selector("#audit-list tbody tr >> text=staff1b@example.test")
    page.go_back()
    page.wait_for_selector("#audit-list tbody tr >> text=staff1b@example.test")

    # the user's activity from the row's user link
    page.locator("#audit-list tbody tr", has_text="staff1b@example.test").first.locator(
        "a", has_text="staff1b@example.test").click()
    page.wait_for_url(f"**/audit/users/{live.stack.users['staff1b'].user_id}*")
    assert "staff1b@example.test" in page.inner_text("h1")
    page.wait_for_selector("#audit-list tbody tr")
    users = page.locator("#audit-list tbody tr td:nth-child(2)").all_inner_texts()
    assert users and set(users) == {"staff1b@example.test"}
    page.screenshot(path=str(out / "audit-user-desktop.png"), full_page=True)


def test_a_bad_filter_is_shown_next_to_it(live: LiveGateway, page) -> None:
    sign_in(page, live, "auditor1")
    page.goto(live.url + "/audit")
    page.wait_for_selector("#audit-summary >> text=match")
    page.fill("#f-user", "bob")
    page.click("#audit-search")
    err = page.locator('.field-error[data-for="user"]')
    err.wait_for(state="visible")
    assert "e-mail" in err.inner_text()
    assert page.get_attribute("#f-user", "aria-invalid") == "true"
    assert page.is_hidden("#audit-list")  # never an empty table for a bad filter
    assert "Nothing was searched" in page.inner_text("#audit-summary")
    # corrected: the message goes, the table comes back
    page.fill("#f-user", "staff1b@example.test")
    page.click("#audit-search")
    page.wait_for_selector("#audit-list tbody tr")
    assert page.is_hidden('.field-error[data-for="user"]')


def test_own_searches_are_hidden_by_default(live: LiveGateway, page) -> None:
    sign_in(page, live, "auditor1")
    page.goto(live.url + "/audit")
    page.wait_for_selector("#audit-summary >> text=match")
    page.select_option("#f-action", "audit_query")
    page.click("#audit-search")
    page.wait_for_selector("#audit-summary >> text=/match|No event/")
    mine = page.locator("#audit-list tbody tr", has_text="auditor1@example.test")
    assert mine.count() == 0
    page.uncheck("input[name=hide_mine]")
    page.click("#audit-search")
    page.wait_for_selector("#audit-list tbody tr >> text=auditor1@example.test")


def test_a_folder_access_report_exports_as_csv_and_pdf(live: LiveGateway, page, opened: str,
                                                       tmp_path: Path) -> None:
    sign_in(page, live, "auditor1")
    page.goto(live.url + "/audit/folders?prefix=uploads/ward-3")
    page.wait_for_selector("#audit-list tbody tr >> text=discharge.pdf")
    assert "uploads/ward-3/" in page.inner_text("h1")
    with page.expect_download() as got:
        page.click("#audit-csv")
    text = Path(got.value.path()).read_bytes().decode()
    assert text.startswith("chain,seq,occurred_at")
    assert opened in text and "uploads/ward-3/discharge.pdf" in text
    with page.expect_download() as got:
        page.click("#audit-pdf")
    data = Path(got.value.path()).read_bytes()
    assert data.startswith(b"%PDF")
    exports = audit(live, "audit_export", "auditor1@example.test")[-2:]
    assert [json.loads(e.detail)["format"] for e in exports] == ["csv", "pdf"]
    assert all(json.loads(e.detail)["filters"]["object_path"] == "uploads/ward-3/*"
               for e in exports)
    assert json.loads(exports[0].detail)["rows"] == text.count("\r\n") - 1
    page.screenshot(path=str(shots(tmp_path) / "audit-folder-desktop.png"), full_page=True)


def test_the_review_dashboard_and_verify_now(live: LiveGateway, browser, page,
                                             tmp_path: Path) -> None:
    # someone mistypes staff1's password on the sign-in page
    other = browser.new_context()
    visitor = other.new_page()
    sign_in(visitor, live, "staff1", "not the password at all")
    assert "/login" in visitor.url
    other.close()

    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, live, "auditor1")
    page.click("header nav >> text=Review")
    page.wait_for_url(live.url + "/audit/review")
    item = page.locator('#review-items li[data-key="login_failed"]')
    item.wait_for()
    count = int(item.locator(".count").inner_text())
    assert count >= 1
    page.wait_for_selector("#verify-last >> text=/verified/")

    # verify now: intact, and recorded like the command line's
    before = len(audit(live, "audit_verify"))
    page.click("#verify-now")
    page.wait_for_selector("#verify-result >> text=Intact")
    rows = audit(live, "audit_verify")
    assert len(rows) == before + 1
    assert rows[-1].user_email == "auditor1@example.test" and rows[-1].outcome == "success"
    page.wait_for_selector("#verify-last >> text=intact")
    out = shots(tmp_path)
    page.screenshot(path=str(out / "audit-review-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(out / "audit-review-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # the count links to exactly those events
    item.locator("a").click()
    page.wait_for_url("**/audit?*action=login_failed*")
    page.wait_for_selector("#audit-list tbody tr >> text=login_failed")
    assert page.input_value("#f-action") == "login_failed"
    actions = set(page.locator("#audit-list tbody tr td:nth-child(3)").all_inner_texts())
    assert actions == {"login_failed"}
    assert f"{count} event" in page.inner_text("#audit-summary")


def test_staff_get_the_403_page(live: LiveGateway, page) -> None:
    sign_in(page, live, "staff2")
    assert page.locator("header nav >> text=Audit").count() == 0
    assert page.locator("header nav >> text=Review").count() == 0
    for path in ("/audit", "/audit/review", "/audit/folders?prefix=uploads/",
                 "/audit/users/1", "/audit/objects/" + "a" * 32):
        resp = page.goto(live.url + path)
        assert resp is not None and resp.status == 403, path
        assert page.inner_text("main h1") == "You are not allowed to do this"
        row = audit(live, "denied", "staff2@example.test")[-1]
        assert row.http_status == 403 and path.split("?")[0] in json.loads(row.detail)["reason"]
