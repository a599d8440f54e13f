"""tus-js-client (npm, under Node) uploads through a connection cut mid-PATCH, then resumes:
by its own retry against the same gateway, and in a second run against another gateway
process on the same database and bucket. The stored object's SHA-256 is the file's."""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import select

from gateway.db.models import AuditEvent, StoredObject
from tests.relay import CuttingRelay
from tests.services import service_unavailable
from tests.stack import ROOT, LiveGateway, Stack

SCRIPT = ROOT / "tests" / "js" / "tus_upload.mjs"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if not found:
        service_unavailable("node is not installed")
    version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
    if int(version.strip().lstrip("v").split(".")[0]) < 18:
        service_unavailable(f"node {version.strip()} is too old (20 or later)")
    if not (ROOT / "node_modules" / "tus-js-client" / "package.json").is_file():
        service_unavailable("tus-js-client is not installed (npm ci)")
    return found


def pdf_file(directory: Path, name: str, size: int, seed: int) -> Path:
    path = directory / name
    path.write_bytes(PDF + random.Random(seed).randbytes(size - len(PDF)))
    return path


class NodeUpload:
    """One run of tests/js/tus_upload.mjs; its JSON lines are collected as they come."""

    def __init__(self, node: str, cut: tuple[CuttingRelay, int] | None = None,
                 **options: object) -> None:
        options["holdFirstPatch"] = cut is not None
        self.events: list[dict] = []
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), json.dumps(options)], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.cut = cut
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None and self.proc.stdin is not None
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == "patch" and self.cut is not None:
                relay, nbytes = self.cut
                self.cut = None
                relay.cut_after(nbytes)  # the first PATCH's connection is cut midway
                self.proc.stdin.write("go\n")
                self.proc.stdin.flush()

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        self.stderr = self.proc.stderr.read() if self.proc.stderr else ""
        return code

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["event"] == kind]


def stored(stack: Stack, who: str, path: str) -> StoredObject | None:
    with stack.services.sessions() as s:
        return s.scalar(select(StoredObject).where(
            StoredObject.org_id == stack.users[who].org_id, StoredObject.path == path,
            StoredObject.deleted_at.is_(None)))


def patch_starts(stack: Stack, path: str) -> list[tuple[int, str]]:
    with stack.services.sessions() as s:
        events = s.scalars(select(AuditEvent).where(
            AuditEvent.action == "upload_patch", AuditEvent.object_path == path,
            AuditEvent.outcome.in_(("started", "aborted", "completed"))).order_by(AuditEvent.id))
        out = []
        for e in events:
            detail = json.loads(e.detail) if isinstance(e.detail, str) else dict(e.detail or {})
            out.append((detail.get("offset", detail.get("from")), e.outcome))
        return out


@pytest.fixture
def relay(live: LiveGateway) -> Iterator[CuttingRelay]:
    r = CuttingRelay(live.port)
    yield r
    r.close()


def test_cut_mid_patch_then_its_own_retry_resumes(node: str, live: LiveGateway,
                                                  relay: CuttingRelay, tmp_path: Path) -> None:
    data = pdf_file(tmp_path, "echo.pdf", 20 * MiB, seed=1)
    run = NodeUpload(node, cut=(relay, 7 * MiB), endpoint=relay.url + "/api/v1/uploads",
                     token=live.stack.users["staff1"].token, file=str(data),
                     folder="uploads/js/", filename="echo.pdf")
    assert run.wait() == 0, (run.events, run.stderr)
    assert relay.cuts == 1
    assert run.of("retry"), run.events
    offsets = [e["offset"] for e in run.of("patch")]
    assert offsets[0] == 0 and len(offsets) >= 2 and offsets[-1] > 0, offsets
    obj = stored(live.stack, "staff1", "uploads/js/echo.pdf")
    assert obj is not None and obj.size == data.stat().st_size
    assert obj.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
    # the gateway kept what arrived before the cut: the retry did not start from zero
    starts = [o for o, outcome in patch_starts(live.stack, "uploads/js/echo.pdf")
              if outcome == "started"]
    assert starts[0] == 0 and starts[-1] == offsets[-1] > 0, starts


@pytest.mark.slow
def test_resumed_in_a_second_run_on_another_gateway(node: str, stack: Stack,
                                                    tmp_path: Path) -> None:
    # same database, bucket and keys
    first, second = LiveGateway.several(stack, [tmp_path / "gw-a.log", tmp_path / "gw-b.log"])
    relay = CuttingRelay(first.port)
    try:
        data = pdf_file(tmp_path, "angiogram.pdf", 18 * MiB, seed=2)
        common = dict(token=stack.users["staff1"].token, file=str(data),
                      folder="uploads/js/", filename="angiogram.pdf",
                      storage=str(tmp_path / "tus-urls.json"))
        run1 = NodeUpload(node, cut=(relay, 9 * MiB), endpoint=relay.url + "/api/v1/uploads",
                          retryDelays=None, **common)
        assert run1.wait() == 1, (run1.events, run1.stderr)
        assert relay.cuts == 1 and run1.of("error")
        url = run1.of("url")[0]["url"]
        assert url.startswith(relay.url + "/api/v1/uploads/")
        assert stored(stack, "staff1", "uploads/js/angiogram.pdf") is None
        # the second run finds the upload it kept, and continues it on the other gateway
        run2 = NodeUpload(node, endpoint=second.url + "/api/v1/uploads", resume=True,
                          resumeOrigin=second.url, **common)
        assert run2.wait() == 0, (run2.events, run2.stderr)
        assert run2.of("resuming")[0]["url"] == second.url + url[len(relay.url):]
        offsets = [e["offset"] for e in run2.of("patch")]
        assert offsets and offsets[0] > 0, offsets
        assert all(e["url"].startswith(second.url) for e in run2.of("patch"))
        obj = stored(stack, "staff1", "uploads/js/angiogram.pdf")
        assert obj is not None and obj.sha256 == hashlib.sha256(data.read_bytes()).hexdigest()
        assert json.loads((tmp_path / "tus-urls.json").read_text() or "{}") == {}
    finally:
        relay.close()
        first.stop()
        second.stop()
