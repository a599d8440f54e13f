"""Real services for the test suite, started once per session.

Loaded as a pytest plugin by ``tests/conftest.py``. Fixtures:

``postgres_server`` / ``postgres_url``
    A throwaway PostgreSQL cluster in a temporary directory, on a free loopback port, with a
    ``gw`` superuser and a ``gw`` database. Durability is switched off for speed.
``db_url`` (function scope, parametrized ``sqlite`` / ``postgresql``)
    A fresh, empty database per test: an SQLite file in ``tmp_path``, or a new database in the
    session's PostgreSQL server, dropped afterwards.
``aws_env`` / ``moto_server`` / ``moto_endpoint``
    Fake AWS credentials for the session, and moto's S3 server running in its own process
    (``moto_server.pid`` lets a test measure moto's memory apart from the gateway's).
``chromium_path`` / ``browser`` / ``page``
    Debian's chromium driven by Playwright (one browser per session, one context per test).

When a service cannot start, its tests are skipped, or fail when ``GATEWAY_TEST_REQUIRE_ALL=1``
(CI sets it, so nothing is silently skipped there).

Helpers other tests reuse: :func:`free_port`, :func:`wait_for_http`, :func:`reset_moto`,
:func:`service_unavailable`.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, NoReturn

import pytest

REQUIRE_ALL_ENV = "GATEWAY_TEST_REQUIRE_ALL"
CHROMIUM_ENV = "GATEWAY_TEST_CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

# Fixtures whose use marks a test with the matching marker (declared in setup.cfg), so that
# e.g. ``-m "not browser"`` deselects them.
_FIXTURE_MARKERS = {
    "postgres_server": "postgres",
    "postgres_url": "postgres",
    "chromium_path": "browser",
    "browser": "browser",
    "page": "browser",
}


# --------------------------------------------------------------------------------------------
# Helpers


def require_all() -> bool:
    """True when every service must be available (``GATEWAY_TEST_REQUIRE_ALL=1``)."""
    return os.environ.get(REQUIRE_ALL_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def service_unavailable(reason: str) -> NoReturn:
    """Skip the requesting test, or fail it when every service is required."""
    if require_all():
        pytest.fail(f"{reason} ({REQUIRE_ALL_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# Loopback services must never be reached through an HTTP proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for_http(
    url: str,
    timeout: float = 15.0,
    *,
    proc: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> None:
    """Wait until ``url`` answers HTTP at all (any status counts as an answer).

    Raises ``TimeoutError`` after ``timeout`` seconds, or ``RuntimeError`` as soon as ``proc``
    (the process expected to serve ``url``) has exited.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with status {proc.returncode}")
        try:
            with _DIRECT.open(url, timeout=max(0.2, min(2.0, deadline - time.monotonic()))):
                return
        except urllib.error.HTTPError as exc:
            exc.close()
            return
        except (OSError, ValueError) as exc:  # URLError, ConnectionRefused, reset, timeout
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:g} s: {last_error}")
        time.sleep(interval)


def reset_moto(endpoint: str) -> None:
    """Forget every bucket, object and key moto holds (``POST /moto-api/reset``)."""
    request = urllib.request.Request(endpoint.rstrip("/") + "/moto-api/reset", method="POST")
    with _DIRECT.open(request, timeout=10) as response:
        response.read()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# PostgreSQL


def find_pg_binary(name: str) -> str | None:
    """``name`` from PATH, else from the newest ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which(name)
    if found:
        return found

    def version(path: str) -> tuple[int, ...]:
        part = Path(path).parent.parent.name
        return tuple(int(p) for p in part.split(".") if p.isdigit())

    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=version, reverse=True)
    return candidates[0] if candidates else None


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    database: str
    directory: Path

    def url(self, database: str | None = None) -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database`` (default: the ``gw`` database)."""
        name = database or self.database
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{name}"

    def conninfo(self, database: str | None = None) -> str:
        """libpq connection string, for psycopg directly."""
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"dbname={database or self.database} connect_timeout=10"
        )


