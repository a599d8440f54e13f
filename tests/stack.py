"""Building a complete gateway for tests: database, bucket, keys, organisations, users.

``Stack`` holds the services and the seeded identities; ``LiveGateway`` runs the real WSGI
server (gunicorn, as in production) in a child process for black-box HTTP tests.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import Settings
from gateway.services import Services, build_services

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple"
_HASHES: dict[str, str] = {}


def password_hash() -> str:
    """The Argon2 hash of :data:`PASSWORD`, computed once (hashing is slow on purpose)."""
    if "h" not in _HASHES:
        from gateway.accounts import hash_password

        _HASHES["h"] = hash_password(PASSWORD)
    return _HASHES["h"]


@dataclass
class Identity:
    email: str
    role: str
    org_id: str
    user_id: int
    token: str
    password: str = PASSWORD


@dataclass
class Stack:
    settings: Settings
    services: Services
    env: dict[str, str]
    org1: str = ""
    org2: str = ""
    org_ssec: str = ""
    users: dict[str, Identity] = field(default_factory=dict)

    def close(self) -> None:
        self.services.close()


def stack_env(db_url: str, moto_endpoint: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The GATEWAY_* variables of a fresh stack (own bucket and master key)."""
    from gateway.keys import init_master_key_file

    key_path = tmp_path / "keys" / "master.key"
    if not key_path.exists():
        init_master_key_file(str(key_path))
    env = {
        "GATEWAY_DATABASE_URL": db_url,
        "GATEWAY_S3_BUCKET": f"gw-test-{secrets.token_hex(6)}",
        "GATEWAY_S3_ENDPOINT_URL": moto_endpoint,
        "GATEWAY_MASTER_KEY": f"file:{key_path}",
        "GATEWAY_SECRET_KEY": secrets.token_urlsafe(32),
    }
    env.update(extra)
    return env


def build_stack(db_url: str, moto_endpoint: str, tmp_path: Path, **extra: str) -> Stack:
    """Migrate, create the bucket, and seed two organisations (and an SSE-C one) with users."""
    from gateway.accounts import create_organisation, create_token, create_user
    from gateway.db.migrate import upgrade

    env = stack_env(db_url, moto_endpoint, tmp_path, **extra)
    settings = Settings.from_env(env)
    upgrade(settings.database_url)
    services = build_services(settings)
    services.store.setup_bucket(origin=None)
    stack = Stack(settings=settings, services=services, env=env)
    stack.org1 = create_organisation(services, "Clinic One", "cse")
    stack.org2 = create_organisation(services, "Clinic Two", "cse")
    stack.org_ssec = create_organisation(services, "Clinic SSEC", "ssec")
    for name, org, role in (
        ("staff1", stack.org1, "staff"), ("staff1b", stack.org1, "staff"),
        ("admin1", stack.org1, "admin"), ("auditor1", stack.org1, "auditor"),
        ("staff2", stack.org2, "staff"), ("admin2", stack.org2, "admin"),
        ("auditor2", stack.org2, "auditor"), ("staffs", stack.org_ssec, "staff"),
    ):
        email = f"{name}@example.test"
        uid = create_user(services, email, org, role, PASSWORD, password_hash=password_hash())
        stack.users[name] = Identity(email, role, org, uid, create_token(services, email))
    return stack


class LiveGateway:
    """gunicorn serving ``wsgi:app`` for a stack, on a free loopback port."""

    def __init__(self, stack: Stack, log_path: Path, *, workers: int = 2, threads: int = 8,
                 extra_env: dict[str, str] | None = None, wait: bool = True) -> None:
        from tests.services import free_port

        self.stack = stack
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, **stack.env)
        env["GATEWAY_WORKERS"] = str(workers)
        env["GATEWAY_THREADS"] = str(threads)
        env.update(extra_env or {})
        self.log = open(log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:gateway.serve",
             "--bind", f"127.0.0.1:{self.port}", "wsgi:app"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Return once the server answers ``/healthz`` (an error if it exits first)."""
        from tests.services import wait_for_http

        wait_for_http(self.url + "/healthz", timeout=30, proc=self.proc)

    @classmethod
    def several(cls, stack: Stack, log_paths: list[Path], **kwargs: Any) -> list[LiveGateway]:
        """Gateways for one stack, started side by side (each start takes seconds)."""
        gateways = [cls(stack, path, wait=False, **kwargs) for path in log_paths]
        try:
            for gateway in gateways:
                gateway.wait_ready()
        except BaseException:
            for gateway in gateways:
                gateway.stop()
            raise
        return gateways

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def sign_in_page(page, live: LiveGateway, name: str, password: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Sign a Playwright ``page`` in through the login form as the stack's user ``name``."""
    who = live.stack.users[name]
    page.goto(live.url + "/login")
    page.fill("input[name=email]", who.email)
    page.fill("input[name=password]", password or who.password)
    page.click("button[type=submit]")
    page.wait_for_load_state()


def audit_events(source: Any, **filters: Any) -> list:
    """The audit rows of a stack (or of a live gateway's stack), oldest first, whose columns
    equal ``filters``."""
    from sqlalchemy import select

    from gateway.db.models import AuditEvent

    stack = getattr(source, "stack", source)
    with stack.services.sessions() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        for key, value in filters.items():
            stmt = stmt.where(getattr(AuditEvent, key) == value)
        return list(s.scalars(stmt))


def event_detail(event: Any) -> dict:
    """An audit row's ``detail``, as a dict."""
    return json.loads(event.detail) if isinstance(event.detail, str) else dict(event.detail or {})
