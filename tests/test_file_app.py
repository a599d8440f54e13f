"""The staff file app in Chromium, driven as a user: the folder browser, search and sort,
the viewer (pictures, PDFs, video with seeking, previews of HEIC and TIFF), rename and move,
sharing, delete and the trash, versions, plain-language messages, the idle warning, phone
width and keyboard, and axe-core's accessibility check on every page.

Screenshots of the main pages are written to docs/screenshots/files-*.png with
GATEWAY_SCREENSHOTS=1.
"""
from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest
from sqlalchemy import select

from gateway.db.models import AuditEvent
from tests.stack import PASSWORD, ROOT, LiveGateway, build_stack

pytestmark = pytest.mark.browser

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "docs" / "screenshots"
CLIP = Path(__file__).parent / "media" / "clip.mp4"
FOLDER = "documents/ward7b/"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


# -- helpers ---------------------------------------------------------------------------------


def sign_in(page, live: LiveGateway, user: str, path: str = "/files/") -> None:
    page.goto(live.url + path)
    assert "/login" in page.url
    page.fill("input[name=email]", live.stack.users[user].email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(live.url + path)


def csrf(page) -> str:
    return page.locator('meta[name="csrf-token"]').get_attribute("content")


def put(page, live: LiveGateway, path: str, data: bytes, *, overwrite: bool = False):
    """An upload with the page's own cookies (the uploader itself is tested elsewhere)."""
    url = f"{live.url}/api/v1/files/{quote(path)}" + ("?overwrite=true" if overwrite else "")
    resp = page.request.put(url, data=data, headers={"X-CSRFToken": csrf(page)})
    assert resp.status == 201, resp.text()
    return resp.json()


def axe(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run npm ci", pytrace=False)
    # the page's CSP forbids injected <script>s (add_script_tag): evaluate the source instead
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate("(src) => { (0, eval)(src); }", AXE.read_text())
    result = page.evaluate("async () => await window.axe.run(document)")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide"


def shot(page, name: str) -> None:
    """A screenshot into the test's run; into docs/screenshots/ too with GATEWAY_SCREENSHOTS=1
    (to refresh the ones the documentation shows)."""
    import tempfile

    target = SHOTS if os.environ.get("GATEWAY_SCREENSHOTS") == "1" else \
        Path(tempfile.gettempdir()) / "gateway-screenshots"
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"files-{name}.png"), full_page=True)


def png(size: tuple[int, int], colour: str) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    for x in range(0, size[0], 16):
        draw.line([(x, 0), (size[0] - x, size[1])], fill="white", width=3)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def pdf() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (600, 800), "white")
    ImageDraw.Draw(img).text((40, 40), "Discharge letter", fill="black")
    out = io.BytesIO()
    img.save(out, "PDF")
    return out.getvalue()


def audit_rows(live: LiveGateway, path: str) -> list[tuple[str, str, int | None]]:
    with live.stack.services.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.object_path == path)
                         .order_by(AuditEvent.id))
        return [(e.action, e.outcome, e.http_status) for e in rows]


@pytest.fixture
def desk(browser) -> Iterator:
    context = browser.new_context(viewport=DESKTOP)
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()


# -- tests -----------------------------------------------------------------------------------


class Watch:
    """The responses a page receives for one object's API URL, and CSP violations."""

    def __init__(self, page) -> None:
        self.responses: list[tuple[int, str | None]] = []
        self.csp: list[str] = []
        self.path: str | None = None
        page.on("response", self._response)
        page.on("console", self._console)

    def _response(self, resp) -> None:
        if self.path and resp.url.split("?")[0].endswith("/api/v1/files/" + quote(self.path)):
            self.responses.append((resp.status, resp.request.headers.get("range")))

    def _console(self, msg) -> None:
        if "Content Security Policy" in msg.text:
            self.csp.append(msg.text)


def rows(page) -> list[str]:
    return page.locator("#file-rows tr td.name a").all_text_contents()


