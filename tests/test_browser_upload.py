"""The files page's uploader (Uppy's Dashboard over tus) driven in Chromium like a nurse uses it:
several files at once, a dropped network, refusals in plain words, nothing left in the
browser's storage, and how the page looks on a desktop and on a phone."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway.db.models import (
    RateLimitCounter,
    ResumableUpload,
    StoredObject,
)
from tests.services import service_unavailable
from tests.stack import PASSWORD, ROOT, LiveGateway
from tests.stack import audit_events as audit
from tests.stack import event_detail as detail

VENDOR = ROOT / "gateway" / "static" / "vendor" / "uppy"
SCREENSHOTS = ROOT / "docs" / "screenshots"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
MiB = 1024 * 1024
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(autouse=True)
def uploader_installed(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("browser") and not (VENDOR / "uppy.min.js").is_file():
        service_unavailable("the uploader's bundle is not installed (make vendor)")


def pdf_file(directory: Path, name: str, size: int, seed: int = 1) -> Path:
    path = directory / name
    rnd = random.Random(seed)
    path.write_bytes(PDF + rnd.randbytes(max(0, size - len(PDF))))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sign_in(page, live: LiveGateway, who: str = "staff1", prefix: str = "") -> None:
    # these tests sign in many times from one address: the sign-in throttle is not what they
    # are about (tests/test_throttle.py is)
    with live.stack.services.sessions() as s:
        s.execute(RateLimitCounter.__table__.delete())
        s.commit()
    page.goto(live.url + "/login")
    page.fill("input[name=email]", live.stack.users[who].email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(live.url + "/")
    if prefix:
        page.goto(f"{live.url}/?prefix={prefix}")
    page.wait_for_selector("#uploader .uppy-Dashboard")


def watch_csp(page) -> list[str]:
    """Collects the page's Content-Security-Policy violations (there must be none)."""
    found: list[str] = []
    page.on("console", lambda msg: found.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    return found


def put(live: LiveGateway, who: str, path: str, data: bytes) -> None:
    resp = requests.put(f"{live.url}/api/v1/files/{path}", data=data, timeout=60,
                        headers={"Authorization": f"Bearer {live.stack.users[who].token}"})
    assert resp.status_code == 201, resp.text


def throttle(page, upload_bytes_per_second: int) -> None:
    """Slows the page's uploads down (Chromium's network emulation), as a weak Wi-Fi does."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": upload_bytes_per_second})
    page.throttle_session = cdp


def server_offset(live: LiveGateway, path: str) -> int:
    with live.stack.services.sessions() as s:
        rows = list(s.scalars(select(ResumableUpload).where(ResumableUpload.path == path)))
        return max((r.offset for r in rows), default=0)


def add_files(page, *paths: Path) -> None:
    page.locator("#uploader input.uppy-Dashboard-input").first.set_input_files(
        [str(p) for p in paths])


def press_upload(page) -> None:
    page.click("#uploader .uppy-StatusBar-actionBtn--upload")


def row(page, name: str):
    return page.locator(f'#upload-messages li[data-file="{name}"]')


def wait_state(page, name: str, state: str, timeout: float = 60_000) -> str:
    page.wait_for_selector(f'#upload-messages li[data-file="{name}"][data-state="{state}"]',
                           timeout=timeout)
    return row(page, name).locator(".upload-state").text_content() or ""


def stored(live: LiveGateway, who: str, path: str) -> StoredObject | None:
    with live.stack.services.sessions() as s:
        return s.scalar(select(StoredObject).where(
            StoredObject.org_id == live.stack.users[who].org_id, StoredObject.path == path,
            StoredObject.deleted_at.is_(None)))


def idb_blobs(page) -> dict:
    """Every IndexedDB database of the page, and how many of its records hold a Blob/File or
    binary data (Golden Retriever would keep the files there)."""
    return page.evaluate("""async () => {
      const out = {};
      const dbs = indexedDB.databases ? await indexedDB.databases() : [];
      for (const info of dbs) {
        const db = await new Promise((ok, ko) => {
          const r = indexedDB.open(info.name); r.onsuccess = () => ok(r.result);
          r.onerror = () => ko(r.error); });
        let blobs = 0;
        for (const store of db.objectStoreNames) {
          const all = await new Promise((ok) => {
            const r = db.transaction(store).objectStore(store).getAll();
            r.onsuccess = () => ok(r.result); });
          const walk = (v, depth) => {
            if (v instanceof Blob || v instanceof ArrayBuffer || ArrayBuffer.isView(v)) blobs++;
            else if (v && typeof v === 'object' && depth < 5)
              Object.values(v).forEach((x) => walk(x, depth + 1));
          };
          all.forEach((v) => walk(v, 0));
        }
        out[info.name] = blobs;
        db.close();
      }
      return out;
    }""")


def storage_text(page) -> str:
    return page.evaluate("""() => {
      const parts = [];
      for (const s of [localStorage, sessionStorage])
        for (let i = 0; i < s.length; i++) parts.push(s.key(i) + '=' + s.getItem(s.key(i)));
      return parts.join('\\n');
    }""")


def record_progress(page) -> None:
    page.evaluate("""() => { window.__progress = {};
      window.gatewayUploader.on('upload-progress', (file, p) => {
        (window.__progress[file.name] = window.__progress[file.name] || []).push(
          Math.floor(100 * p.bytesUploaded / p.bytesTotal)); }); }""")


def test_several_files_at_once_with_progress_to_100(live: LiveGateway, page,
                                                     tmp_path: Path) -> None:
    csp = watch_csp(page)
    sign_in(page, live, prefix="uploads/ward-3/")
    assert page.input_value("#upload-folder") == "uploads/ward-3/"
    record_progress(page)
    big = pdf_file(tmp_path, "ct-scan.pdf", 20 * MiB, seed=2)
    small = [pdf_file(tmp_path, f"form-{n}.pdf", 200_000 + n, seed=10 + n) for n in range(3)]
    add_files(page, big, *small)
    assert "Ready" in wait_state(page, "ct-scan.pdf", "ready")
    assert page.locator("#uploader .uppy-Dashboard-Item").count() == 4
    press_upload(page)
    for path in (big, *small):
        text = wait_state(page, path.name, "done")
        assert text == f"Uploaded and encrypted: saved as uploads/ward-3/{path.name}.", text
        obj = stored(live, "staff1", f"uploads/ward-3/{path.name}")
        assert obj is not None and obj.sha256 == sha256(path) and obj.size == path.stat().st_size
    progress = page.evaluate("() => window.__progress")["ct-scan.pdf"]
    assert progress[-1] == 100 and any(0 < p < 100 for p in progress), progress
    assert row(page, "ct-scan.pdf").locator("progress").get_attribute("value") == "100"
    # the uploads went over tus, the folder and the name as metadata, not a typed path
    created = [e for e in audit(live, action="upload_create", outcome="success")
               if e.object_path == "uploads/ward-3/ct-scan.pdf"]
    assert len(created) == 1
    # the list below shows the new files without a reload
    page.wait_for_selector("#file-list >> text=uploads/ward-3/ct-scan.pdf")
    # nothing of the files in the browser's storage: no IndexedDB at all (so no blobs), no names
    assert idb_blobs(page) == {}
    kept = storage_text(page)
    assert "ct-scan" not in kept and "form-" not in kept and "ward-3" not in kept, kept
    assert csp == []


def test_pause_resume_and_speed(live: LiveGateway, page, tmp_path: Path) -> None:
    sign_in(page, live)
    throttle(page, 2 * MiB)
    video = pdf_file(tmp_path, "wound-video.pdf", 12 * MiB, seed=3)
    add_files(page, video)
    press_upload(page)
    page.wait_for_function("""() => { const li = document.querySelector(
        '#upload-messages li[data-file="wound-video.pdf"]');
        return li && /MB\\/s · about \\d+ (s|min) left/.test(li.textContent); }""")
    page.click('#uploader .uppy-Dashboard-Item-action--upload, '
               '#uploader button[aria-label^="Pause"]')
    text = wait_state(page, "wound-video.pdf", "paused")
    assert text.startswith("Paused at ") and "%" in text
    page.throttle_session.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    page.click('#uploader button[aria-label^="Resume"]')
    wait_state(page, "wound-video.pdf", "done")
    obj = stored(live, "staff1", "uploads/wound-video.pdf")
    assert obj is not None and obj.sha256 == sha256(video)


@pytest.mark.slow
def test_offline_mid_upload_then_back_completes(live: LiveGateway, page, tmp_path: Path) -> None:
    sign_in(page, live, prefix="uploads/ward-7/")
    throttle(page, 3 * MiB)
    scan = pdf_file(tmp_path, "x-ray.pdf", 30 * MiB, seed=4)
    add_files(page, scan)
    press_upload(page)
    path = "uploads/ward-7/x-ray.pdf"
    page.wait_for_function("""() => { const li = document.querySelector(
        '#upload-messages li[data-file="x-ray.pdf"] progress'); return li && li.value >= 25; }""",
                           timeout=60_000)
    page.context.set_offline(True)
    text = wait_state(page, "x-ray.pdf", "retrying", timeout=20_000)
    assert "network is gone" in text and "goes on by itself" in text, text
    page.wait_for_timeout(2500)
    assert stored(live, "staff1", path) is None
    kept = server_offset(live, path)
    assert 0 < kept < scan.stat().st_size
    page.context.set_offline(False)
    wait_state(page, "x-ray.pdf", "done", timeout=90_000)
    obj = stored(live, "staff1", path)
    assert obj is not None and obj.sha256 == sha256(scan)
    # one upload, continued: a request after the drop started where the gateway stood
    assert len([e for e in audit(live, action="upload_create", outcome="success")
                if e.object_path == path]) == 1
    starts = [detail(e)["offset"] for e in audit(live, action="upload_patch", outcome="started")
              if e.object_path == path]
    assert starts[0] == 0 and any(o > 0 for o in starts[1:]), starts


@pytest.mark.slow
def test_reload_pick_the_file_again_and_it_resumes(live: LiveGateway, page,
                                                   tmp_path: Path) -> None:
    sign_in(page, live, prefix="uploads/ward-8/")
    throttle(page, 3 * MiB)
    scan = pdf_file(tmp_path, "mri.pdf", 24 * MiB, seed=5)
    path = "uploads/ward-8/mri.pdf"
    add_files(page, scan)
    press_upload(page)
    page.wait_for_function("""() => { const li = document.querySelector(
        '#upload-messages li[data-file="mri.pdf"] progress'); return li && li.value >= 40; }""",
                           timeout=60_000)
    page.reload()
    page.wait_for_selector("#uploader .uppy-Dashboard")
    page.wait_for_timeout(1000)
    kept = server_offset(live, path)
    assert 0 < kept < scan.stat().st_size
    # what the browser kept to resume: an opaque key and the upload's address, no names
    kept_text = storage_text(page)
    assert "mri" not in kept_text and "ward-8" not in kept_text and "/api/v1/uploads/" in kept_text
    page.throttle_session.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    add_files(page, scan)
    press_upload(page)
    wait_state(page, "mri.pdf", "done")
    obj = stored(live, "staff1", path)
    assert obj is not None and obj.sha256 == sha256(scan)
    assert len([e for e in audit(live, action="upload_create", outcome="success")
                if e.object_path == path]) == 1
    starts = [detail(e)["offset"] for e in audit(live, action="upload_patch", outcome="started")
              if e.object_path == path]
    assert starts[-1] >= kept > 0, starts
    assert "/api/v1/uploads/" not in storage_text(page)  # forgotten once finished
    assert all(n == 0 for n in idb_blobs(page).values())


def test_refused_type_and_size_before_any_byte(live: LiveGateway, page, tmp_path: Path) -> None:
    sign_in(page, live, prefix="uploads/ward-4/")
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ" + b"\0" * 1000)
    huge = tmp_path / "theatre-video.mp4"
    with open(huge, "wb") as f:
        f.truncate(312 * MiB)
    over = tmp_path / "endoscopy.mp4"
    with open(over, "wb") as f:
        f.truncate(live.stack.settings.max_upload_bytes + 1)
    add_files(page, program)
    text = wait_state(page, "setup.exe", "refused", timeout=10_000)
    assert text.startswith("Not uploaded: this kind of file is not accepted. Accepted: PDF"), text
    add_files(page, huge)
    text = wait_state(page, "theatre-video.mp4", "refused", timeout=10_000)
    assert text == "Not uploaded: this file is too large (312 MB). The largest file accepted " \
        "is 250 MB.", text
    add_files(page, over)
    text = wait_state(page, "endoscopy.mp4", "refused", timeout=10_000)
    assert text.startswith("Not uploaded: this file is too large (just over 250 MB)."), text
    assert page.locator("#uploader .uppy-Dashboard-Item").count() == 0
    # checked in the browser: the gateway never heard of them
    assert not [e for e in audit(live) if e.action.startswith("upload")
                and (e.object_path or "").startswith("uploads/ward-4/")]


def test_content_refused_by_the_gateway(live: LiveGateway, page, tmp_path: Path) -> None:
    sign_in(page, live, prefix="uploads/ward-4/")
    fake = tmp_path / "discharge.pdf"
    fake.write_bytes(b"<html><script>alert(1)</script></html>" * 200)
    add_files(page, fake)
    press_upload(page)
    text = wait_state(page, "discharge.pdf", "refused")
    assert text.startswith("Not uploaded: the content of this file is not a kind the gateway "
                           "accepts, whatever its name says."), text
    refused = [e for e in audit(live, action="upload_patch", outcome="aborted")
               if e.object_path == "uploads/ward-4/discharge.pdf"]
    assert refused and refused[-1].http_status == 415
    assert stored(live, "staff1", "uploads/ward-4/discharge.pdf") is None


def test_taken_name_replace_or_keep_both(live: LiveGateway, page, tmp_path: Path) -> None:
    put(live, "staff1", "uploads/ward-5/lab-results.pdf", PDF + b"old results")
    put(live, "staff1", "uploads/ward-5/lab-results (2).pdf", PDF + b"old copy")
    sign_in(page, live, prefix="uploads/ward-5/")
    first = pdf_file(tmp_path, "lab-results.pdf", 300_000, seed=6)
    add_files(page, first)
    press_upload(page)
    text = wait_state(page, "lab-results.pdf", "conflict")
    assert text == "A file called “lab-results.pdf” is already in uploads/ward-5/. " \
        "Replace it, or keep both?", text
    denied = [e for e in audit(live, action="upload", outcome="denied")
              if e.object_path == "uploads/ward-5/lab-results.pdf"]
    assert denied and denied[-1].http_status == 409
    # keep both: "(2)" is taken too, so it becomes "(3)"
    row(page, "lab-results.pdf").get_by_role("button", name="Keep both").click()
    text = wait_state(page, "lab-results (3).pdf", "done")
    assert text == "Uploaded and encrypted: saved as uploads/ward-5/lab-results (3).pdf."
    assert stored(live, "staff1", "uploads/ward-5/lab-results (3).pdf").sha256 == sha256(first)
    old = stored(live, "staff1", "uploads/ward-5/lab-results.pdf")
    assert old.sha256 == hashlib.sha256(PDF + b"old results").hexdigest()
    # replace (the next file, once the list was cleared with "Done")
    page.click("#uploader .uppy-StatusBar-actionBtn--done")
    assert row(page, "lab-results (3).pdf").get_attribute("data-state") == "done"
    (tmp_path / "again").mkdir()
    second = pdf_file(tmp_path / "again", "lab-results.pdf", 310_000, seed=7)
    add_files(page, second)
    press_upload(page)
    wait_state(page, "lab-results.pdf", "conflict")
    row(page, "lab-results.pdf").get_by_role("button", name="Replace the existing file").click()
    text = wait_state(page, "lab-results.pdf", "done")
    assert stored(live, "staff1", "uploads/ward-5/lab-results.pdf").sha256 == sha256(second)


def test_missing_uploader_bundle_says_so(live: LiveGateway, page) -> None:
    page.route("**/static/vendor/**", lambda route: route.fulfill(status=404, body="missing"))
    page.goto(live.url + "/login")
    page.fill("input[name=email]", live.stack.users["staff1"].email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(live.url + "/")
    alert = page.locator("#uploader-broken")
    alert.wait_for(state="visible")
    assert "The uploader did not load" in alert.text_content()


def test_page_without_the_bundle_starts_and_explains(sqlite_stack, tmp_path: Path) -> None:
    from gateway.app import create_app
    from tests.test_auth import sign_in as client_sign_in

    app = create_app(services=sqlite_stack.services, test_config={"TESTING": True})
    static = tmp_path / "static"
    shutil.copytree(ROOT / "gateway" / "static", static,
                    ignore=shutil.ignore_patterns("vendor"))
    app.static_folder = str(static)
    client = app.test_client()
    client_sign_in(client, sqlite_stack.users["staff1"].email)
    html = client.get("/").get_data(as_text=True)
    assert 'id="uploader-missing"' in html and "Uploading is not available" in html
    assert "uppy.min.js" not in html and 'id="uploader"' not in html
    app.static_folder = str(ROOT / "gateway" / "static")
    html = client.get("/?prefix=uploads/ward-2/x").get_data(as_text=True)
    assert "uppy.min.js" in html and 'value="uploads/ward-2/"' in html


def test_drag_and_drop(live: LiveGateway, page) -> None:
    sign_in(page, live, prefix="uploads/ward-9/")
    page.evaluate("""() => {
      const dt = new DataTransfer();
      for (const name of ['dropped-1.pdf', 'dropped-2.pdf'])
        dt.items.add(new File(['%PDF-1.7\\n' + name + ' '.repeat(5000)], name,
                              {type: 'application/pdf'}));
      const target = document.querySelector('#uploader .uppy-Dashboard-inner');
      for (const type of ['dragenter', 'dragover', 'drop'])
        target.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                   cancelable: true}));
    }""")
    wait_state(page, "dropped-2.pdf", "ready")
    press_upload(page)
    for name in ("dropped-1.pdf", "dropped-2.pdf"):
        wait_state(page, name, "done")
        assert stored(live, "staff1", f"uploads/ward-9/{name}") is not None


def axe_violations(browser, live: LiveGateway) -> list[dict]:
    """axe-core's accessibility check of the uploader (serious and critical findings)."""
    axe = ROOT / "node_modules" / "axe-core" / "axe.min.js"
    if not axe.is_file():
        service_unavailable("axe-core is not installed (npm ci)")
    context = browser.new_context(bypass_csp=True)  # only to inject axe itself
    try:
        page = context.new_page()
        sign_in(page, live)
        page.add_script_tag(path=str(axe))
        found = page.evaluate("""async () => (await axe.run('#upload-card')).violations
            .filter((v) => ['serious', 'critical'].includes(v.impact))
            .map((v) => ({id: v.id, nodes: v.nodes.map((n) => n.target.join(' '))}))""")
    finally:
        context.close()
    return found


