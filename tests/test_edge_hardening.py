"""The HTTP edge against an outside attacker: redirects, cookies, CSRF, body limits, bad bytes in
paths, link tokens, the access log, and an audit row for every refusal."""
from __future__ import annotations

import base64
import json
import re
import socket
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from gateway.app import create_app
from gateway.db.models import AuditEvent
from gateway.services import build_services
from gateway.web import auth as web_auth
from gateway.web.auth import safe_redirect_path
from gateway.web.context import MAX_REQUEST_BYTES
from gateway.web.files_api import open_link, seal_link
from tests.stack import LiveGateway, Stack
from tests.test_auth import csrf_token, sign_in

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


@pytest.fixture(autouse=True)
def _fresh_refusal_budget() -> None:
    """Each test starts with the per-address budget of anonymous refusal rows unspent."""
    web_auth._budget.storage.reset()


def rows(stack: Stack, **filters: object) -> list[AuditEvent]:
    with stack.services.sessions() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        for key, value in filters.items():
            stmt = stmt.where(getattr(AuditEvent, key) == value)
        return list(s.scalars(stmt))


def denied(stack: Stack, reason_part: str) -> list[AuditEvent]:
    return [e for e in rows(stack, outcome="denied")
            if reason_part in json.loads(e.detail or "{}").get("reason", "")]


def bearer(stack: Stack, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.users[who].token}"}


# -- item 5: open redirects -----------------------------------------------------------------

OFF_SITE = [
    "/.//evil.example/", "/././/evil.example/", "/a/..//evil.example/", "/..//evil.example",
    "/%2e//evil.example/", "/%2E%2E//evil.example", "/.%2e//evil.example", "/%2F/evil.example",
    "/%2f%2fevil.example", "/%5Cevil.example", "/%5C%5Cevil.example", "/%252F%252Fevil.example",
    "//evil.example", "///evil.example", "/\\evil.example", "/\\/evil.example", "\\\\evil.example",
    "/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "/%09/evil.example",
    "/%0a/evil.example", " /evil", "/ /evil.example", "https:evil.example", "https://evil.example",
    "http:/evil.example", "javascript:alert(1)", "evil.example", "", "/\x00/evil.example",
    "/.\\/evil.example", "/%2e%5c/evil.example",
]


def _on_site(location: str) -> bool:
    """Whether a browser resolves ``location`` on the site it came from: a path-absolute
    reference (after browsers drop tabs and newlines and read ``\\`` as ``/``)."""
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return (seen == location and seen.startswith("/") and not seen.startswith("//")
            and not any(ord(c) <= 32 for c in seen))


@pytest.mark.parametrize("target", OFF_SITE)
def test_safe_redirect_path_refuses_what_a_browser_could_take_off_site(target: str) -> None:
    resolved = safe_redirect_path(target)
    assert resolved is None or _on_site(resolved), resolved
    if "evil" in target and "%25" not in target:
        assert resolved is None or "evil" not in resolved.split("/")[1:2], resolved


@pytest.mark.parametrize("target", ["/.//evil.example/", "/\t/evil.example", "/%2F/evil.example",
                                    "https:evil.example", "/%5C%5Cevil.example"])
def test_the_reviewed_cases_go_home(target: str) -> None:
    assert safe_redirect_path(target) is None


@pytest.mark.parametrize(("target", "resolved"), [
    ("/audit", "/audit"), ("/audit?user=3&x=%2F", "/audit?user=3&x=%2F"),
    ("/a/../audit", "/audit"), ("/./audit", "/audit"), ("/files/uploads/a%20b.pdf",
                                                       "/files/uploads/a%20b.pdf"),
    ("/a/b/..", "/a/"), ("/a/.", "/a/"), ("/../audit", "/audit"), ("/audit#top", "/audit"),
])
def test_safe_redirect_path_keeps_local_paths_as_resolved(target: str, resolved: str) -> None:
    assert safe_redirect_path(target) == resolved


@pytest.mark.parametrize("target", ["/.//evil.example/", "/%2e//evil.example/",
                                    "/%5Cevil.example", "/%09/evil.example"])
def test_sign_in_never_redirects_off_site(client, sqlite_stack: Stack, target: str) -> None:
    from urllib.parse import quote

    resp = sign_in(client, sqlite_stack.users["staff1"].email, next_url=quote(target, safe=""))
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"
    # and once signed in, the GET that redirects at once does not either
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 302 and again.headers["Location"] == "/"


