"""The admin console in Chromium against the real gateway (gunicorn, moto's S3): an admin
deactivates a user whose open session then fails, resets a password, revokes a token and
sees the key versions; staff cannot open the page (403 page, audited). Screenshots of the
console at desktop and phone width go to the test's temporary directory, or to
docs/screenshots/ with ``GATEWAY_SCREENSHOTS=1`` (to refresh the ones the documentation shows)."""
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

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"y" * 4000
DOC_SHOTS = ROOT / "docs" / "screenshots"

pytestmark = pytest.mark.browser


def audit(live: LiveGateway, action: str) -> list[AuditEvent]:
    with live.stack.services.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)))


def test_admin_console_workflows(live: LiveGateway, browser, page, tmp_path: Path) -> None:
    staff = live.stack.users["staff1"]
    bearer = {"Authorization": f"Bearer {staff.token}"}
    assert requests.put(f"{live.url}/api/v1/files/uploads/console.pdf", data=PDF,
                        headers=bearer, timeout=30).status_code == 201

    # a staff member is working in another browser
    other = browser.new_context()
    staff_page = other.new_page()
    sign_in(staff_page, live, "staff1b")
    assert staff_page.url == live.url + "/"

    page.set_viewport_size({"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations
    sign_in(page, live, "admin1")
    page.click("header nav >> text=Admin")
    page.wait_for_url(live.url + "/admin")
    page.wait_for_selector('#users tr[data-email="staff1b@example.test"]')

    # key versions with object counts
    page.wait_for_selector('#keys tr[data-version="1"]')
    key_row = page.locator('#keys tr[data-version="1"]').inner_text()
    assert "current" in key_row and "\t1\t" in key_row + "\t"
    assert "New uploads use version 1" in page.inner_text("#keys-summary")
    assert page.inner_text("#storage-bucket") == "reachable"

    # deactivate: the open session fails at once
    page.click('button[aria-label="Deactivate staff1b@example.test"]')
    page.wait_for_selector('#users tr[data-email="staff1b@example.test"] >> text=deactivated')
    assert "staff1b@example.test is deactivated" in page.inner_text("#admin-status")
    staff_page.reload()
    assert "/login" in staff_page.url
    gone = audit(live, "user_deactivate")[-1]
    assert gone.user_email == "admin1@example.test" and gone.outcome == "success"
    assert json.loads(gone.detail)["sessions_ended"] == 1
    other.close()

    # reset a password with a one-time link; the user sets a new one and signs in with it
    page.click('button[aria-label="Reset link for staff1@example.test"]')
    page.wait_for_selector("#admin-secret:not([hidden])")
    link = page.input_value("#admin-secret-value")
    assert "/reset/" in link
    visitor_ctx = browser.new_context()
    visitor = visitor_ctx.new_page()
    visitor.goto(link)
    assert "staff1@example.test" in visitor.inner_text("main")
    visitor.fill("#reset-password", "a brand new passphrase")
    visitor.fill("#reset-confirm", "a brand new passphrase")
    visitor.click("main button[type=submit]")
    visitor.wait_for_selector("text=is set")
    sign_in(visitor, live, "staff1", "a brand new passphrase")
    assert visitor.url == live.url + "/"
    visitor.goto(link)  # a second use is refused
    assert "not valid" in visitor.inner_text("main")
    visitor_ctx.close()
    assert audit(live, "password_set")[-1].user_email == "staff1@example.test"
    page.click("#admin-secret-close")

    # revoke staff1's token: scripts using it stop at once
    page.select_option("#token-filter", str(staff.user_id))
    prefix = staff.token[:10]
    page.wait_for_selector(f'#tokens tr[data-prefix="{prefix}"] >> text=active')
    page.click(f'button[aria-label="Revoke token {prefix} of staff1@example.test"]')
    page.wait_for_selector(f'#tokens tr[data-prefix="{prefix}"] >> text=revoked')
    assert requests.get(f"{live.url}/api/v1/files", headers=bearer, timeout=30).status_code == 401
    revoked = audit(live, "token_revoke")[-1]
    assert revoked.user_email == "admin1@example.test"
    assert json.loads(revoked.detail)["prefix"] == prefix

    # create a token, shown once
    page.select_option("#token-user", str(live.stack.users["auditor1"].user_id))
    page.click("#token-create button[type=submit]")
    page.wait_for_selector("#admin-secret:not([hidden])")
    new_token = page.input_value("#admin-secret-value")
    assert requests.get(f"{live.url}/api/v1/audit", timeout=30,
                        headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    page.click("#admin-secret-close")

    # change a role
    page.select_option('select[aria-label="Role of staff1@example.test"]', "auditor")
    page.wait_for_selector("#admin-status >> text=staff1@example.test is now auditor")
    assert json.loads(audit(live, "user_set_role")[-1].detail)["after"] == {"role": "auditor"}

    # own account: no deactivate button, role locked
    mine = page.locator('#users tr[data-email="admin1@example.test"]')
    assert mine.locator("text=Deactivate").count() == 0
    assert page.is_disabled('select[aria-label="Role of admin1@example.test"]')

    # a key rotation: the new version is current, the old one still protects the object
    services = live.stack.services
    with services.sessions() as s:
        services.keyring.create_org_key(s, live.stack.org1)
        s.commit()
    page.select_option("#token-filter", "")
    page.click("#admin-refresh")
    page.wait_for_selector('#keys tr[data-version="2"] >> text=current')
    assert "\t1\t" in page.locator('#keys tr[data-version="1"]').inner_text() + "\t"
    assert "1 of 1 object(s) are not yet on key version 2" in page.inner_text("#jobs-summary")
    page.wait_for_timeout(300)
    shots = DOC_SHOTS if os.environ.get("GATEWAY_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "admin-desktop.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector('#keys tr[data-version="1"]')
    page.wait_for_selector('#tokens tr[data-prefix]')
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "admin-phone.png"))  # what a phone shows first


@pytest.mark.parametrize("name", ["staff2", "auditor2"])
def test_staff_and_auditors_get_the_403_page(live: LiveGateway, page, name: str) -> None:
    sign_in(page, live, name)
    assert page.locator("header nav >> text=Admin").count() == 0
    resp = page.goto(live.url + "/admin")
    assert resp is not None and resp.status == 403
    assert page.inner_text("main h1") == "You are not allowed to do this"
    row = audit(live, "denied")[-1]
    assert row.user_email == f"{name}@example.test" and row.http_status == 403
    assert "/admin" in json.loads(row.detail)["reason"]
    assert page.evaluate("fetch('/api/v1/admin/users').then(r => r.status)") == 403