class _PostgresCluster:
    def __init__(self) -> None:
        self.initdb = find_pg_binary("initdb")
        self.pg_ctl = find_pg_binary("pg_ctl")
        self.as_postgres = os.geteuid() == 0
        self.base: Path | None = None
        self.started = False

    @property
    def data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        if self.as_postgres:
            # initdb refuses to run as root: run the server tools as the postgres user.
            command = ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(argv)]
        else:
            command = argv
        return subprocess.run(
            command,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> PostgresServer:
        if not self.initdb or not self.pg_ctl:
            service_unavailable(
                "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH "
                "or under /usr/lib/postgresql/*/bin"
            )
        if self.as_postgres:
            try:
                import pwd

                pw = pwd.getpwnam("postgres")
            except KeyError:
                service_unavailable("running as root and there is no 'postgres' user for initdb")
        self.base = Path(tempfile.mkdtemp(prefix="gw-pg-"))
        if self.as_postgres:
            os.chown(self.base, pw.pw_uid, pw.pw_gid)

        init = self._run(
            [
                self.initdb, "-D", str(self.data), "-A", "trust", "-U", "gw",
                "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
            ]
        )
        if init.returncode != 0:
            service_unavailable(f"initdb failed: {(init.stderr or init.stdout).strip()}")

        options = (
            f"-F -k {shlex.quote(str(self.base))} -h 127.0.0.1 -p {{port}} "
            "-c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=32MB"
        )
        last = ""
        for _attempt in range(3):  # another process may take the free port before we do
            port = free_port()
            log = self.base / f"server-{port}.log"
            result = self._run(
                [
                    self.pg_ctl, "-D", str(self.data), "-l", str(log), "-w", "-t", "30",
                    "-o", options.format(port=port), "start",
                ]
            )
            if result.returncode == 0:
                self.started = True
                return PostgresServer("127.0.0.1", port, "gw", "gw", self.base)
            last = f"{result.stdout.strip()}\n{_tail(log)}"
        service_unavailable(f"pg_ctl could not start PostgreSQL: {last}")

    def stop(self) -> None:
        try:
            if self.started:
                self._run([self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        finally:
            if self.base is not None:
                shutil.rmtree(self.base, ignore_errors=True)


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a hard dependency
        service_unavailable(f"psycopg is not installed: {exc}")
    return psycopg


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server (a ``gw`` superuser, trust authentication)."""
    cluster = _PostgresCluster()
    try:
        server = cluster.start()
        psycopg = _psycopg()
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE gw")
        yield server
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """``postgresql+psycopg://gw@127.0.0.1:PORT/gw`` of the session's PostgreSQL server."""
    return postgres_server.url()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gateway.db'}"
        return

    server: PostgresServer = request.getfixturevalue("postgres_server")
    psycopg = _psycopg()
    name = f"gw_{secrets.token_hex(6)}"
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# S3 (moto's server)


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    """Fake AWS credentials for the whole session, so nothing can reach real AWS by accident."""
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
            mp.delenv(name, raising=False)
        if not os.environ.get("AWS_DEFAULT_REGION"):
            mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        no_proxy = os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or ""
        loopback = "127.0.0.1,localhost"
        mp.setenv("NO_PROXY", f"{no_proxy},{loopback}" if no_proxy else loopback)
        yield
    finally:
        mp.undo()


@dataclasses.dataclass(frozen=True)
class MotoServer:
    endpoint: str
    pid: int  # measure moto's memory apart from the gateway's
    log: Path


@pytest.fixture(scope="session")
def moto_server(aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's S3 server in its own process (its own memory, and its crash is not pytest's)."""
    try:
        import moto.server  # noqa: F401  (only to fail early with a clear reason)
    except ImportError as exc:
        service_unavailable(f"moto[server] is not installed: {exc}")

    logdir = tmp_path_factory.mktemp("moto")
    failure = ""
    for _attempt in range(3):
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        log_path = logdir / f"moto-{port}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )
        try:
            wait_for_http(endpoint + "/moto-api/", timeout=30, proc=proc)
        except (RuntimeError, TimeoutError) as exc:
            _terminate(proc)
            failure = f"{exc}\n{_tail(log_path)}"
            continue
        try:
            yield MotoServer(endpoint, proc.pid, log_path)
        finally:
            _terminate(proc)
        return
    service_unavailable(f"moto's S3 server did not start: {failure}")


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: MotoServer) -> str:
    """``http://127.0.0.1:PORT`` of moto's S3 server."""
    return moto_server.endpoint


def _terminate(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# Browser (Debian's chromium through Playwright)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Path of the system chromium (``GATEWAY_TEST_CHROMIUM`` overrides ``/usr/bin/chromium``)."""
    candidates = [os.environ.get(CHROMIUM_ENV), DEFAULT_CHROMIUM, shutil.which("chromium")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    service_unavailable("chromium not found (apt-get install -y chromium)")


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    """A headless chromium, shared by the session (Playwright sync API)."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        service_unavailable(f"playwright is not installed: {exc}")

    manager = sync_playwright().start()
    try:
        try:
            instance = manager.chromium.launch(
                executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS, timeout=60_000
            )
        except PlaywrightError as exc:
            service_unavailable(f"chromium did not start: {exc}")
        try:
            yield instance
        finally:
            instance.close()
    finally:
        manager.stop()


@pytest.fixture
def page(browser):
    """A page in a fresh browser context (own cookies and storage), closed after the test."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


# --------------------------------------------------------------------------------------------
# Hooks


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the services they use, e.g. for ``-m "not browser"``."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(getattr(pytest.mark, marker))
