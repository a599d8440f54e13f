"""`gateway dev` as a newcomer runs it: the embedded stack starts, prints working demo
credentials, and a real browser signs in, uploads with the uploader and opens the file."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import requests

from tests.services import free_port, wait_for_http
from tests.stack import ROOT


class DevServer:
    def __init__(self, proc: subprocess.Popen, url: str, out: Path) -> None:
        self.proc, self.url, self.out = proc, url, out

    def credentials(self) -> dict[str, tuple[str, str]]:
        text = self.out.read_text()
        found = re.findall(r"^\s+(admin|staff|auditor)\s+(\S+@\S+)\s+password: (\S+)$", text, re.M)
        return {role: (email, password) for role, email, password in found}


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory, aws_env: None) -> Iterator[DevServer]:
    workdir = tmp_path_factory.mktemp("devrun")
    out = workdir / "out.log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["PYTHONPATH"] = str(ROOT)
    started = time.monotonic()
    with open(out, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "dev", "--port", str(port)],
                                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/login", timeout=60, proc=proc)
    except Exception:
        proc.kill()
        raise AssertionError(out.read_text())
    assert time.monotonic() - started < 60
    yield DevServer(proc, url, out)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    assert not (workdir / "instance" / "dev" / "master.key").exists() or \
        (workdir / "instance" / "dev" / "master.key").stat().st_mode & 0o077 == 0


def _login(session: requests.Session, url: str, email: str, password: str) -> requests.Response:
    page = session.get(url + "/login", timeout=30).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return session.post(url + "/login", data={"email": email, "password": password,
                                              "csrf_token": token}, timeout=30)


def test_dev_prints_credentials_that_sign_in(dev_server: DevServer) -> None:
    creds = dev_server.credentials()
    assert set(creds) == {"admin", "staff", "auditor"}
    text = dev_server.out.read_text()
    assert "rebuilt at every start" in text
    for role, (email, password) in creds.items():
        s = requests.Session()
        resp = _login(s, dev_server.url, email, password)
        assert resp.status_code == 200 and email in resp.text, role
    ready = requests.get(dev_server.url + "/readyz", timeout=30)
    assert ready.status_code == 200, ready.text


def test_browser_upload_and_view(dev_server: DevServer, page, tmp_path: Path) -> None:
    email, password = dev_server.credentials()["staff"]
    page.goto(dev_server.url + "/")
    assert "/login" in page.url
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(dev_server.url + "/")
    scan = tmp_path / "scan.pdf"
    data = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024)
    scan.write_bytes(data)
    page.fill("#upload-folder", "uploads/forms/201/field_7/")
    page.locator("#uploader input.uppy-Dashboard-input").first.set_input_files(str(scan))
    page.click("#uploader .uppy-StatusBar-actionBtn--upload")
    page.wait_for_selector('#upload-messages li[data-file="scan.pdf"][data-state="done"]',
                           timeout=30000)
    status = page.text_content('#upload-messages li[data-file="scan.pdf"] .upload-state')
    assert status == "Uploaded and encrypted: saved as uploads/forms/201/field_7/scan.pdf.", status
    assert page.get_attribute('#upload-messages li[data-file="scan.pdf"] progress', "value") == "100"
    page.wait_for_selector("#file-list >> text=uploads/forms/201/field_7/scan.pdf", timeout=30000)
    link = page.locator("#file-list a", has_text="scan.pdf").first
    href = link.get_attribute("href")
    resp = page.request.get(dev_server.url + href)
    assert resp.status == 200 and resp.body() == data
    assert resp.headers["cache-control"] == "no-store"
    page.screenshot(path=str(tmp_path / "files.png"))
    # a mislabelled file is refused with a clear message in the page
    fake = tmp_path / "fake.pdf"
    fake.write_bytes(b"<html><script>alert(1)</script></html>")
    page.click("#uploader .uppy-StatusBar-actionBtn--done")
    page.fill("#upload-folder", "uploads/forms/201/")
    page.locator("#uploader input.uppy-Dashboard-input").first.set_input_files(str(fake))
    page.click("#uploader .uppy-StatusBar-actionBtn--upload")
    page.wait_for_selector('#upload-messages li[data-file="fake.pdf"][data-state="refused"]',
                           timeout=30000)


def test_browser_auditor_sees_the_trail(dev_server: DevServer, page) -> None:
    email, password = dev_server.credentials()["auditor"]
    page.goto(dev_server.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(dev_server.url + "/audit")
    page.wait_for_selector("#audit-list tbody tr", timeout=30000)
    rows = page.locator("#audit-list tbody tr").all_text_contents()
    assert any("login" in r and email in r for r in rows), rows[:5]
    page.select_option("#audit-form select[name=action]", "login_failed")  # a pick-list
    page.click("#audit-form button[type=submit]")
    page.wait_for_timeout(500)
    rows = page.locator("#audit-list tbody tr").all_text_contents()
    assert all("login_failed" in r for r in rows)
