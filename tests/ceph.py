"""A single-node Ceph cluster with its RADOS Gateway, for tests that need a real S3 engine.

moto ignores SSE-C, bucket-policy conditions and Block Public Access; Ceph's RADOS Gateway
(Debian's ``ceph-mon ceph-osd radosgw ceph-common``, Ceph 16) enforces them. The session
fixture :func:`ceph_endpoint` brings up, in a temporary directory and without systemd, one
monitor, one OSD (memstore: data in memory) and radosgw (beast frontend on 127.0.0.1, plain
HTTP, SSE-C allowed over it), then creates an S3 user whose keys are the session's fake AWS
credentials (``testing``/``testing``, see ``aws_env``), so the gateway's own boto3 clients
reach Ceph unchanged. It starts only when a test asks for it (about 2 s) and is stopped,
daemon by daemon, at the end of the session. The settings are in :meth:`write_conf`; one of
them, ``paxos_propose_interval``, makes the monitor publish each map change within 50 ms
instead of a second: bring-up needs a dozen of them (about 12 s otherwise).

Tests using the fixture are marked ``ceph`` (``-m "not ceph"`` deselects them). Missing
binaries or a failed start skip them, or fail them under ``GATEWAY_TEST_REQUIRE_ALL=1``.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.services import free_port, service_unavailable, wait_for_http

ACCESS_KEY = "testing"  # the session's AWS credentials (aws_env), so the gateway's chain matches
SECRET_KEY = "testing"
BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "radosgw", "ceph", "radosgw-admin", "rados")
DATA_POOL = "default.rgw.buckets.data"
DAEMON_NAMES = ("mon.a", "osd.0", "client.rgw")

_FIXTURE_MARKERS = {"ceph_endpoint": "ceph"}


class CephStartError(Exception):
    """The cluster could not be brought up; the message carries the logs' tails."""


@dataclasses.dataclass(frozen=True)
class CephEndpoint:
    """The running radosgw: its S3 endpoint and the credentials of its one user."""

    endpoint: str
    access_key: str
    secret_key: str
    directory: Path  # the cluster's temporary directory (configuration, logs, data)
    startup_seconds: float

    @property
    def conf(self) -> Path:
        return self.directory / "ceph.conf"

    def _tool(self, argv: list[str], timeout: float = 30) -> bytes:
        result = subprocess.run([argv[0], "-c", str(self.conf), *argv[1:]], cwd=self.directory,
                                stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv[:4])} failed: {stderr}")
        return result.stdout

    def rados_objects(self, pool: str = DATA_POOL) -> list[str]:
        """The RADOS objects of a pool (S3 data lives in ``default.rgw.buckets.data``)."""
        return self._tool(["rados", "-p", pool, "ls"]).decode().split()

    def rados_get(self, name: str, pool: str = DATA_POOL) -> bytes:
        """The bytes Ceph stores in one RADOS object (beneath radosgw: what is on its disks)."""
        return self._tool(["rados", "-p", pool, "get", name, "-"])

    def set_rgw_option(self, name: str, value: str) -> None:
        """Change a radosgw setting at run time (through its admin socket)."""
        self._tool(["ceph", "--admin-daemon", str(self.directory / "run" / "ceph-client.rgw.asok"),
                    "config", "set", name, value])

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client for this endpoint (path-style, SigV4, checksums only if required)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 2, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                **config,
            ),
        )


_TROUBLE = re.compile(r"\berror\b|\bfail|unable|abort|denied|refused", re.IGNORECASE)


def _digest(text: str, lines: int = 12) -> str:
    """The first few lines that look like trouble, then the last ``lines`` lines."""
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    trouble = [line for line in all_lines[:-lines] if _TROUBLE.search(line)][:5]
    return "\n".join([*trouble, *(["..."] if trouble else []), *tail])


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return _digest(path.read_text(errors="replace"), lines)
    except OSError:
        return ""


