"""Sign-in, sign-out, CSRF, throttling, safe redirects, idle logout and bearer tokens."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from gateway.accounts import hash_token
from gateway.app import create_app
from gateway.db.models import ApiToken, AuditEvent, BrowserSession, utcnow
from gateway.services import build_services
from tests.stack import PASSWORD, Stack


def csrf_token(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf-token" content="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def sign_in(client, email: str, password: str = PASSWORD, next_url: str | None = None):
    token = csrf_token(client)
    url = "/login" + (f"?next={next_url}" if next_url is not None else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def audit_actions(stack: Stack) -> list[tuple[str, str]]:
    with stack.services.sessions() as s:
        return [(e.action, e.outcome) for e in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_login_page_renders(client) -> None:
    resp = client.get("/login")
    assert resp.status_code == 200
    assert b"Sign in" in resp.data and b"csrf_token" in resp.data


def test_pages_require_sign_in(client) -> None:
    resp = client.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    api = client.get("/api/v1/files")
    assert api.status_code == 401
    assert api.get_json()["error"]["code"] == "unauthorized"


def test_sign_in_and_out(client, sqlite_stack: Stack) -> None:
    resp = sign_in(client, sqlite_stack.users["staff1"].email)
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200 and b"staff1@example.test" in page.data
    out = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert out.status_code == 302
    assert client.get("/").status_code == 302
    actions = audit_actions(sqlite_stack)
    assert ("login", "success") in actions and ("logout", "success") in actions


def test_wrong_password_is_refused_and_audited(client, sqlite_stack: Stack) -> None:
    resp = sign_in(client, sqlite_stack.users["staff1"].email, "wrong password!")
    assert resp.status_code == 401
    assert b"Wrong e-mail address or password" in resp.data
    unknown = sign_in(client, "nobody@example.test", "whatever at all")
    assert unknown.status_code == 401
    assert audit_actions(sqlite_stack).count(("login_failed", "denied")) == 2


def test_form_without_csrf_token_is_refused(client, sqlite_stack: Stack) -> None:
    resp = client.post("/login", data={"email": sqlite_stack.users["staff1"].email,
                                       "password": PASSWORD})
    assert resp.status_code == 400
    assert client.get("/").status_code == 302  # not signed in


def test_sign_in_is_throttled(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services,
                     test_config={"TESTING": True, "LOGIN_RATE_LIMIT": "3 per minute"})
    client = app.test_client()
    statuses = [sign_in(client, "someone@example.test", "bad password 1").status_code
                for _ in range(4)]
    assert statuses[:3] == [401, 401, 401]
    assert statuses[3] == 429
    # even the right password is refused while throttled
    assert sign_in(client, "someone@example.test", PASSWORD).status_code == 429


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example",
                                    "http://evil.example/login", "javascript:alert(1)"])
def test_next_refuses_off_site_urls(client, sqlite_stack: Stack, target: str) -> None:
    resp = sign_in(client, sqlite_stack.users["staff1"].email, next_url=target)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"


def test_next_keeps_on_site_paths(client, sqlite_stack: Stack) -> None:
    resp = sign_in(client, sqlite_stack.users["staff1"].email, next_url="/audit")
    assert resp.headers["Location"] == "/audit"


def test_idle_session_ends(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services,
                     test_config={"TESTING": True, "IDLE_LOGOUT_SECONDS": 1})
    client = app.test_client()
    sign_in(client, sqlite_stack.users["staff1"].email)
    assert client.get("/").status_code == 200
    time.sleep(1.3)
    resp = client.get("/api/v1/files")
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "session_expired"
    assert client.get("/").status_code == 302


def _session_rows(stack: Stack) -> list[BrowserSession]:
    with stack.services.sessions() as s:
        return list(s.scalars(select(BrowserSession).order_by(BrowserSession.created_at)))


def test_a_session_cookie_copied_before_sign_out_is_refused_after(client,
                                                                 sqlite_stack: Stack) -> None:
    """Signing out ends the session on the server: replaying the old cookie signs nobody in,
    and the server keeps only a hash of the session id."""
    assert sign_in(client, sqlite_stack.users["staff1"].email).status_code == 302
    stolen = client.get_cookie("gateway_session").value
    assert client.get("/api/v1/files").status_code == 200
    (row,) = _session_rows(sqlite_stack)
    assert row.ended_at is None and row.id not in stolen  # stored hashed
    assert client.post("/logout", data={"csrf_token": csrf_token(client, "/")}).status_code == 302
    assert _session_rows(sqlite_stack)[0].ended_at is not None

    client.set_cookie("gateway_session", stolen)
    assert client.get("/api/v1/files").status_code == 401
    assert client.get("/").status_code == 302  # to the sign-in page
    # a fresh sign-in works, with a new session
    assert sign_in(client, sqlite_stack.users["staff1"].email).status_code == 302
    assert client.get("/api/v1/files").status_code == 200


def test_signing_out_ends_only_that_session(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services, test_config={"TESTING": True})
    desk, ward = app.test_client(), app.test_client()
    for browser in (desk, ward):
        assert sign_in(browser, sqlite_stack.users["staff1"].email).status_code == 302
    desk.post("/logout", data={"csrf_token": csrf_token(desk, "/")})
    assert desk.get("/api/v1/files").status_code == 401
    assert ward.get("/api/v1/files").status_code == 200


def test_an_idle_session_ends_on_the_server_too(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services,
                     test_config={"TESTING": True, "IDLE_LOGOUT_SECONDS": 1})
    client = app.test_client()
    sign_in(client, sqlite_stack.users["staff1"].email)
    time.sleep(1.3)
    assert client.get("/api/v1/files").status_code == 401
    assert [r.ended_at is not None for r in _session_rows(sqlite_stack)] == [True]


def test_activity_keeps_session_alive(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services,
                     test_config={"TESTING": True, "IDLE_LOGOUT_SECONDS": 2})
    client = app.test_client()
    sign_in(client, sqlite_stack.users["staff1"].email)
    for _ in range(3):
        time.sleep(0.8)
        assert client.get("/").status_code == 200


def test_bearer_token_authenticates_api(client, sqlite_stack: Stack) -> None:
    token = sqlite_stack.users["staff1"].token
    resp = client.get("/api/v1/files", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    bad = client.get("/api/v1/files", headers={"Authorization": "Bearer gwt_not-a-token"})
    assert bad.status_code == 401


def test_token_is_stored_only_as_hash(sqlite_stack: Stack) -> None:
    token = sqlite_stack.users["staff1"].token
    engine = sqlite_stack.services.engine
    with engine.connect() as conn:
        dump = "\n".join(str(row) for row in conn.exec_driver_sql("SELECT * FROM api_tokens"))
    assert token not in dump
    assert token[len("gwt_"):] not in dump
    assert hash_token(token) in dump


def test_expired_and_revoked_tokens_are_refused(client, sqlite_stack: Stack) -> None:
    staff = sqlite_stack.users["staff1"]
    auditor = sqlite_stack.users["auditor1"]
    with sqlite_stack.services.sessions() as s:
        s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(staff.token))
                 ).expires_at = utcnow() - timedelta(seconds=1)
        s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(auditor.token))
                 ).revoked_at = utcnow()
        s.commit()
    for token in (staff.token, auditor.token):
        resp = client.get("/api/v1/files", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401


def test_session_api_write_needs_csrf_header(client, sqlite_stack: Stack) -> None:
    sign_in(client, sqlite_stack.users["staff1"].email)
    resp = client.put("/api/v1/files/uploads/a.pdf", data=b"%PDF-1.4\n")
    assert resp.status_code == 400  # CSRF token missing
    token = csrf_token(client, "/")
    ok = client.put("/api/v1/files/uploads/a.pdf", data=b"%PDF-1.4\n%%EOF\n",
                    headers={"X-CSRFToken": token})
    assert ok.status_code == 201, ok.get_data(as_text=True)


def test_security_headers(client) -> None:
    resp = client.get("/login")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
    cookies = [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("gateway_session=")]
    assert cookies and "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]


def _failed_sign_in_addresses(stack: Stack) -> list[str | None]:
    with stack.services.sessions() as s:
        return list(s.scalars(select(AuditEvent.client_addr)
                              .where(AuditEvent.action == "login_failed")
                              .order_by(AuditEvent.id)))


@pytest.mark.parametrize("trusted", [0, 1])
def test_forwarded_client_addresses_only_from_trusted_proxies(sqlite_stack: Stack,
                                                              trusted: int) -> None:
    """Behind a TLS terminator (GATEWAY_TRUSTED_PROXIES=1) the audit trail and the sign-in
    throttle see each client's address; with no proxy trusted, a forged header changes
    nothing."""
    services = build_services(sqlite_stack.settings.with_changes(trusted_proxies=trusted))
    try:
        app = create_app(services=services,
                         test_config={"TESTING": True, "LOGIN_RATE_LIMIT": "2 per minute"})
        statuses = []
        for n in range(4):
            client = app.test_client()
            client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.{n % 2 + 1}"
            statuses.append(sign_in(client, f"nobody{n}@example.test", "bad password").status_code)
        addresses = _failed_sign_in_addresses(sqlite_stack)
    finally:
        services.close()
    if trusted:
        # two clients, two attempts each: each within its own limit
        assert statuses == [401, 401, 401, 401]
        assert addresses == ["203.0.113.1", "203.0.113.2", "203.0.113.1", "203.0.113.2"]
    else:
        # one peer whatever the header says: the third attempt is over the limit
        assert statuses == [401, 401, 429, 429]
        assert addresses == ["127.0.0.1", "127.0.0.1"]