def scene(page, live: LiveGateway, tmp_path: Path, folder: str) -> None:
    """The uploader as a nurse sees it mid-shift: a file saved, one uploading over a slow
    link, a taken name waiting for a choice, a file type refused."""
    put(live, "staff1", f"{folder}consent-form.pdf", PDF + b"signed yesterday")
    sign_in(page, live, prefix=folder)
    program = tmp_path / "viewer-setup.exe"
    program.write_bytes(b"MZ" + b"\0" * 1000)
    add_files(page, program)
    wait_state(page, "viewer-setup.exe", "refused")
    throttle(page, 512 * 1024)
    files = [pdf_file(tmp_path, "wound-photo-day-3.pdf", 150_000, seed=8),
             pdf_file(tmp_path, "consent-form.pdf", 120_000, seed=9),
             pdf_file(tmp_path, "ward-round-video.pdf", 60 * MiB, seed=10)]
    add_files(page, *files)
    press_upload(page)
    wait_state(page, "wound-photo-day-3.pdf", "done")
    wait_state(page, "consent-form.pdf", "conflict")
    page.wait_for_function("""() => { const li = document.querySelector(
        '#upload-messages li[data-file="ward-round-video.pdf"]');
        return li && / left$/.test(li.textContent.trim()); }""")
    page.wait_for_timeout(1500)  # a few progress events for the speed and time left


@pytest.mark.slow
def test_screenshots_desktop_and_phone(browser, live: LiveGateway, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    for name, viewport, folder in (("desktop", DESKTOP, "uploads/ward-6/"),
                                   ("phone", PHONE, "uploads/ward-6b/")):
        context = browser.new_context(viewport=viewport)
        context.set_default_timeout(30_000)
        try:
            page = context.new_page()
            csp = watch_csp(page)
            (tmp_path / name).mkdir()
            scene(page, live, tmp_path / name, folder)
            text = row(page, "ward-round-video.pdf").locator(".upload-state").text_content()
            assert "MB/s" in text or "KB/s" in text, text
            if name == "phone":  # nothing wider than the phone's screen
                width = page.evaluate("() => document.documentElement.scrollWidth")
                assert width <= viewport["width"], width
            targets = [shots / f"uploader-{name}.png"]
            if os.environ.get("GATEWAY_SCREENSHOTS") == "1":  # refresh the documentation's
                targets.append(SCREENSHOTS / f"uploader-{name}.png")
            for target in targets:
                page.screenshot(path=str(target), full_page=True)
            assert csp == []
        finally:
            context.close()
    assert axe_violations(browser, live) == []