def test_a_nurse_files_finds_views_and_manages_patient_files(live: LiveGateway, desk) -> None:
    page = desk
    watch = Watch(page)
    sign_in(page, live, "staff1")
    assert page.locator("#folder-list .folder-name").all_text_contents() == [
        "Documents", "Signatures", "Templates", "Uploads"]
    assert axe(page) == []

    # a new folder: shown at once, kept once a file is in it; the uploader is told where
    page.click("text=Documents")
    page.wait_for_url(live.url + "/files/documents/")
    page.click("#new-folder-button")
    page.fill("#new-folder-name", "ward7b")
    page.keyboard.press("Enter")
    page.wait_for_url(live.url + "/files/" + FOLDER)
    assert page.get_attribute("#uploader-slot", "data-folder") == FOLDER
    page.wait_for_selector("#empty-folder:not([hidden])")
    assert "new" in page.text_content("#empty-folder")
    page.click("#up-link")
    page.wait_for_url(live.url + "/files/documents/")
    assert page.text_content("a.folder.pending") .strip().startswith("ward7b")

    # two files (and a video) uploaded into it
    photo = png((900, 600), "teal")
    put(page, live, FOLDER + "wound-photo.png", photo)
    put(page, live, FOLDER + "discharge-letter.pdf", pdf())
    put(page, live, FOLDER + "clip.mp4", CLIP.read_bytes())
    page.goto(live.url + "/files/" + FOLDER)
    page.wait_for_selector("#file-rows tr")
    assert rows(page) == ["clip.mp4", "discharge-letter.pdf", "wound-photo.png"]
    sizes = page.locator("#file-rows td.size").all_text_contents()
    assert all(re.fullmatch(r"[0-9.]+ (KB|MB)", s) for s in sizes), sizes
    assert page.locator("#file-rows td.col-who").first.text_content().endswith(
        "staff1@example.test")
    assert page.get_attribute("#file-rows time", "datetime").endswith("Z")
    shot(page, "browser")
    assert axe(page) == []

    # sort by size: the largest first, then the smallest first
    page.click("button[data-sort=size]")
    page.wait_for_function("() => document.querySelector('th[data-col=size]')"
                           ".getAttribute('aria-sort') === 'descending'")
    page.wait_for_function("() => document.querySelector('#file-rows td.name a')"
                           ".textContent === 'clip.mp4'")
    page.click("button[data-sort=size]")
    page.wait_for_function("() => document.querySelector('#file-rows td.name a')"
                           ".textContent === 'discharge-letter.pdf'")
    assert rows(page) == ["discharge-letter.pdf", "wound-photo.png", "clip.mp4"]

    # search by name across the organisation (from the top)
    page.goto(live.url + "/files/")
    page.fill("#search-q", "WOUND")
    page.click("#search-form button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#file-rows tr').length === 1")
    assert rows(page) == ["wound-photo.png"]
    assert page.locator("#file-rows td.col-folder").text_content().endswith(FOLDER)
    assert "q=WOUND" in page.url
    shot(page, "search")
    assert axe(page) == []

    # the viewer: the picture, its details, next/previous by name
    page.click("#file-rows a.file-link")
    page.wait_for_url(live.url + "/files/view/" + FOLDER + "wound-photo.png")
    assert page.title().startswith("wound-photo.png")
    page.wait_for_function("() => document.querySelector('.stage img').naturalWidth === 900")
    details = page.text_content(".details dl")
    assert FOLDER in details and "KB" in details and "staff1@example.test" in details
    assert page.locator('a[rel="next"]').count() == 0
    page.click('a[rel="prev"]')
    page.wait_for_url("**/discharge-letter.pdf")
    pdf_frame = page.locator("iframe.pdf")
    assert pdf_frame.get_attribute("src").endswith("discharge-letter.pdf")
    page.wait_for_timeout(1500)
    shot(page, "viewer-pdf")
    page.click('a[rel="prev"]')
    page.wait_for_url("**/clip.mp4")

    # the video plays from the gateway with the session and seeks through Range requests
    watch.path = FOLDER + "clip.mp4"
    page.reload()
    page.wait_for_function("() => document.getElementById('player').readyState >= 1")
    assert page.evaluate("() => document.getElementById('player').duration") > 15
    watch.responses.clear()
    page.evaluate("""() => new Promise(done => { const v = document.getElementById('player');
        v.addEventListener('seeked', done, {once: true}); v.currentTime = 17; })""")
    assert any(status == 206 and rng and not rng.startswith("bytes=0-")
               for status, rng in watch.responses), (watch.responses, page.evaluate("() => [document.getElementById('player').buffered.end(0), document.getElementById('player').error]"))
    shot(page, "viewer")
    assert axe(page) == []

    # rename, then move to another folder
    page.goto(live.url + "/files/view/" + FOLDER + "wound-photo.png")
    page.click("#move-button")
    page.fill("#move-name", "wound-photo-day2.png")
    page.click("#move-form button[type=submit]")
    page.wait_for_url("**/wound-photo-day2.png")
    assert page.text_content("#flash-slot") == "Renamed."
    page.click("#move-button")
    page.fill("#move-folder", FOLDER + "bed12")
    page.click("#move-form button[type=submit]")
    moved = FOLDER + "bed12/wound-photo-day2.png"
    page.wait_for_url(live.url + "/files/view/" + moved)
    assert ("move", "success", 200) in [r for r in audit_rows(live, moved)]

    # a name already taken is said plainly
    page.click("#move-button")
    page.fill("#move-folder", FOLDER)
    page.fill("#move-name", "clip.mp4")
    page.click("#move-form button[type=submit]")
    page.wait_for_selector("#move-error:not([hidden])")
    assert page.text_content("#move-error") == (
        "A file with this name is already in that folder. Choose another name.")
    page.click("#move-dialog .js-close")

    # share it; the link opens in a fresh browser (no session) until it expires
    page.click("#share-button")
    page.wait_for_selector("#share-result:not([hidden])")
    url = page.input_value("#share-url")
    assert "/api/v1/links/" in url
    assert page.get_attribute("#share-expires", "datetime").endswith("Z")
    assert re.search(r"\d", page.text_content("#share-expires"))
    page.click("#share-copy")
    shot(page, "viewer-share")
    fresh = page.context.browser.new_context()
    try:
        got = fresh.new_page().request.get(url)
        assert got.status == 200 and got.body() == photo
    finally:
        fresh.close()

    # delete (with a confirmation), then restore it from the trash
    page.click("#delete-button")
    assert page.is_visible("#delete-dialog")
    page.click("#delete-form button[type=submit]")
    page.wait_for_url(live.url + "/files/" + FOLDER + "bed12/")
    assert "moved to the trash" in page.text_content("#flash-slot")
    page.wait_for_selector("#empty-folder:not([hidden])")
    page.click("text=Trash")
    page.wait_for_url(live.url + "/files/trash")
    assert "wound-photo-day2.png" in page.text_content(".trash-table")
    shot(page, "trash")
    assert axe(page) == []
    page.click("button[aria-label='Restore wound-photo-day2.png']")
    page.wait_for_selector("#flash-slot a")
    assert page.locator(".trash-table tbody tr").count() == 0
    page.click("#flash-slot a")
    page.wait_for_url(live.url + "/files/view/" + moved)

    # replace it with a new version, then restore the old one
    newer = png((400, 300), "orange")
    page.set_input_files("#replace-input", files=[{
        "name": "wound-photo-day2.png", "mimeType": "image/png", "buffer": newer}])
    page.wait_for_selector("#versions li")
    assert "Earlier versions" in page.text_content("#flash-slot")
    assert page.request.get(f"{live.url}/api/v1/files/{moved}").body() == newer
    page.click("#versions button")
    page.wait_for_function("() => document.getElementById('flash-slot').textContent"
                           ".includes('earlier version is back')")
    assert page.request.get(f"{live.url}/api/v1/files/{moved}").body() == photo
    assert watch.csp == []


