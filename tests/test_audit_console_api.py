"""The audit console's API over HTTP against the real gateway (gunicorn, moto's S3): search by
file name, path and folder, hiding one's own searches, counts, user suggestions, folder
histories exported as CSV and PDF (each export audited), the review dashboard and the
verification run from the browser; refusals (400 naming the filter, 403 for staff) with
their audit rows. The pages themselves are driven in Chromium (tests/test_audit_console.py)."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, time, timezone

import pytest
import requests
from sqlalchemy import select

from gateway.audit.review import parse_working_hours, working_intervals
from gateway.config import Settings, SettingsError
from gateway.db.models import AuditEvent
from gateway.principal import Actor
from tests.stack import LiveGateway

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"w" * 3000
API = "/api/v1/audit"


def _auth(live: LiveGateway, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live.stack.users[who].token}"}


def _get(live: LiveGateway, who: str, url: str, /, **params) -> requests.Response:
    return requests.get(live.url + url, params=params, headers=_auth(live, who), timeout=30)


def _rows(live: LiveGateway, action: str, email: str | None = None) -> list[AuditEvent]:
    with live.stack.services.sessions() as s:
        stmt = select(AuditEvent).where(AuditEvent.action == action)
        if email:
            stmt = stmt.where(AuditEvent.user_email == email)
        return list(s.scalars(stmt.order_by(AuditEvent.id)))


@pytest.fixture(scope="module")
def opened(live: LiveGateway) -> dict[str, str]:
    """staff1 uploads two files into a patient's folder and opens one of them."""
    ids = {}
    for path in ("documents/patient-4711/Wound-Photo.pdf", "documents/patient-4711/consent.pdf",
                 "documents/patient-47110/other.pdf"):
        resp = requests.put(f"{live.url}/api/v1/files/{path}", data=PDF,
                            headers=_auth(live, "staff1"), timeout=30)
        assert resp.status_code == 201, resp.text
        ids[path] = resp.json()["id"]
    got = requests.get(f"{live.url}/api/v1/files/documents/patient-4711/Wound-Photo.pdf",
                       headers=_auth(live, "staff1b"), timeout=30)
    assert got.status_code == 200 and got.content == PDF
    return ids


def test_a_file_name_finds_who_opened_it(live: LiveGateway, opened) -> None:
    resp = _get(live, "auditor1", API, name="wound-photo.PDF", count="1")
    assert resp.status_code == 200
    body = resp.json()
    readers = {(e["user_email"], e["action"]) for e in body["events"]}
    assert ("staff1b@example.test", "download") in readers or \
        ("staff1b@example.test", "view") in readers
    assert all(e["object_path"] == "documents/patient-4711/Wound-Photo.pdf" for e in body["events"])
    assert body["count"] == len(body["events"]) and body["count"] >= 3  # upload + read
    # a start of a name; nothing of the other files
    start = _get(live, "auditor1", API, name="wound*").json()["events"]
    assert {e["object_path"] for e in start} == {"documents/patient-4711/Wound-Photo.pdf"}
    # another organisation's auditor finds nothing by that name
    assert _get(live, "auditor2", API, name="wound-photo.pdf").json()["events"] == []
    # the search itself is recorded with the filter
    row = _rows(live, "audit_query", "auditor1@example.test")[-1]
    assert json.loads(row.detail)["filters"]["name"] == "wound*"


def test_paths_exact_and_prefix_and_folders(live: LiveGateway, opened) -> None:
    exact = _get(live, "auditor1", API, path="documents/patient-4711/consent.pdf").json()["events"]
    assert {e["object_path"] for e in exact} == {"documents/patient-4711/consent.pdf"}
    prefix = _get(live, "auditor1", API, path="documents/patient-4711*").json()["events"]
    assert {e["object_path"] for e in prefix} == set(opened)  # a prefix, not a folder
    folder = _get(live, "auditor1", f"{API}/folders", prefix="documents/patient-4711").json()["events"]
    assert {e["object_path"] for e in folder} == {"documents/patient-4711/Wound-Photo.pdf",
                                                   "documents/patient-4711/consent.pdf"}
    same = _get(live, "auditor1", API, folder="/documents/patient-4711/").json()["events"]
    assert [e["seq"] for e in same] == [e["seq"] for e in folder]
    assert _get(live, "auditor2", f"{API}/folders", prefix="documents/patient-4711/").json()[
        "events"] == []


