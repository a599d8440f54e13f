"""``gateway dev``: the embedded stack for trying the gateway on one machine."""
from __future__ import annotations

import atexit
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click

from ..accounts import create_organisation, create_user, generate_password
from ..config import Settings
from ..keys import init_master_key_file

DEV_DIR = Path("instance") / "dev"
DEV_BUCKET = "gateway-dev"
DEMO_ORG = "Demo Clinic"
DEMO_USERS = (("admin@demo.test", "admin"), ("staff@demo.test", "staff"),
              ("auditor@demo.test", "auditor"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_moto(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """moto's S3 server as a child process on loopback; waits until it answers."""
    if importlib.util.find_spec("moto") is None:
        raise click.ClickException(
            "the embedded S3 endpoint (moto) is not installed: install the dev extra, "
            "pip install -e '.[dev]' (make run does)")
    log = open(log_path, "ab")  # noqa: SIM115  (kept open for the child's lifetime)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="dev", AWS_SECRET_ACCESS_KEY="dev")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise click.ClickException(f"the embedded S3 server exited; see {log_path}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise click.ClickException("the embedded S3 server did not start within 30 s")


@click.command("dev", help="Run the embedded stack: SQLite, an embedded S3 endpoint, a generated "
               "dev master key and a demo organisation, served by gunicorn until interrupted.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 16))
def dev(host: str, port: int, workers: int) -> None:
    # The embedded S3 server keeps objects in memory only. The dev catalog is therefore
    # rebuilt at every start, so it never points at objects that are gone.
    if DEV_DIR.exists():
        shutil.rmtree(DEV_DIR)
    DEV_DIR.mkdir(parents=True)
    os.chmod(DEV_DIR, 0o700)
    moto_port = _free_port()
    moto = start_moto(moto_port, DEV_DIR / "s3.log")

    def _stop_moto() -> None:
        if moto.poll() is None:
            moto.terminate()
            try:
                moto.wait(5)
            except subprocess.TimeoutExpired:
                moto.kill()

    atexit.register(_stop_moto)
    key_path = DEV_DIR / "master.key"
    init_master_key_file(str(key_path))
    os.environ.update(_dev_environment(moto_port, key_path))
    settings = Settings.from_env(dev=True)
    org_id, passwords = _demo_organisation(settings, origin=f"http://{host}:{port}")

    click.echo("")
    click.echo("Embedded stack (development only):")
    click.echo(f"  S3 (in memory)  http://127.0.0.1:{moto_port}  bucket {DEV_BUCKET}")
    click.echo(f"  database        {settings.database_url}")
    click.echo(f"  master key      {key_path} (generated for this run)")
    click.echo("  The embedded S3 store keeps nothing across restarts, so the dev database is")
    click.echo("  rebuilt at every start: catalog and bucket always agree.")
    click.echo(f"  organisation    {DEMO_ORG} ({org_id})")
    for email, role, password in passwords:
        click.echo(f"  {role:<8} {email:<20} password: {password}")
    click.echo(f"\nSign in at http://{host}:{port}/login  (Ctrl-C to stop)\n")
    sys.stdout.flush()

    # imported here, so that the other commands start without Flask, gunicorn and Alembic
    from ..app import create_app
    from ..serve import Server, options

    def _factory():  # type: ignore[no-untyped-def]
        return create_app(Settings.from_env(dev=True))

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        Server(_factory, options(f"{host}:{port}", workers=workers, threads=16)).run()
    finally:
        _stop_moto()


def _dev_environment(moto_port: int, key_path: Path) -> dict[str, str]:
    """The settings of the embedded stack (the limits may still come from the environment)."""
    env = {
        "GATEWAY_DATABASE_URL": f"sqlite:///{DEV_DIR / 'gateway.db'}",
        "GATEWAY_S3_BUCKET": DEV_BUCKET,
        "GATEWAY_S3_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "GATEWAY_MASTER_KEY": f"file:{key_path}",
        "GATEWAY_SECRET_KEY": secrets.token_urlsafe(32),
        "AWS_ACCESS_KEY_ID": "dev",
        "AWS_SECRET_ACCESS_KEY": "dev",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }
    for name in ("GATEWAY_MAX_UPLOAD_BYTES", "GATEWAY_READ_LINK_SECONDS",
                 "GATEWAY_WRITE_LINK_SECONDS", "GATEWAY_IDLE_LOGOUT_SECONDS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _demo_organisation(settings: Settings, *, origin: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Schema, bucket, the demo organisation and its users: ``(org id, [(e-mail, role,
    password)])``."""
    from ..db.migrate import upgrade
    from ..services import build_services

    upgrade(settings.database_url)
    services = build_services(settings)
    try:
        services.store.setup_bucket(origin=origin)
        org_id = create_organisation(services, DEMO_ORG, "cse")
        passwords = []
        for email, role in DEMO_USERS:
            password = generate_password()
            create_user(services, email, org_id, role, password)
            passwords.append((email, role, password))
    finally:
        services.close()
    return org_id, passwords


COMMANDS = [dev]