def test_previews_of_heic_and_multi_page_tiff_are_made_in_memory_and_audited(
        live: LiveGateway, desk) -> None:
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    page = desk
    sign_in(page, live, "staff1b", "/files/uploads/")
    heic = io.BytesIO()
    Image.new("RGB", (640, 480), "purple").save(heic, "HEIF")
    tiff = io.BytesIO()
    pages = [Image.new("L", (500, 700), shade) for shade in (40, 200)]
    pages[0].save(tiff, "TIFF", save_all=True, append_images=pages[1:])
    put(page, live, "uploads/fax/IMG_0001.HEIC", heic.getvalue())
    put(page, live, "uploads/fax/referral.tiff", tiff.getvalue())

    page.goto(live.url + "/files/view/uploads/fax/IMG_0001.HEIC")
    page.wait_for_function("() => document.getElementById('preview-image').naturalWidth === 640")
    page.goto(live.url + "/files/view/uploads/fax/referral.tiff")
    page.wait_for_selector("#preview-pager:not([hidden])")
    assert page.text_content("#preview-page") == "Page 1 of 2"
    page.click("#preview-next")
    page.wait_for_function("() => document.getElementById('preview-page').textContent"
                           " === 'Page 2 of 2'")
    assert page.is_disabled("#preview-next")
    shot(page, "viewer-tiff")
    views = [r for r in audit_rows(live, "uploads/fax/referral.tiff") if r[0] == "view"]
    assert views.count(("view", "completed", 200)) == 2  # two pages shown, two views
    assert ("view", "completed", 200) in audit_rows(live, "uploads/fax/IMG_0001.HEIC")
    assert axe(page) == []