def test_hide_my_own_searches(live: LiveGateway, opened) -> None:
    _get(live, "auditor1", API)
    mine = _get(live, "auditor1", API, action="audit_query").json()["events"]
    assert any(e["user_email"] == "auditor1@example.test" for e in mine)
    hidden = _get(live, "auditor1", API, action="audit_query,audit_export,upload",
                  hide_mine="1").json()["events"]
    assert not any(e["user_email"] == "auditor1@example.test" and
                   e["action"] in ("audit_query", "audit_export") for e in hidden)
    assert any(e["action"] == "upload" for e in hidden)  # the rest stays
    # still recorded, with the switch
    assert json.loads(_rows(live, "audit_query", "auditor1@example.test")[-1].detail)[
        "filters"]["hide_mine"] is True


def test_counts_and_pages(live: LiveGateway, opened) -> None:
    first = _get(live, "auditor1", API, folder="documents/patient-4711/", limit="2", count="1",
                 order="asc").json()
    assert len(first["events"]) == 2 and first["count"] >= 4 and first["next"]
    second = _get(live, "auditor1", API, folder="documents/patient-4711/", limit="2", count="1",
                  order="asc", after=str(first["next"])).json()
    assert second["count"] == first["count"]  # the count is of every page
    assert second["events"][0]["seq"] > first["events"][-1]["seq"]


@pytest.mark.parametrize("params,field,words", [
    ({"name": "documents/patient-4711/x.pdf"}, "name", "path"),
    ({"name": "*"}, "name", "before *"),
    ({"since": "yesterday"}, "since", "not a date"),
    ({"until": "2026-13-40"}, "until", "not a date"),
    ({"since": "2026-11-02", "until": "2026-11-01"}, "until", "before"),
    ({"status": "abc"}, "status", "whole number"),
    ({"status": "99"}, "status", "between"),
    ({"action": "opened"}, "action", "unknown action"),
    ({"outcome": "fine"}, "outcome", "unknown outcome"),
    ({"user": "bob"}, "user", "e-mail"),
    ({"path": "a" * 1100}, "path", "at most"),
    ({"folder": "x/", "path": "x/y"}, "folder", "not both"),
    ({"outside_hours": "1"}, "outside_hours", "since"),
    ({"outside_hours": "maybe", "since": "2026-11-01"}, "outside_hours", "1 or 0"),
])
def test_bad_filters_are_400_naming_the_filter(live: LiveGateway, params, field, words) -> None:
    resp = _get(live, "auditor1", API, **params)
    assert resp.status_code == 400
    assert resp.headers.get("X-Audit-Filter") == field
    assert resp.json()["error"]["code"] == "bad_request"
    assert words in resp.json()["error"]["message"]


def test_bad_requests_of_the_other_endpoints(live: LiveGateway) -> None:
    assert _get(live, "auditor1", f"{API}/folders").status_code == 400
    assert "folder" in _get(live, "auditor1", f"{API}/folders", prefix="/").json()[
        "error"]["message"]
    assert _get(live, "auditor1", API, format="xml").status_code == 400
    assert _get(live, "auditor1", API, hide_mine="2").status_code == 400
    assert _get(live, "auditor1", f"{API}/review", since="soon").status_code == 400
    assert _get(live, "auditor1", f"{API}/users", q="x" * 400).status_code == 400


def test_user_suggestions_are_of_the_own_organisation(live: LiveGateway) -> None:
    body = _get(live, "auditor1", f"{API}/users", q="STAFF1").json()
    assert {u["email"] for u in body["users"]} == {"staff1@example.test",
                                                  "staff1b@example.test"}
    assert {"id", "email", "role", "active"} <= set(body["users"][0])
    everyone = {u["email"] for u in _get(live, "auditor1", f"{API}/users").json()["users"]}
    assert "staff2@example.test" not in everyone and "admin1@example.test" in everyone
    assert _get(live, "auditor2", f"{API}/users", q="staff1").json()["users"] == []
    assert _get(live, "auditor1", f"{API}/users", q="%").json()["users"] == []  # no wildcard


