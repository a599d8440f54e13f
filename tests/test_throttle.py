"""The sign-in throttle counts in the database: every process (every gunicorn worker) sees
the same attempts, on SQLite and PostgreSQL."""
from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway.accounts.throttle import SqlStorage
from gateway.app import create_app
from gateway.db.models import RateLimitCounter
from gateway.services import Services, build_services
from tests.stack import PASSWORD, LiveGateway, Stack


@pytest.fixture
def second_process(stack: Stack) -> Iterator[Services]:
    """Services of their own (own engine and pool) on the same database: another process."""
    services = build_services(stack.settings)
    yield services
    services.close()


def app_for(services: Services, limit: str):  # type: ignore[no-untyped-def]
    return create_app(services=services,
                      test_config={"TESTING": True, "LOGIN_RATE_LIMIT": limit})


def _live_sign_in(gw: LiveGateway, http: requests.Session, email: str, password: str) -> int:
    html = http.get(f"{gw.url}/login", timeout=30).text
    for cookie in http.cookies:  # the Secure session cookie over loopback, as browsers allow
        cookie.secure = False
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert token, html[:300]
    return http.post(f"{gw.url}/login", allow_redirects=False, timeout=30,
                     data={"email": email, "password": password,
                           "csrf_token": token.group(1)}).status_code


def test_two_gateway_processes_share_one_limit(stack: Stack, tmp_path: Path) -> None:
    """Two gunicorn servers on one database, taking turns: 10 attempts a minute in all (the
    default), not 10 each as counters kept in each process's memory would allow."""
    servers = LiveGateway.several(stack, [tmp_path / f"gunicorn-{n}.log" for n in (1, 2)],
                                  workers=1)
    try:
        clients = [requests.Session() for _ in servers]
        statuses = [_live_sign_in(servers[i % 2], clients[i % 2], "someone@example.test",
                                  "bad password") for i in range(12)]
        assert statuses == [401] * 10 + [429] * 2
        # even the right password, for a real user, from either server: the address is throttled
        assert _live_sign_in(servers[0], clients[0], stack.users["staff1"].email, PASSWORD) == 429
    finally:
        for server in servers:
            server.stop()
    # the table holds hashed keys, neither addresses nor e-mail addresses
    with stack.services.sessions() as s:
        keys = s.scalars(select(RateLimitCounter.key)).all()
    assert keys and all(len(k) == 64 and "@" not in k and "127.0.0.1" not in k for k in keys)


def test_counters_are_exact_under_concurrency(stack: Stack, second_process: Services) -> None:
    storage = SqlStorage()
    apps = [app_for(stack.services, "1 per minute"), app_for(second_process, "1 per minute")]
    errors: list[BaseException] = []

    def hammer(app) -> None:  # type: ignore[no-untyped-def]
        try:
            with app.app_context():
                for _ in range(25):
                    storage.incr("shared-key", 60)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(app,)) for app in apps * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with apps[0].app_context():
        assert storage.get("shared-key") == 100
        assert 59 < storage.get_expiry("shared-key") - time.time() <= 60


def test_windows_expire_and_are_cleaned_up(stack: Stack) -> None:
    storage = SqlStorage()
    app = app_for(stack.services, "1 per minute")
    with app.app_context():
        assert storage.incr("short", 1) == 1
        assert storage.incr("short", 1) == 2
        time.sleep(1.1)
        assert storage.get("short") == 0
        assert storage.incr("short", 60) == 1  # a fresh window
        storage.incr("other", 60)
        storage.clear("short")
        assert storage.get("short") == 0 and storage.get("other") == 1
        assert storage.check()
        assert storage.reset() == 1
        assert storage.get("other") == 0