class CephCluster:
    """One mon, one OSD and radosgw in one temporary directory; daemons stopped by PID."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = base or Path(tempfile.mkdtemp(prefix="gw-ceph-"))
        self.conf = self.base / "ceph.conf"
        self.logs = self.base / "log"
        self.procs: dict[str, subprocess.Popen] = {}
        self._outputs: list[Any] = []
        self.mon_port = 0
        self.rgw_port = 0

    # -- configuration -------------------------------------------------------------------------

    def write_conf(self) -> None:
        b = self.base
        for sub in ("run", "log", "mon", "osd/ceph-0", "rgw/ceph-rgw", "crash"):
            (b / sub).mkdir(parents=True, exist_ok=True)
        self.fsid = str(uuid.uuid4())
        self.mon_port = free_port()
        self.rgw_port = free_port()
        self.conf.write_text(f"""\
[global]
fsid = {self.fsid}
mon_host = v2:127.0.0.1:{self.mon_port}
mon_initial_members = a
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_msgr1 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
run_dir = {b}/run
admin_socket = {b}/run/$cluster-$name.asok
pid_file = {b}/run/$cluster-$name.pid
log_file = {b}/log/$cluster-$name.log
mon_cluster_log_file = {b}/log/$cluster.log
crash_dir = {b}/crash
keyring = {b}/keyring
mon_data = {b}/mon/$cluster-$id
osd_data = {b}/osd/$cluster-$id
rgw_data = {b}/rgw/$cluster-$id
exec_dir = {b}/run

[mon]
# publish map changes at once: bring-up waits for a dozen of them (about 1 s each otherwise)
paxos_propose_interval = 0.05

[osd]
# data in memory (the cluster lives for one test session)
osd_objectstore = memstore
osd_fast_shutdown = false