def test_folder_report_as_csv_and_pdf_is_audited(live: LiveGateway, opened) -> None:
    resp = _get(live, "auditor1", f"{API}/folders", prefix="documents/patient-4711/", format="csv")
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert {r["object_path"] for r in rows} == {"documents/patient-4711/Wound-Photo.pdf",
                                               "documents/patient-4711/consent.pdf"}
    export = _rows(live, "audit_export", "auditor1@example.test")[-1]
    detail = json.loads(export.detail)
    assert detail["format"] == "csv" and detail["rows"] == len(rows)
    assert detail["filters"]["object_path"] == "documents/patient-4711/*"

    pdf = _get(live, "auditor1", f"{API}/folders", prefix="documents/patient-4711/", format="pdf")
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF") and b"attachment" in pdf.headers[
        "Content-Disposition"].encode()
    detail = json.loads(_rows(live, "audit_export", "auditor1@example.test")[-1].detail)
    assert detail["format"] == "pdf" and detail["rows"] == len(rows)


def test_object_and_user_histories_export(live: LiveGateway, opened) -> None:
    oid = opened["documents/patient-4711/Wound-Photo.pdf"]
    pdf = _get(live, "auditor1", f"{API}/objects/{oid}", format="pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    uid = live.stack.users["staff1b"].user_id
    hist = _get(live, "auditor1", f"{API}/users/{uid}", count="1").json()
    assert hist["count"] >= 1 and {e["user_email"] for e in hist["events"]} == {
        "staff1b@example.test"}


def _failed_sign_in(live: LiveGateway, who: str) -> None:
    """A wrong password for a known user, as the sign-in page records it (the browser test
    signs in wrongly through the page itself)."""
    u = live.stack.users[who]
    live.stack.services.audit.record(
        action="login_failed", outcome="denied", http_status=401,
        actor=Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role),
        detail={"reason": "wrong password"})


def test_review_counts_failed_sign_ins_and_links_them(live: LiveGateway) -> None:
    before = {i["key"]: i for i in _get(live, "auditor1", f"{API}/review").json()["items"]}
    _failed_sign_in(live, "staff1")
    body = _get(live, "auditor1", f"{API}/review").json()
    items = {i["key"]: i for i in body["items"]}
    assert set(items) == {"login_failed", "throttled", "denied", "integrity", "bulk",
                          "outside_hours"}
    assert items["login_failed"]["count"] == before["login_failed"]["count"] + 1
    # the item's filters give exactly the events it counts
    linked = _get(live, "auditor1", API, count="1", **items["login_failed"]["filters"]).json()
    assert linked["count"] == items["login_failed"]["count"]
    assert all(e["action"] == "login_failed" for e in linked["events"])
    assert body["settings"] == {"bulk_files": 50, "bulk_bytes": 1 << 30,
                                "working_hours": "07:00-19:00", "timezone": "UTC"}
    # the other organisation sees none of it
    other = {i["key"]: i for i in _get(live, "auditor2", f"{API}/review").json()["items"]}
    assert other["login_failed"]["count"] == 0
    # outside hours: the link's filter is accepted and counts what the item counts
    out = _get(live, "auditor1", API, count="1", **items["outside_hours"]["filters"]).json()
    assert out["count"] == items["outside_hours"]["count"]
    assert json.loads(_rows(live, "audit_query", "auditor1@example.test")[-1].detail)