def test_at_phone_width_every_page_fits_and_works_by_keyboard(live: LiveGateway, browser) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        sign_in(page, live, "admin1", "/files/templates/")
        for name in ("consent-form.pdf", "a-very-long-name-of-a-scanned-referral-letter-2026.pdf"):
            put(page, live, "templates/ward7b/" + name, pdf())
        page.goto(live.url + "/files/")
        no_horizontal_scroll(page)
        shot(page, "top-phone")
        page.goto(live.url + "/files/templates/ward7b/")
        page.wait_for_selector("#file-rows tr")
        no_horizontal_scroll(page)
        # the table is a list of cards: each file's details stacked in one box
        box = page.locator("#file-rows tr").first.bounding_box()
        assert box["width"] <= PHONE["width"] and box["height"] > 60
        shot(page, "browser-phone")
        assert axe(page) == []

        # keyboard only: skip link, then reach a file and open it
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.className") == "skip-link"
        page.keyboard.press("Enter")
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("() => document.activeElement.classList.contains('file-link')"):
                break
        else:
            pytest.fail("no file link reached with Tab")
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        page.keyboard.press("Enter")
        page.wait_for_url("**/files/view/templates/ward7b/**")
        no_horizontal_scroll(page)
        shot(page, "viewer-phone")
        assert axe(page) == []
        gone = page.request.delete(live.url + "/api/v1/files/templates/ward7b/consent-form.pdf",
                                   headers={"X-CSRFToken": csrf(page)})
        assert gone.status == 204
        page.goto(live.url + "/files/trash")
        assert page.is_visible("button[aria-label='Restore consent-form.pdf']")
        no_horizontal_scroll(page)
        shot(page, "trash-phone")
        assert axe(page) == []
    finally:
        context.close()


def test_what_staff_may_not_do_is_not_offered_and_errors_are_pages(live: LiveGateway,
                                                                   desk) -> None:
    page = desk
    sign_in(page, live, "staff1", "/files/uploads/")
    put(page, live, "uploads/shared/rota.pdf", pdf())
    page.context.clear_cookies()
    sign_in(page, live, "staff1b", "/files/view/uploads/shared/rota.pdf")
    # not the uploader: viewing and sharing yes, rename, move, delete and replace no
    assert page.is_visible("#share-button")
    assert page.locator("#move-button, #delete-button, #replace-input").count() == 0
    # and the API refuses it with a sentence, audited
    msg = page.evaluate("""() => GW.api('DELETE', '/api/v1/files/uploads/shared/rota.pdf')
        .then(() => 'deleted', e => e.message)""")
    assert msg.startswith("You are not allowed to do this.")
    assert ("delete", "denied", 403) in audit_rows(live, "uploads/shared/rota.pdf")
    # a file that is not there: a page a person can read, with a way on
    resp = page.goto(live.url + "/files/view/uploads/shared/gone.pdf")
    assert resp.status == 404
    assert page.text_content("h1") == "This file or page was not found"
    assert page.is_visible("text=Go to your files")
    assert ("view", "denied", 404) in audit_rows(live, "uploads/shared/gone.pdf")
    shot(page, "not-found")
    assert axe(page) == []


@pytest.fixture(scope="module")
def short_idle(moto_endpoint: str, tmp_path_factory) -> Iterator[LiveGateway]:
    """A gateway that signs browsers out after 12 idle seconds (the warning comes 10 seconds
    before the end, its least)."""
    tmp = tmp_path_factory.mktemp("idle")
    s = build_stack(f"sqlite:///{tmp / 'gw.db'}", moto_endpoint, tmp,
                    GATEWAY_IDLE_LOGOUT_SECONDS="12")
    gw = LiveGateway(s, tmp / "gunicorn.log", workers=1, threads=4)
    yield gw
    gw.stop()
    s.close()