# -- item 9: Secure cookies -------------------------------------------------------------------


@pytest.mark.parametrize(("dev", "proxies", "secure"), [
    (False, 0, True), (False, 1, True), (True, 1, True), (True, 0, False),
])
def test_session_cookie_is_secure_unless_dev_mode_on_plain_http(
        sqlite_stack: Stack, dev: bool, proxies: int, secure: bool) -> None:
    settings = sqlite_stack.settings.with_changes(dev=dev, trusted_proxies=proxies)
    services = build_services(settings)
    try:
        app = create_app(services=services, test_config={"TESTING": True})
        assert app.config["SESSION_COOKIE_SECURE"] is secure
        assert app.config["REMEMBER_COOKIE_SECURE"] is secure
        client = app.test_client()
        resp = sign_in(client, sqlite_stack.users["staff1"].email)
        assert resp.status_code == 302
        cookies = [c for c in resp.headers.getlist("Set-Cookie")
                   if c.startswith("gateway_session=")]
        assert cookies and all(("; Secure" in c) is secure for c in cookies)
        assert all("HttpOnly" in c for c in cookies)
    finally:
        services.close()


# -- item 12: a junk bearer header does not waive CSRF ----------------------------------------


def test_a_junk_bearer_header_does_not_waive_csrf_for_a_cookie_session(
        client, sqlite_stack: Stack) -> None:
    assert sign_in(client, sqlite_stack.users["staff1"].email).status_code == 302
    for header in ("Bearer junk", "bearer x", "Bearer " + sqlite_stack.users["staff2"].token[:-2]):
        resp = client.put("/api/v1/files/uploads/csrf.pdf", data=PDF + b"%%EOF\n",
                          headers={"Authorization": header})
        assert resp.status_code == 400, resp.get_data(as_text=True)
        assert resp.get_json()["error"]["code"] == "csrf_failed"
    links = client.post("/api/v1/links", json={"path": "uploads/csrf.pdf", "method": "PUT"},
                        headers={"Authorization": "Bearer junk"})
    assert links.status_code == 400
    refusals = denied(sqlite_stack, "CSRF check failed")
    assert len(refusals) == 4
    assert {(e.org_id, e.user_id, e.http_status) for e in refusals} == {
        (sqlite_stack.org1, sqlite_stack.users["staff1"].user_id, 400)}
    assert not rows(sqlite_stack, action="upload")
    # the real CSRF header still works, and a valid token alone needs none
    ok = client.put("/api/v1/files/uploads/csrf.pdf", data=PDF + b"%%EOF\n",
                    headers={"X-CSRFToken": csrf_token(client, "/")})
    assert ok.status_code == 201
    script = create_app(services=sqlite_stack.services, test_config={"TESTING": True})
    by_token = script.test_client().put("/api/v1/files/uploads/token.pdf", data=PDF + b"%%EOF\n",
                                        headers=bearer(sqlite_stack, "staff1"))
    assert by_token.status_code == 201


def test_a_junk_bearer_header_does_not_skip_the_idle_logout(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services,
                     test_config={"TESTING": True, "IDLE_LOGOUT_SECONDS": 1})
    client = app.test_client()
    sign_in(client, sqlite_stack.users["staff1"].email)
    time.sleep(1.3)
    resp = client.get("/api/v1/files", headers={"Authorization": "Bearer junk"})
    assert resp.status_code == 401
    assert resp.get_json()["error"]["code"] == "session_expired"


# -- item 14: refusals leave a row ------------------------------------------------------------