[client.rgw]
# plain HTTP on loopback, SSE-C allowed over it; radosgw would otherwise insist on cephx and a
# secure monitor connection, and hang at start-up with auth "none"
rgw_frontends = beast endpoint=127.0.0.1:{self.rgw_port}
rgw_crypt_require_ssl = false
auth_client_required = none
ms_mon_client_mode = crc
""")

    # -- processes -----------------------------------------------------------------------------

    def _run(self, argv: list[str], timeout: float = 60) -> str:
        """Run a ceph tool against this cluster; its stdout, or CephStartError."""
        try:
            result = subprocess.run(
                [argv[0], "-c", str(self.conf), *argv[1:]], cwd=self.base,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CephStartError(f"{' '.join(argv[:3])} did not finish in {timeout:g} s") from None
        if result.returncode != 0:
            raise CephStartError(
                f"{' '.join(argv[:3])} failed ({result.returncode}):\n"
                f"{_digest((result.stderr or result.stdout).strip(), 5)}")
        return result.stdout

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.out", "ab")  # noqa: SIM115  (closed in stop())
        self._outputs.append(out)
        proc = subprocess.Popen(
            [argv[0], "-f", "-c", str(self.conf), *argv[1:]], cwd=self.base,
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise CephStartError(f"{name} exited with status {proc.returncode}")

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float,
              interval: float = 0.25) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() >= deadline:
                raise CephStartError(f"{what} within {timeout:g} s")
            time.sleep(interval)

    # -- bring-up ------------------------------------------------------------------------------

    def start(self) -> CephEndpoint:
        """Bring the cluster up (monitor, OSD, then radosgw); CephStartError on failure."""
        started = time.monotonic()
        self.write_conf()
        monmap = self.base / "monmap"
        self._run(["monmaptool", "--create", "--fsid", self.fsid,
                   "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", str(monmap)])
        self._run(["ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap)])
        self._spawn("mon.a", ["ceph-mon", "-i", "a"])

        osd_uuid = str(uuid.uuid4())
        osd_id = self._run(["ceph", "--connect-timeout", "30", "osd", "new", osd_uuid]).strip()
        if osd_id != "0":
            raise CephStartError(f"ceph osd new answered {osd_id!r}, expected 0")
        self._run(["ceph-osd", "--mkfs", "-i", "0", "--osd-uuid", osd_uuid])
        self._spawn("osd.0", ["ceph-osd", "-i", "0"])
        self._wait("osd.0 did not come up",
                   lambda: "osd.0 up" in self._run(["ceph", "--connect-timeout", "10",
                                                    "osd", "dump"], timeout=20),
                   timeout=60, interval=0.25)

        endpoint = self._start_rgw()
        self._run(["radosgw-admin", "user", "create", "--uid", "test",
                   "--display-name", "gateway tests", "--access-key", ACCESS_KEY,
                   "--secret", SECRET_KEY])
        return CephEndpoint(endpoint, ACCESS_KEY, SECRET_KEY, self.base,
                            round(time.monotonic() - started, 1))

    def _start_rgw(self) -> str:
        failure = ""
        log = self.logs / "ceph-client.rgw.log"
        for attempt in range(3):  # another process may take the free port before radosgw does
            port = self.rgw_port if attempt == 0 else free_port()
            extra = [] if attempt == 0 else ["--rgw_frontends", f"beast endpoint=127.0.0.1:{port}"]
            seen = log.stat().st_size if log.exists() else 0
            proc = self._spawn("client.rgw", ["radosgw", "-n", "client.rgw", *extra])
            endpoint = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    wait_for_http(endpoint + "/", timeout=0.5, proc=proc)
                except TimeoutError as exc:
                    failure = str(exc)
                except RuntimeError as exc:  # radosgw exited
                    failure = str(exc)
                    break
                else:
                    self.rgw_port = port
                    return endpoint
                with open(log, "rb") as f:  # a frontend that cannot bind leaves radosgw hanging
                    f.seek(seen)
                    if b"failed initializing frontend" in f.read():
                        failure = f"radosgw could not listen on 127.0.0.1:{port}"
                        break
                if time.monotonic() >= deadline:
                    break
            self._stop_one("client.rgw", timeout=5)
        raise CephStartError(f"radosgw did not answer: {failure}")

    # -- tear-down -----------------------------------------------------------------------------

    def _stop_one(self, name: str, timeout: float = 30) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self, *, remove: bool = True) -> None:
        """Stop radosgw, the OSD and the mon (in that order, each by PID, waiting for each)."""
        try:
            for name in ("client.rgw", "osd.0", "mon.a"):
                self._stop_one(name)
            for name in list(self.procs):
                self._stop_one(name)
        finally:
            for out in self._outputs:
                out.close()
            self._outputs.clear()
            if remove:
                shutil.rmtree(self.base, ignore_errors=True)

    def log_tails(self, lines: int = 12) -> str:
        """The last lines of every daemon's log and output, for a failure message."""
        parts = []
        for name in DAEMON_NAMES:
            for path in (self.logs / f"ceph-{name}.log", self.logs / f"{name}.out"):
                tail = _tail(path, lines)
                if tail.strip():
                    parts.append(f"--- {path.name}\n{tail}")
        return "\n".join(parts)


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if shutil.which(name) is None]


@pytest.fixture(scope="session")
def ceph_endpoint(aws_env: None) -> Iterator[CephEndpoint]:
    """Ceph's RADOS Gateway on ``http://127.0.0.1:PORT`` for the session (user testing/testing).

    ``aws_env`` comes first: the user's keys are the session's AWS credentials, so stacks built
    with ``build_stack(db_url, ceph_endpoint.endpoint, tmp_path)`` reach Ceph through boto3's
    usual credential chain.
    """
    missing = missing_binaries()
    if missing:
        service_unavailable(
            f"Ceph not installed (missing {', '.join(missing)}): apt-get install -y "
            "--no-install-recommends ceph-mon ceph-osd radosgw ceph-common")
    cluster = CephCluster()
    failure = ""
    try:
        endpoint = cluster.start()
    except (CephStartError, OSError, subprocess.SubprocessError) as exc:
        failure = f"Ceph did not start: {exc}\n{cluster.log_tails()}"
    except BaseException:
        cluster.stop()
        raise
    if failure:
        cluster.stop()
        service_unavailable(failure)
    try:
        yield endpoint
    finally:
        cluster.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use the Ceph fixtures ``ceph`` (``-m "not ceph"`` deselects them)."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _FIXTURE_MARKERS.keys() and item.get_closest_marker("ceph") is None:
            item.add_marker(pytest.mark.ceph)