def test_the_idle_warning_keeps_the_session_and_the_sign_in_page_says_why(
        short_idle: LiveGateway, desk) -> None:
    page = desk
    live = short_idle
    sign_in(page, live, "staff1", "/files/documents/")
    # ten seconds before the end: a warning with "Stay signed in"
    page.wait_for_selector("#stay-signed-in", state="visible", timeout=15_000)
    assert "You will be signed out in" in page.text_content(".idle-warning")
    assert page.evaluate("() => document.activeElement.id") == "stay-signed-in"
    shot(page, "idle-warning")
    page.click("#stay-signed-in")
    page.wait_for_selector(".idle-warning", state="hidden")
    assert page.url == live.url + "/files/documents/"  # still signed in
    # left alone: signed out, told why, and brought back after signing in
    page.wait_for_url("**/login?reason=idle**", timeout=40_000)
    assert page.text_content("#idle-reason").startswith(
        "You were signed out after 12 seconds without activity.")
    assert axe(page) == []
    page.fill("input[name=email]", live.stack.users["staff1"].email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(live.url + "/files/documents/")
    with live.stack.services.sessions() as s:
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    assert actions.count("login") == 2


def test_a_folder_of_many_files_loads_a_page_at_a_time(live: LiveGateway, desk) -> None:
    from gateway.db.models import StoredObject, new_id

    stack = live.stack
    owner = stack.users["staff1"]
    with stack.services.sessions() as s:  # catalog rows only: listing never reads the bytes
        for i in range(230):
            sid = new_id()
            s.add(StoredObject(
                org_id=stack.org1, path=f"uploads/bulk/scan-{i:04d}.pdf", category="uploads",
                size=1000 + i, content_type="application/pdf", sha256="0" * 64,
                encryption="cse", key_version=1, storage_id=sid,
                s3_key=f"{stack.org1}/uploads/{sid}", created_by=owner.user_id,
                name_folded=f"scan-{i:04d}.pdf"))
        s.commit()
    page = desk
    sign_in(page, live, "staff1", "/files/uploads/bulk/")
    page.wait_for_selector("#file-rows tr")
    assert page.locator("#file-rows tr").count() == 100
    assert page.text_content("#list-status") == "100 files shown; more below."
    page.click("#show-more")
    page.wait_for_function("() => document.querySelectorAll('#file-rows tr').length === 200")
    page.click("#show-more")
    page.wait_for_function("() => document.querySelectorAll('#file-rows tr').length === 230")
    assert page.is_hidden("#show-more")
    names = page.locator("#file-rows td.name a").all_text_contents()
    assert names == sorted(names) and len(set(names)) == 230


def test_a_preview_of_a_file_over_the_limit_is_refused_with_a_sentence(
        client, sqlite_stack, monkeypatch) -> None:
    from PIL import Image

    from gateway.web import file_pages
    from tests.test_auth import sign_in as client_sign_in

    monkeypatch.setattr(file_pages, "MAX_PREVIEW_BYTES", 1000)
    staff = sqlite_stack.users["staff1"]
    tiff = io.BytesIO()
    Image.effect_noise((200, 200), 60).save(tiff, "TIFF")
    resp = client.put("/api/v1/files/uploads/fax/big.tiff", data=tiff.getvalue(),
                      headers={"Authorization": f"Bearer {staff.token}"})
    assert resp.status_code == 201
    assert client_sign_in(client, staff.email).status_code == 302
    refused = client.get("/files/preview/uploads/fax/big.tiff", headers={"Accept": "text/html"})
    assert refused.status_code == 413
    assert "too large to preview" in refused.get_data(as_text=True)
    viewer = client.get("/files/view/uploads/fax/big.tiff").get_data(as_text=True)
    assert "too large to preview here" in viewer and "data-preview-url" not in viewer
    with sqlite_stack.services.sessions() as s:
        rows = [(e.action, e.outcome) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.object_path == "uploads/fax/big.tiff"))]
    assert ("view", "denied") in rows
    assert ("view", "started") not in rows  # refused before a byte was decrypted
    monkeypatch.setattr(file_pages, "MAX_PREVIEW_BYTES", 40 * 1024 * 1024)
    shown = client.get("/files/preview/uploads/fax/big.tiff")
    assert shown.status_code == 200 and shown.headers["Content-Type"] == "image/png"
    assert shown.headers["Cache-Control"] == "no-store"
    with sqlite_stack.services.sessions() as s:
        rows = [(e.action, e.outcome) for e in s.scalars(
            select(AuditEvent).where(AuditEvent.object_path == "uploads/fax/big.tiff"))]
    assert ("view", "completed") in rows


def test_the_session_endpoint_needs_a_session(client) -> None:
    resp = client.get("/api/v1/session")
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"
