"""The account lifecycle from the command line and the admin API, each change with its audit
row: who did it, to whom, before and after; and each refusal with its ``denied`` row."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from gateway.cli import cli
from gateway.db.models import AuditEvent, Job, PasswordReset, User, utcnow
from tests.stack import PASSWORD, Stack
from tests.stack import event_detail as detail
from tests.test_auth import csrf_token, sign_in

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"x" * 200


@pytest.fixture
def run(sqlite_stack: Stack, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for k, v in sqlite_stack.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()  # keeps stdout and stderr apart (click 8.2+)

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), catch_exceptions=False)

    return invoke


def events(stack: Stack, action: str, outcome: str | None = None) -> list[AuditEvent]:
    with stack.services.sessions() as s:
        query = select(AuditEvent).where(AuditEvent.action == action)
        if outcome:
            query = query.where(AuditEvent.outcome == outcome)
        return list(s.scalars(query.order_by(AuditEvent.id)))


def bearer(stack: Stack, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.users[name].token}"}


def user_row(stack: Stack, email: str) -> User:
    with stack.services.sessions() as s:
        return s.scalars(select(User).where(User.email == email)).one()


# --- command line -------------------------------------------------------------------------

def test_users_list_in_each_format(run, sqlite_stack: Stack, client) -> None:
    sign_in(client, "staff1@example.test")
    table = run("users", "list")
    assert table.exit_code == 0
    header, *lines = table.stdout.splitlines()
    assert header.split()[:3] == ["E-MAIL", "ROLE", "ORGANISATION"]
    staff1 = next(line for line in lines if line.startswith("staff1@example.test "))
    assert "staff" in staff1 and "Clinic One" in staff1 and "yes" in staff1
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s*$", staff1)  # last sign-in shown
    rows = list(csv.DictReader(io.StringIO(run("users", "list", "--org", "Clinic Two",
                                               "--format", "csv").stdout)))
    assert {r["email"] for r in rows} == {"staff2@example.test", "admin2@example.test",
                                          "auditor2@example.test"}
    assert set(rows[0]) >= {"email", "role", "organisation", "active", "created_at",
                            "last_login_at"}
    as_json = json.loads(run("users", "list", "--format", "json").stdout)
    assert {u["email"] for u in as_json} >= {"staff1@example.test", "staffs@example.test"}
    bad = run("users", "list", "--org", "No Such Clinic")
    assert bad.exit_code == 1 and "no organisation" in bad.output


def test_deactivation_ends_sessions_tokens_and_links_at_once(run, sqlite_stack: Stack,
                                                             client) -> None:
    staff = sqlite_stack.users["staff1"]
    assert client.put("/api/v1/files/uploads/leaver.pdf", data=PDF,
                      headers=bearer(sqlite_stack, "staff1")).status_code == 201
    link = client.post("/api/v1/links", json={"path": "uploads/leaver.pdf", "method": "GET"},
                       headers=bearer(sqlite_stack, "staff1")).get_json()["url"]
    link_path = link.split("://", 1)[1].split("/", 1)[1]
    assert sign_in(client, staff.email).status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/" + link_path).status_code == 200

    out = run("users", "deactivate", staff.email)
    assert out.exit_code == 0 and "deactivated staff1@example.test" in out.stdout

    assert client.get("/").status_code == 302  # the open session is over
    assert client.get("/api/v1/files", headers=bearer(sqlite_stack, "staff1")).status_code == 401
    assert client.get("/" + link_path).status_code == 403
    again = sign_in(client, staff.email)  # refused exactly like a wrong password
    wrong = sign_in(client, "staff1b@example.test", "not the password")
    assert again.status_code == wrong.status_code == 401
    assert b"Wrong e-mail address or password" in again.data
    flash = re.compile(r'<p class="flash[^>]*>[^<]*</p>')
    assert flash.findall(again.get_data(as_text=True)) == flash.findall(
        wrong.get_data(as_text=True))
    refusals = events(sqlite_stack, "login_failed")[-2:]
    assert [detail(e) for e in refusals] == [{"reason": "bad credentials"}] * 2

    row = events(sqlite_stack, "user_deactivate")[-1]
    assert row.outcome == "success" and row.org_id == sqlite_stack.org1
    assert row.user_email.startswith("cli:") and row.role == "operator"
    d = detail(row)
    assert d["email"] == staff.email and d["before"] == {"active": True}
    assert d["after"] == {"active": False} and d["sessions_ended"] == 1
    assert d["tokens_revoked"] == [staff.token[:10]]
    assert run("users", "deactivate", staff.email).stdout.strip().endswith("already deactivated")

    back = run("users", "reactivate", staff.email)
    assert back.exit_code == 0 and "reactivated" in back.stdout
    r = events(sqlite_stack, "user_reactivate")[-1]
    assert detail(r)["before"] == {"active": False} and detail(r)["after"] == {"active": True}
    assert sign_in(client, staff.email).status_code == 302
    # the tokens revoked on deactivation stay revoked
    fresh = client.application.test_client()
    assert fresh.get("/api/v1/files", headers=bearer(sqlite_stack, "staff1")).status_code == 401


def test_set_role_is_audited_and_the_last_admin_is_kept(run, sqlite_stack: Stack) -> None:
    out = run("users", "set-role", "staff1@example.test", "auditor")
    assert out.exit_code == 0 and "is now auditor" in out.stdout
    assert user_row(sqlite_stack, "staff1@example.test").role == "auditor"
    row = events(sqlite_stack, "user_set_role", "success")[-1]
    assert detail(row)["before"] == {"role": "staff"} and detail(row)["after"] == {"role": "auditor"}
    assert row.org_id == sqlite_stack.org1

    last = run("users", "set-role", "admin2@example.test", "staff")
    assert last.exit_code == 1 and "last active admin" in last.output
    assert last.output.count("\n") == 1
    assert user_row(sqlite_stack, "admin2@example.test").role == "admin"
    denied = events(sqlite_stack, "user_set_role", "denied")[-1]
    assert denied.org_id == sqlite_stack.org2 and "last active admin" in detail(denied)["reason"]
    gone = run("users", "deactivate", "admin2@example.test")
    assert gone.exit_code == 1 and "last active admin" in gone.output
    assert events(sqlite_stack, "user_deactivate", "denied")
    nobody = run("users", "set-role", "nobody@example.test", "staff")
    assert nobody.exit_code == 1 and "no user nobody@example.test" in nobody.output
    bad_role = run("users", "set-role", "staff1@example.test", "root")
    assert bad_role.exit_code == 2  # click names the valid choices


def test_reset_password_printed(run, sqlite_stack: Stack, client) -> None:
    assert sign_in(client, "staff1b@example.test").status_code == 302
    out = run("users", "reset-password", "staff1b@example.test", "--print")
    assert out.exit_code == 0
    password = out.stdout.strip().removeprefix("password: ")
    assert len(password) >= 12
    assert client.get("/").status_code == 302  # their sessions ended
    assert sign_in(client, "staff1b@example.test", PASSWORD).status_code == 401
    assert sign_in(client, "staff1b@example.test", password).status_code == 302
    row = events(sqlite_stack, "password_reset")[-1]
    assert detail(row)["method"] == "printed" and detail(row)["email"] == "staff1b@example.test"
    assert password not in (row.detail or "")


def test_reset_link_works_once_and_expires(run, sqlite_stack: Stack, client) -> None:
    out = run("users", "reset-password", "staff1b@example.test", "--link",
              "--base-url", "https://files.example.org/")
    assert out.exit_code == 0
    url = out.stdout.strip()
    assert url.startswith("https://files.example.org/reset/")
    token = url.rsplit("/", 1)[1]
    with sqlite_stack.services.sessions() as s:
        stored = s.scalars(select(PasswordReset)).one()
        assert token not in stored.token_hash and len(stored.token_hash) == 64
    issued = events(sqlite_stack, "password_reset")[-1]
    assert detail(issued)["method"] == "link" and token not in (issued.detail or "")

    page = client.get(f"/reset/{token}")
    assert page.status_code == 200 and b"staff1b@example.test" in page.data
    assert page.headers["Cache-Control"] == "no-store"
    form = {"csrf_token": csrf_token(client, f"/reset/{token}")}
    short = client.post(f"/reset/{token}", data={**form, "password": "short",
                                                 "confirm": "short"})
    assert short.status_code == 400 and b"at least 12" in short.data
    differ = client.post(f"/reset/{token}", data={**form, "password": "a new long password",
                                                  "confirm": "another long password"})
    assert differ.status_code == 400
    done = client.post(f"/reset/{token}", data={**form, "password": "a new long password",
                                                "confirm": "a new long password"})
    assert done.status_code == 200 and b"is set" in done.data
    used = events(sqlite_stack, "password_set", "success")[-1]
    assert used.user_email == "staff1b@example.test" and used.org_id == sqlite_stack.org1
    assert detail(used)["link_issued_by"].startswith("cli:")

    again = client.post(f"/reset/{token}", data={**form, "password": "yet another password",
                                                 "confirm": "yet another password"})
    assert again.status_code == 404 and b"not valid" in again.data
    assert events(sqlite_stack, "password_set", "denied")
    assert sign_in(client, "staff1b@example.test", "a new long password").status_code == 302

    late = run("users", "reset-password", "staff1b@example.test", "--link").stdout.strip()
    with sqlite_stack.services.sessions() as s:
        s.execute(update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    expired = client.get(late)
    assert expired.status_code == 404 and b"expired" in expired.data


def test_tokens_list_create_revoke_audited(run, sqlite_stack: Stack) -> None:
    made = run("tokens", "create", "staff1@example.test", "--expires-days", "7")
    token = made.stdout.strip()
    assert token.startswith("gwt_")
    created = events(sqlite_stack, "token_create")[-1]
    assert detail(created)["prefix"] == token[:10] and token not in (created.detail or "")
    listed = run("tokens", "list", "--user", "staff1@example.test", "--format", "json")
    rows = json.loads(listed.stdout)
    assert [r["prefix"] for r in rows][:2] == [token[:10], sqlite_stack.users["staff1"].token[:10]]
    assert all("token" not in r for r in rows)
    assert set(rows[0]) >= {"prefix", "created_at", "expires_at", "last_used_at", "revoked_at"}
    table = run("tokens", "list", "--org", "Clinic Two").stdout
    assert "staff2@example.test" in table and "staff1@example.test" not in table
    revoked = run("tokens", "revoke", "staff1@example.test", "--prefix", token[:10])
    assert "revoked 1 token(s)" in revoked.stdout
    row = events(sqlite_stack, "token_revoke")[-1]
    assert detail(row)["tokens"][0]["prefix"] == token[:10]
    assert json.loads(run("tokens", "list", "--user", "staff1@example.test", "--format",
                          "json").stdout)[0]["status"] == "revoked"


def test_org_and_user_creation_audited(run, sqlite_stack: Stack) -> None:
    org_id = run("orgs", "create", "Clinic Five").stdout.strip()
    row = events(sqlite_stack, "org_create")[-1]
    assert row.org_id == org_id and detail(row)["after"]["name"] == "Clinic Five"
    run("users", "create", "new@five.test", "--org", "Clinic Five", "--role", "admin")
    made = events(sqlite_stack, "user_create")[-1]
    assert made.org_id == org_id and detail(made)["after"] == {"role": "admin", "active": True}
    dup = run("users", "create", "new@five.test", "--org", "Clinic Five", "--role", "staff")
    assert dup.exit_code == 1 and "already exists" in dup.output
    assert events(sqlite_stack, "user_create", "denied")


def test_key_rotation_is_audited(run, sqlite_stack: Stack) -> None:
    assert run("keys", "rotate", "--org", "Clinic One").exit_code == 0
    row = events(sqlite_stack, "key_rotate")[-1]
    assert row.outcome == "success" and row.org_id == sqlite_stack.org1
    assert detail(row)["version"] == 2 and row.user_email.startswith("cli:")


# --- admin API ----------------------------------------------------------------------------

def test_admin_api_is_admin_only_and_denials_are_audited(client, sqlite_stack: Stack) -> None:
    for name in ("staff1", "auditor1"):
        for method, path in (("GET", "/api/v1/admin/users"), ("GET", "/api/v1/admin/keys"),
                             ("DELETE", "/api/v1/admin/tokens/1")):
            resp = client.open(path, method=method, headers=bearer(sqlite_stack, name))
            assert resp.status_code == 403, (name, path)
            assert resp.get_json()["error"]["code"] == "forbidden"
    denied = events(sqlite_stack, "denied")
    assert len(denied) == 6 and {d.user_email for d in denied} == {"staff1@example.test",
                                                                   "auditor1@example.test"}
    assert client.get("/api/v1/admin/users").status_code == 401


def test_admin_api_sees_only_its_organisation(client, sqlite_stack: Stack) -> None:
    h = bearer(sqlite_stack, "admin1")
    listed = client.get("/api/v1/admin/users", headers=h)
    assert listed.headers["Cache-Control"] == "no-store"
    emails = {u["email"] for u in listed.get_json()["users"]}
    assert emails == {"staff1@example.test", "staff1b@example.test", "admin1@example.test",
                      "auditor1@example.test"}
    other = sqlite_stack.users["staff2"].user_id
    assert client.patch(f"/api/v1/admin/users/{other}", json={"active": False},
                        headers=h).status_code == 404
    assert user_row(sqlite_stack, "staff2@example.test").is_active
    refused = events(sqlite_stack, "user_deactivate", "denied")[-1]
    assert refused.user_email == "admin1@example.test"
    tokens = client.get("/api/v1/admin/tokens", headers=h).get_json()["tokens"]
    assert {t["email"] for t in tokens} <= emails and tokens
    assert client.get(f"/api/v1/admin/tokens?user={other}", headers=h).status_code == 404
    org2_token = client.get("/api/v1/admin/tokens", headers=bearer(sqlite_stack, "admin2")
                            ).get_json()["tokens"][0]["id"]
    assert client.delete(f"/api/v1/admin/tokens/{org2_token}", headers=h).status_code == 404
    assert client.post("/api/v1/admin/tokens", json={"user": "staff2@example.test"},
                       headers=h).status_code == 404


def test_admin_api_lifecycle(client, sqlite_stack: Stack) -> None:
    h = bearer(sqlite_stack, "admin1")
    made = client.post("/api/v1/admin/users", json={"email": "Nurse@One.test", "role": "staff"},
                       headers=h)
    assert made.status_code == 201
    body = made.get_json()
    assert body["user"]["email"] == "nurse@one.test" and body["user"]["active"] is True
    assert "/reset/" in body["reset_url"] and body["expires_at"].endswith("Z")
    uid = body["user"]["id"]
    assert events(sqlite_stack, "user_create")[-1].user_email == "admin1@example.test"
    with_pw = client.post("/api/v1/admin/users", json={"email": "clerk@one.test",
                                                       "role": "auditor",
                                                       "credential": "password"}, headers=h)
    assert len(with_pw.get_json()["password"]) >= 12

    role = client.patch(f"/api/v1/admin/users/{uid}", json={"role": "auditor"}, headers=h)
    assert role.status_code == 200 and role.get_json()["changed"] == ["role"]
    assert detail(events(sqlite_stack, "user_set_role")[-1])["after"] == {"role": "auditor"}
    assert client.patch(f"/api/v1/admin/users/{uid}", json={"role": "king"},
                        headers=h).status_code == 400
    assert client.patch(f"/api/v1/admin/users/{uid}", json={"active": "no"},
                        headers=h).status_code == 400

    token = client.post("/api/v1/admin/tokens", json={"user": uid, "expires_days": 3}, headers=h)
    assert token.status_code == 201
    tok = token.get_json()
    assert tok["token"].startswith("gwt_") and tok["prefix"] == tok["token"][:10]
    assert client.get("/api/v1/audit", headers={"Authorization": f"Bearer {tok['token']}"}
                      ).status_code == 200  # an auditor's token works
    listed = client.get(f"/api/v1/admin/tokens?user={uid}", headers=h).get_json()["tokens"]
    assert [t["prefix"] for t in listed] == [tok["prefix"]] and "token" not in listed[0]
    gone = client.delete(f"/api/v1/admin/tokens/{tok['id']}", headers=h)
    assert gone.status_code == 200 and gone.get_json()["status"] == "revoked"
    assert client.get("/api/v1/audit", headers={"Authorization": f"Bearer {tok['token']}"}
                      ).status_code == 401
    assert client.delete(f"/api/v1/admin/tokens/{tok['id']}", headers=h).status_code == 409
    assert detail(events(sqlite_stack, "token_revoke", "success")[-1])["prefix"] == tok["prefix"]

    reset = client.post(f"/api/v1/admin/users/{uid}/reset-password", json={"method": "password"},
                        headers=h)
    assert len(reset.get_json()["password"]) >= 12
    link = client.post(f"/api/v1/admin/users/{uid}/reset-password", json={}, headers=h)
    assert "/reset/" in link.get_json()["reset_url"]
    assert [detail(e)["method"] for e in events(sqlite_stack, "password_reset")][-2:] == [
        "printed", "link"]

    off = client.patch(f"/api/v1/admin/users/{uid}", json={"active": False}, headers=h)
    assert off.get_json()["user"]["active"] is False
    me = sqlite_stack.users["admin1"].user_id
    self_off = client.patch(f"/api/v1/admin/users/{me}", json={"active": False}, headers=h)
    assert self_off.status_code == 409 and "your own account" in self_off.get_json()["error"][
        "message"]


def test_admin_api_keys_jobs_storage(client, run, sqlite_stack: Stack,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    h = bearer(sqlite_stack, "admin1")
    assert client.put("/api/v1/files/uploads/k.pdf", data=PDF,
                      headers=bearer(sqlite_stack, "staff1")).status_code == 201
    keys = client.get("/api/v1/admin/keys", headers=h).get_json()
    assert keys["current"] == 1 and keys["objects"] == 1
    assert keys["versions"] == [{"version": 1, "state": "current", "created_at":
                                 keys["versions"][0]["created_at"], "objects": 1,
                                 "bytes": len(PDF)}]
    assert client.get("/api/v1/admin/keys", headers=bearer(sqlite_stack, "admin2")
                      ).get_json()["objects"] == 0  # the other organisation's
    assert run("keys", "rotate", "--org", "Clinic One").exit_code == 0
    jobs = client.get("/api/v1/admin/jobs", headers=h).get_json()
    assert jobs["jobs"] == [] and jobs["pending"] == 1 and jobs["current_version"] == 2
    assert run("keys", "rewrap", "--org", "Clinic One").exit_code == 0
    jobs = client.get("/api/v1/admin/jobs", headers=h).get_json()
    assert jobs["pending"] == 0
    (job,) = jobs["jobs"]
    assert job["kind"] == "rewrap" and job["state"] == "done" and job["done"] == 1
    assert client.get("/api/v1/admin/jobs", headers=bearer(sqlite_stack, "admin2")
                      ).get_json()["jobs"] == []
    versions = client.get("/api/v1/admin/keys", headers=h).get_json()["versions"]
    assert [(v["version"], v["objects"]) for v in versions] == [(1, 0), (2, 1)]
    with sqlite_stack.services.sessions() as s:
        s.add(Job(kind="reencrypt", org_id=sqlite_stack.org1, state="running",
                  started_at=utcnow() - timedelta(hours=1),
                  updated_at=utcnow() - timedelta(minutes=30)))
        s.commit()
    listed = client.get("/api/v1/admin/jobs", headers=h).get_json()["jobs"]
    assert [(j["kind"], j["state"]) for j in listed] == [("rewrap", "done"),
                                                        ("reencrypt", "interrupted")]

    storage = client.get("/api/v1/admin/storage", headers=h).get_json()
    assert storage == {"bucket": "ok", "last_reconcile": None}

    def unreachable() -> None:
        raise OSError("no route to the bucket")

    monkeypatch.setattr(sqlite_stack.services.store, "check", unreachable)
    assert client.get("/api/v1/admin/storage", headers=h).get_json()["bucket"] == "unavailable"


def test_cookie_writes_need_the_csrf_header(client, sqlite_stack: Stack) -> None:
    assert sign_in(client, "admin1@example.test").status_code == 302
    uid = sqlite_stack.users["staff1"].user_id
    refused = client.patch(f"/api/v1/admin/users/{uid}", json={"role": "auditor"})
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "csrf_failed"
    ok = client.patch(f"/api/v1/admin/users/{uid}", json={"role": "auditor"},
                      headers={"X-CSRFToken": csrf_token(client, "/admin")})
    assert ok.status_code == 200


def test_admin_page_is_admin_only(client, sqlite_stack: Stack) -> None:
    assert client.get("/admin").status_code == 302  # sign in first
    assert sign_in(client, "staff1@example.test").status_code == 302
    page = client.get("/admin", headers={"Accept": "text/html"})
    assert page.status_code == 403 and b"<html" in page.data
    row = events(sqlite_stack, "denied")[-1]
    assert row.user_email == "staff1@example.test" and "/admin" in detail(row)["reason"]
    assert b'href="/admin"' not in client.get("/").data  # no link for staff
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert sign_in(client, "admin1@example.test").status_code == 302
    page = client.get("/admin")
    assert page.status_code == 200 and b'src="/static/admin.js"' in page.data
    assert b'href="/admin"' in page.data


def test_lifecycle_functions_on_each_database(stack: Stack) -> None:
    """The accounts functions themselves, on SQLite and PostgreSQL, with an operator actor."""
    from gateway.accounts import (
        AccountConflict,
        AccountNotFound,
        issue_reset_link,
        list_tokens,
        list_users,
        redeem_reset_link,
        revoke_token,
        set_active,
        set_role,
        sign_in,
        token_user,
    )
    from gateway.principal import Actor

    svc, op = stack.services, Actor.cli(None, "test")
    assert [u.email for u in list_users(svc, scope_org=stack.org2)] == [
        "admin2@example.test", "auditor2@example.test", "staff2@example.test"]
    info, changed = set_active(svc, "staff2@example.test", False, actor=op)
    assert changed and not info.active
    assert token_user(svc.sessions, stack.users["staff2"].token) is None
    assert sign_in(svc.sessions, "staff2@example.test", PASSWORD).user is None
    with pytest.raises(AccountConflict):
        set_role(svc, "admin2@example.test", "staff", actor=op)
    with pytest.raises(AccountNotFound):
        set_role(svc, "staff1@example.test", "auditor", actor=op, scope_org=stack.org2)
    link = issue_reset_link(svc, "auditor2@example.test", actor=op)
    assert redeem_reset_link(svc, link.token, "twelve chars or more",
                             actor=op) == "auditor2@example.test"
    with pytest.raises(AccountNotFound):
        redeem_reset_link(svc, link.token, "twelve chars or more", actor=op)
    assert sign_in(svc.sessions, "auditor2@example.test", "twelve chars or more").user
    live = [t for t in list_tokens(svc, scope_org=stack.org2) if t.status == "active"]
    assert {t.email for t in live} == {"admin2@example.test", "auditor2@example.test"}
    assert revoke_token(svc, live[0].id, actor=op).status == "revoked"
    actions = [(e.action, e.outcome) for e in events(stack, "user_deactivate")
               + events(stack, "user_set_role") + events(stack, "password_set")
               + events(stack, "token_revoke")]
    assert actions == [("user_deactivate", "success"), ("user_set_role", "denied"),
                       ("user_set_role", "denied"), ("password_set", "success"),
                       ("password_set", "denied"), ("token_revoke", "success")]


def test_token_last_used_is_kept_to_the_minute(sqlite_stack: Stack, client) -> None:
    """A token's use is stamped on its first call, then again only once the stamp is a minute
    old: most API calls commit no write of their own."""
    from gateway.accounts.sessions import TOKEN_USE_RESOLUTION
    from gateway.db.models import ApiToken

    uid = sqlite_stack.users["staff1"].user_id

    def stamp():  # type: ignore[no-untyped-def]
        with sqlite_stack.services.sessions() as s:
            return s.execute(select(ApiToken.last_used_at).where(ApiToken.user_id == uid)
                             .order_by(ApiToken.id)).scalars().first()

    assert client.get("/api/v1/files", headers=bearer(sqlite_stack, "staff1")).status_code == 200
    first = stamp()
    assert first is not None
    assert client.get("/api/v1/files", headers=bearer(sqlite_stack, "staff1")).status_code == 200
    assert stamp() == first  # within the minute: not written again
    old = utcnow() - TOKEN_USE_RESOLUTION - timedelta(seconds=1)
    with sqlite_stack.services.sessions() as s:
        s.execute(update(ApiToken).where(ApiToken.user_id == uid).values(last_used_at=old))
        s.commit()
    assert client.get("/api/v1/files", headers=bearer(sqlite_stack, "staff1")).status_code == 200
    assert stamp().replace(tzinfo=None) > old.replace(tzinfo=None)