def test_unknown_revoked_and_expired_tokens_leave_a_denied_row(client, sqlite_stack: Stack) -> None:
    from datetime import timedelta

    from gateway.accounts import hash_token
    from gateway.db.models import ApiToken, utcnow

    staff, auditor = sqlite_stack.users["staff1"], sqlite_stack.users["auditor1"]
    with sqlite_stack.services.sessions() as s:
        s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(staff.token))
                 ).expires_at = utcnow() - timedelta(seconds=1)
        s.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(auditor.token))
                 ).revoked_at = utcnow()
        s.commit()
    for token in ("gwt_not-a-token", staff.token, auditor.token):
        resp = client.get("/api/v1/files", headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 401
    (unknown,) = denied(sqlite_stack, "unknown bearer token")
    assert unknown.org_id is None and unknown.http_status == 401
    assert json.loads(unknown.detail)["route"] == "/api/v1/files"
    (expired,) = denied(sqlite_stack, "expired bearer token")
    (revoked,) = denied(sqlite_stack, "revoked bearer token")
    assert (expired.org_id, expired.user_id, expired.user_email) == (
        sqlite_stack.org1, staff.user_id, staff.email)
    assert (revoked.org_id, revoked.user_id, revoked.role) == (
        sqlite_stack.org1, auditor.user_id, "auditor")
    assert all(e.action == "denied" and e.client_addr == "127.0.0.1"
               for e in (unknown, expired, revoked))
    assert not any(t in (e.detail or "") for e in rows(sqlite_stack)
                   for t in (staff.token, auditor.token))


def test_unknown_tokens_cannot_flood_the_trail(client, sqlite_stack: Stack) -> None:
    """Anonymous refusals are recorded up to a budget per client address and minute."""
    for n in range(40):
        assert client.get("/api/v1/files",
                          headers={"Authorization": f"Bearer junk{n}"}).status_code == 401
    recorded = len(denied(sqlite_stack, "unknown bearer token"))
    assert recorded == 20
    # a signed-in user's refusals are not limited by the anonymous budget
    assert sign_in(client, sqlite_stack.users["staff1"].email).status_code == 302
    for _ in range(3):
        assert client.put("/api/v1/files/uploads/x.pdf", data=PDF).status_code == 400
    assert len(denied(sqlite_stack, "CSRF check failed")) == 3


def test_a_form_without_csrf_token_leaves_a_denied_row(client, sqlite_stack: Stack) -> None:
    resp = client.post("/login", data={"email": "x@example.test", "password": "whatever at all"})
    assert resp.status_code == 400
    (row,) = denied(sqlite_stack, "CSRF check failed")
    assert row.org_id is None and row.http_status == 400
    assert json.loads(row.detail)["route"] == "/login"
    assert sign_in(client, sqlite_stack.users["staff1"].email).status_code == 302
    out = client.post("/logout", data={})
    assert out.status_code == 400
    rows_now = denied(sqlite_stack, "CSRF check failed")
    assert len(rows_now) == 2 and rows_now[-1].user_id == sqlite_stack.users["staff1"].user_id


def test_throttled_sign_ins_leave_a_row(sqlite_stack: Stack) -> None:
    app = create_app(services=sqlite_stack.services,
                     test_config={"TESTING": True, "LOGIN_RATE_LIMIT": "2 per minute"})
    client = app.test_client()
    statuses = [sign_in(client, "someone@example.test", "bad password 1").status_code
                for _ in range(6)]
    assert statuses == [401, 401, 429, 429, 429, 429]
    throttled = denied(sqlite_stack, "throttled")
    # one row per address, limit and minute: a flood of 429s is not a flood of rows
    assert len(throttled) == 1
    assert throttled[0].http_status == 429 and throttled[0].org_id is None
    assert throttled[0].client_addr == "127.0.0.1"


# -- item 8: small bodies outside uploads -------------------------------------------------------


def test_small_body_limit_outside_uploads(client, sqlite_stack: Stack) -> None:
    big = b"x" * (MAX_REQUEST_BYTES + 1)
    login = client.post("/login", data=big, content_type="application/x-www-form-urlencoded")
    assert login.status_code == 413
    assert login.get_json()["error"]["code"] == "too_large"
    links = client.post("/api/v1/links", data=b'{"path": "' + big + b'"}',
                        content_type="application/json", headers=bearer(sqlite_stack, "staff1"))
    assert links.status_code == 413
    (anon, user) = denied(sqlite_stack, "request body larger than")
    assert anon.org_id is None and json.loads(anon.detail)["route"] == "/login"
    assert user.org_id == sqlite_stack.org1 and user.http_status == 413
    # uploads are not limited by it
    up = client.put("/api/v1/files/uploads/big.pdf", data=PDF + big,
                    headers=bearer(sqlite_stack, "staff1"))
    assert up.status_code == 201


def test_deeply_nested_json_is_a_400(client, sqlite_stack: Stack) -> None:
    depth = MAX_REQUEST_BYTES // 2 - 16
    for body in ("[" * depth + "]" * depth, '{"path": ' + "[" * depth + "]" * depth + "}",
                 '{"a":' * 5000 + "1" + "}" * 5000):
        resp = client.post("/api/v1/links", data=body, content_type="application/json",
                           headers=bearer(sqlite_stack, "staff1"))
        assert resp.status_code == 400, resp.get_data(as_text=True)[:200]
        assert resp.get_json()["error"]["code"] == "bad_request"


def _raw_request(port: int, head: bytes, body: bytes, *, wait: float = 10.0) -> bytes:
    """Send a head and part of a body, leave the connection open, return what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(head + body)
        answer = b""
        deadline = time.monotonic() + wait
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            answer += chunk
        return answer


def _chunks(total: int) -> bytes:
    piece = b"email=" + b"a" * 65530
    out, sent = b"", 0
    while sent < total:
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
        sent += len(piece)
    return out


def test_live_bodies_are_refused_before_they_are_read(live: LiveGateway) -> None:
    """The sign-in form declaring 30 MB, or sending chunks without end, and a JSON body
    declaring 60 MB to /api/v1/links are answered 413 without waiting for the rest."""
    token = live.stack.users["staff1"].token
    declared = _raw_request(live.port, (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 31457280\r\n\r\n"), b"email=a")
    assert declared.startswith(b"HTTP/1.1 413"), declared[:200]
    chunked = _raw_request(live.port, (
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"), _chunks(3 * MAX_REQUEST_BYTES))  # no last chunk
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    links = _raw_request(live.port, (
        f"POST /api/v1/links HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 62914560\r\n\r\n").encode(),
        b'{"path": "')
    assert links.startswith(b"HTTP/1.1 413"), links[:200]
    links_chunked = _raw_request(live.port, (
        f"POST /api/v1/links HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode(),
        _chunks(3 * MAX_REQUEST_BYTES))
    assert links_chunked.startswith(b"HTTP/1.1 413"), links_chunked[:200]


def test_live_uploads_still_stream_large_and_chunked_bodies(live: LiveGateway) -> None:
    headers = {"Authorization": f"Bearer {live.stack.users['staff1'].token}"}
    data = PDF + bytes(range(256)) * 2048  # 512 KiB, well over the small limit
    put = requests.put(f"{live.url}/api/v1/files/uploads/edge/put.pdf", data=data,
                       headers=headers, timeout=60)
    assert put.status_code == 201
    chunked = requests.put(f"{live.url}/api/v1/files/uploads/edge/chunked.pdf",
                           data=(data[i:i + 65536] for i in range(0, len(data), 65536)),
                           headers=headers, timeout=60)
    assert chunked.status_code == 201 and chunked.json()["size"] == len(data)
    form = requests.post(f"{live.url}/api/v1/files", headers=headers,
                         data={"path": "uploads/edge/form.pdf"},
                         files={"file": ("form.pdf", data, "application/pdf")}, timeout=60)
    assert form.status_code == 201
    link = requests.post(f"{live.url}/api/v1/links", headers=headers, timeout=30,
                         json={"path": "uploads/edge/link.pdf", "method": "PUT"}).json()["url"]
    assert requests.put(link, data=data, timeout=60).status_code == 201
    back = requests.get(f"{live.url}/api/v1/files/uploads/edge/link.pdf", headers=headers,
                        timeout=60)
    assert back.content == data


# -- item 17: bytes that are not UTF-8 ----------------------------------------------------------


@pytest.mark.parametrize("raw", [b"uploads/a\xff.pdf", b"uploads/a\xc3.pdf",
                                 b"uploads/\xed\xa0\x80.pdf", b"uploads/\xc0\xaf.pdf"])
def test_a_path_that_is_not_utf8_is_refused(client, sqlite_stack: Stack, raw: bytes) -> None:
    # PATH_INFO as a WSGI server hands it over: the percent-decoded bytes, in latin-1
    path_info = "/api/v1/files/" + raw.decode("latin-1")
    resp = client.put("/api/v1/files/x", data=PDF + b"%%EOF\n", headers=bearer(sqlite_stack, "staff1"),
                      environ_overrides={"PATH_INFO": path_info})
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "bad_path"
    assert not rows(sqlite_stack, action="upload")
    (row,) = denied(sqlite_stack, "not valid UTF-8")
    assert row.org_id == sqlite_stack.org1 and row.http_status == 400
    assert row.user_id == sqlite_stack.users["staff1"].user_id


def test_a_query_that_is_not_utf8_is_refused(client, sqlite_stack: Stack) -> None:
    resp = client.get("/api/v1/files?prefix=uploads/a%ff", headers=bearer(sqlite_stack, "staff1"))
    assert resp.status_code == 400
    (row,) = denied(sqlite_stack, "query string is not valid UTF-8")
    assert row.org_id == sqlite_stack.org1


def test_live_path_that_is_not_utf8_is_refused(live: LiveGateway) -> None:
    headers = {"Authorization": f"Bearer {live.stack.users['staff1'].token}"}
    resp = requests.put(f"{live.url}/api/v1/files/uploads/live%ff.pdf", data=PDF + b"%%EOF\n",
                        headers=headers, timeout=30)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "bad_path"
    listing = requests.get(f"{live.url}/api/v1/files?prefix=uploads/", headers=headers, timeout=30)
    assert not any("\ufffd" in o["path"] for o in listing.json()["objects"])
    ok = requests.put(f"{live.url}/api/v1/files/uploads/caf%C3%A9.pdf", data=PDF + b"%%EOF\n",
                      headers=headers, timeout=30)
    assert ok.status_code == 201 and ok.json()["path"] == "uploads/caf\u00e9.pdf"


# -- item 3: opaque link tokens and a log without paths or tokens --------------------------------


def _b64_variants(token: str) -> list[bytes]:
    raw = token + "=" * (-len(token) % 4)
    out = [token.encode()]
    for decode in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            out.append(decode(raw))
        except ValueError:
            pass
    for part in token.split("."):
        try:
            out.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except ValueError:
            pass
    return out


def test_link_tokens_reveal_nothing(app, client, sqlite_stack: Stack) -> None:
    path = "uploads/JohnDoe_1970/hiv_result.pdf"
    issued = client.post("/api/v1/links", json={"path": path, "method": "PUT"},
                         headers=bearer(sqlite_stack, "staff1"))
    assert issued.status_code == 201
    token = issued.get_json()["url"].rsplit("/", 1)[1]
    for blob in _b64_variants(token):
        for secret in (b"JohnDoe", b"hiv_result", sqlite_stack.org1.encode(), b'"p"', b"PUT"):
            assert secret not in blob
    other = client.post("/api/v1/links", json={"path": "uploads/a.pdf", "method": "PUT"},
                        headers=bearer(sqlite_stack, "staff1")).get_json()["url"].rsplit("/", 1)[1]
    assert len(other) == len(token)  # both paths fit one length bucket
    with app.test_request_context():
        assert open_link(token)["p"] == path
        # the same payload sealed twice gives two tokens
        assert seal_link({"a": 1}) != seal_link({"a": 1})


def test_a_link_sealed_under_another_secret_or_altered_is_refused(client, sqlite_stack: Stack) -> None:
    assert client.put("/api/v1/files/uploads/l.pdf", data=PDF + b"%%EOF\n",
                      headers=bearer(sqlite_stack, "staff1")).status_code == 201
    url = client.post("/api/v1/links", json={"path": "uploads/l.pdf"},
                      headers=bearer(sqlite_stack, "staff1")).get_json()["url"]
    token = url.rsplit("/", 1)[1]
    assert client.get(f"/api/v1/links/{token}").status_code == 200
    elsewhere = create_app(services=sqlite_stack.services,
                           test_config={"TESTING": True, "SECRET_KEY": "another secret key, 32 chars"})
    assert elsewhere.test_client().get(f"/api/v1/links/{token}").status_code == 403
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    for bad in (flipped, token[:-4], "x", "A" * 400, token + "AAAA"):
        resp = client.get(f"/api/v1/links/{bad}")
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "bad_link"
    refused = [e for e in rows(sqlite_stack, action="link_used") if e.outcome == "denied"]
    assert len(refused) == 6 and all(e.org_id is None for e in refused)


def _log_text(live: LiveGateway) -> str:
    live.log.flush()
    return Path(live.log.name).read_text(errors="replace")


def test_access_log_names_routes_and_request_ids_never_paths_or_tokens(live: LiveGateway) -> None:
    headers = {"Authorization": f"Bearer {live.stack.users['staff1'].token}"}
    path = "uploads/JaneRoe_1980/hiv_result.pdf"
    put = requests.put(f"{live.url}/api/v1/files/{path}?overwrite=true", data=PDF + b"%%EOF\n",
                       headers=headers, timeout=30)
    assert put.status_code == 201
    get_url = requests.post(f"{live.url}/api/v1/links", json={"path": path}, headers=headers,
                            timeout=30).json()["url"]
    put_url = requests.post(f"{live.url}/api/v1/links", headers=headers, timeout=30,
                            json={"path": "uploads/JaneRoe_1980/new.pdf", "method": "PUT"}
                            ).json()["url"]
    used = requests.get(get_url, headers={"Referer": get_url}, timeout=30)
    assert used.status_code == 200
    assert requests.put(put_url, data=PDF + b"%%EOF\n", timeout=30).status_code == 201
    missing = requests.get(f"{live.url}/JaneRoe_1980/no-such-page?token=secret-q", timeout=30)
    assert missing.status_code == 404
    time.sleep(0.5)  # the access log line is written after the response
    log = _log_text(live)
    for secret in ("JaneRoe", "hiv_result", get_url.rsplit("/", 1)[1],
                   put_url.rsplit("/", 1)[1], "secret-q", live.stack.users["staff1"].token):
        assert secret not in log, secret
    assert '"PUT /api/v1/files/<objpath:path>" 201' in log
    assert '"GET /api/v1/links/<token>" 200' in log
    assert '"PUT /api/v1/links/<token>" 201' in log
    assert '"GET -" 404' in log
    assert f"rid={used.headers['X-Request-Id']}" in log
    # and the request id joins the line to the audit row
    with live.stack.services.sessions() as s:
        rids = set(s.scalars(select(AuditEvent.request_id).where(AuditEvent.action == "link_used")))
    assert used.headers["X-Request-Id"] in rids


def test_the_access_logger_scrubs_every_url_atom() -> None:
    """Should a deployment put the request line, path, query or referer back into its log
    format, they say the route too."""
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from gateway import serve
    from gateway.web import context

    assert (serve.ENVIRON_ROUTE, serve.ENVIRON_REQUEST_ID) == (
        context.ENVIRON_ROUTE, context.ENVIRON_REQUEST_ID)
    logger = serve.AccessLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET", "RAW_URI": "/api/v1/links/TOKEN?x=PHI",
        "PATH_INFO": "/api/v1/links/TOKEN", "QUERY_STRING": "x=PHI", "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "http://gw/api/v1/links/TOKEN", "REMOTE_ADDR": "203.0.113.9",
        serve.ENVIRON_ROUTE: "/api/v1/links/<token>", serve.ENVIRON_REQUEST_ID: "rid123",
    }
    resp = SimpleNamespace(status="200 OK", sent=10, headers=[])
    req = SimpleNamespace(headers=[("REFERER", "http://gw/api/v1/links/TOKEN"),
                                   ("AUTHORIZATION", "Bearer TOKEN")])
    atoms = logger.atoms(resp, req, environ, timedelta(milliseconds=5))
    text = repr(atoms)
    assert "TOKEN" not in text and "PHI" not in text
    assert atoms["r"] == "GET /api/v1/links/<token> HTTP/1.1"
    assert (atoms["route"], atoms["rid"]) == ("/api/v1/links/<token>", "rid123")
    assert re.fullmatch(r"[^%]*(%\((h|m|route|s|b|M|rid)\)s[^%]*)+", serve.access_log_format)


def test_many_addresses_together_cannot_flood_the_trail(sqlite_stack: Stack,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_auth, "ALL_ANONYMOUS_REFUSALS", "5/minute")
    services = build_services(sqlite_stack.settings.with_changes(trusted_proxies=1))
    try:
        app = create_app(services=services, test_config={"TESTING": True})
        for n in range(12):
            client = app.test_client()
            client.environ_base["HTTP_X_FORWARDED_FOR"] = f"198.51.100.{n}"
            assert client.get("/api/v1/files",
                              headers={"Authorization": "Bearer junk"}).status_code == 401
    finally:
        services.close()
    recorded = denied(sqlite_stack, "unknown bearer token")
    assert len(recorded) == 5
    assert len({e.client_addr for e in recorded}) == 5