def test_verify_now_is_audited_as_audit_verify(live: LiveGateway) -> None:
    resp = requests.post(f"{live.url}{API}/verify", headers=_auth(live, "auditor1"), timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is True and body["rows"] > 0 and body["fault"] is None
    row = _rows(live, "audit_verify", "auditor1@example.test")[-1]
    assert row.outcome == "success" and row.org_id == live.stack.org1
    assert json.loads(row.detail)["rows"] == body["rows"]
    last = _get(live, "auditor1", f"{API}/review").json()["last_verification"]
    assert last["seq"] == row.seq and last["outcome"] == "success"
    assert _get(live, "auditor2", f"{API}/review").json()["last_verification"] is None


@pytest.mark.parametrize("path,method", [
    (f"{API}/users?q=a", "GET"), (f"{API}/folders?prefix=documents/", "GET"),
    (f"{API}/review", "GET"), (f"{API}/verify", "POST"),
])
def test_staff_are_refused_and_audited(live: LiveGateway, path: str, method: str) -> None:
    resp = requests.request(method, live.url + path, headers=_auth(live, "staff1"), timeout=30)
    assert resp.status_code == 403
    row = _rows(live, "denied", "staff1@example.test")[-1]
    assert row.http_status == 403 and path.split("?")[0] in json.loads(row.detail)["reason"]


def test_working_hours_in_a_time_zone() -> None:
    hours = parse_working_hours("07:00-19:00")
    assert hours == (time(7), time(19))
    since = datetime(2026, 3, 28, tzinfo=timezone.utc)
    until = datetime(2026, 3, 30, tzinfo=timezone.utc)
    spans = working_intervals(since, until, hours, "Europe/Berlin")
    by_day = {a.date().isoformat(): (a.hour, b.hour) for a, b in spans}
    assert by_day["2026-03-28"] == (6, 18)  # CET, UTC+1
    assert by_day["2026-03-29"] == (5, 17)  # summer time from that night, UTC+2
    for bad in ("7-19", "19:00-07:00", "07:00", ""):
        with pytest.raises(ValueError):
            parse_working_hours(bad)


@pytest.mark.parametrize("name,value", [
    ("GATEWAY_REVIEW_BULK_FILES", "0"), ("GATEWAY_REVIEW_BULK_BYTES", "lots"),
    ("GATEWAY_WORKING_HOURS", "19:00-07:00"), ("GATEWAY_WORKING_HOURS", "nine to five"),
    ("GATEWAY_TIMEZONE", "Mars/Olympus"),
])
def test_review_settings_are_checked(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value}, require=())


def test_review_settings_are_read() -> None:
    s = Settings.from_env({"GATEWAY_REVIEW_BULK_FILES": "5", "GATEWAY_REVIEW_BULK_BYTES": "1000",
                           "GATEWAY_WORKING_HOURS": "08:30-17:00",
                           "GATEWAY_TIMEZONE": "Europe/Berlin"}, require=())
    assert (s.review_bulk_files, s.review_bulk_bytes, s.working_hours, s.timezone) == (
        5, 1000, "08:30-17:00", "Europe/Berlin")


def test_the_review_and_name_queries_on_every_backend(stack) -> None:
    """The same answers from SQLite and PostgreSQL: file names, counts, bulk fetches per
    clock hour, access outside given hours, the last verification."""
    from datetime import timedelta

    from gateway.audit import count, query
    from gateway.audit.review import bulk_fetches, last_verification, review

    u = stack.users["staff1"]
    actor = Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)
    audit_log = stack.services.audit
    for n in range(3):
        audit_log.record(action="view", outcome="completed", actor=actor,
                         object_id=f"{n:032x}", object_path=f"uploads/p{n}/Scan_{n}.PDF",
                         http_status=200, nbytes=1000)
    audit_log.record(action="login_failed", outcome="denied", actor=actor, http_status=401)
    org = u.org_id
    with stack.services.sessions() as s:
        assert [e.object_path for e in query(s, org_id=org, name="scan_1.pdf")] == [
            "uploads/p1/Scan_1.PDF"]
        assert len(query(s, org_id=org, name="SCAN_*")) == 3
        assert query(s, org_id=org, name="can_1.pdf") == []  # a whole name, not a part
        assert query(s, org_id=org, name="scan%") == []  # % is a character
        assert count(s, org_id=org, action="view") == 3
        assert count(s, org_id=stack.org2, action="view") == 0
        now = datetime.now(timezone.utc)
        since, until = now - timedelta(hours=2), now + timedelta(minutes=1)
        bulk = bulk_fetches(s, org_id=org, since=since, until=until, max_files=2,
                            max_bytes=10**9)
        assert len(bulk) == 1 and bulk[0]["files"] == 3 and bulk[0]["bytes"] == 3000
        assert bulk[0]["user_email"] == u.email
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", bulk[0]["hour"])
        assert bulk_fetches(s, org_id=org, since=since, until=until, max_files=3,
                            max_bytes=3000) == []  # more than, not as many as
        assert count(s, org_id=org, action="view", outside=[(since, until)]) == 0
        assert count(s, org_id=org, action="view", outside=[]) == 3
        items = {i.key: i.count for i in review(
            s, org_id=org, since=since, until=until, max_files=2, max_bytes=10**9,
            hours=(time(0), time(23, 59)), tz="UTC")}
        assert items["login_failed"] == 1 and items["bulk"] == 1 and items["denied"] == 1
        assert last_verification(s, org) is None
