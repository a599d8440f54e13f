"""``gateway audit query | verify | archive | verify-archive``."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from gateway.audit import AuditLog, AuditUnavailable, query
from gateway.cli.audit import audit
from gateway.config import Settings
from gateway.db.models import AuditEvent, Organisation
from gateway.principal import Actor
from gateway.services import Services
from tests.test_audit import ORG_A, ORG_B, Clock, Db, FakeKeyring, db  # noqa: F401  (fixture)


@pytest.fixture
def services(db: Db) -> Iterator[Services]:  # noqa: F811
    """Services over the test database, with a stand-in keyring and a fixed clock."""
    with db.sessions() as s:
        s.add_all([Organisation(id=ORG_A, name="Clinic A"),
                   Organisation(id=ORG_B, name="Clinic B")])
        s.commit()
    keyring = FakeKeyring()
    svc = Services(settings=Settings(database_url=db.url), engine=db.sessions.kw["bind"],
                   sessions=db.sessions, _cache={"keyring": keyring})
    svc._cache["audit"] = AuditLog(db.sessions, keyring, clock=Clock())
    nurse = Actor(org_id=ORG_A, user_id=7, email="nurse@example.test", role="staff",
                  client_addr="192.0.2.10")
    for action, outcome, obj in (("upload", "completed", "o1"), ("view", "started", "o1"),
                                 ("denied", "denied", "o2")):
        svc.audit.record(action=action, outcome=outcome, actor=nurse, object_id=obj,
                         object_path=f"uploads/{obj}.pdf")
    svc.audit.record(action="view", outcome="started", actor=Actor(org_id=ORG_B, user_id=9))
    yield svc


def run(services: Services, *args: str) -> Result:
    return CliRunner().invoke(audit, list(args), obj={"services": services})


def recorded(services: Services, action: str) -> list[AuditEvent]:
    with services.sessions() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_verify_exits_0_on_an_intact_trail(services: Services) -> None:
    result = run(services, "verify")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "audit chain intact: 4 rows in 2 chains"
    one = run(services, "verify", "--org", "Clinic B")
    assert one.output.splitlines()[0] == "audit chain intact: 1 rows in 1 chains"
    (first, second) = recorded(services, "audit_verify")
    assert first.outcome == "success" and first.role == "operator" and first.chain == "system"
    assert second.chain == ORG_B


def test_verify_exits_1_naming_the_first_bad_row(services: Services, db: Db) -> None:  # noqa: F811
    db.drop_triggers()
    db.execute("UPDATE audit_events SET bytes = 12345 WHERE chain = :c AND seq = 2", c=ORG_A)
    row_id = db.rows(ORG_A)[1].id
    result = run(services, "verify")
    assert result.exit_code == 1
    expected = f"audit chain altered: chain {ORG_A}, seq 2, row id {row_id}: row edited"
    assert expected in result.output
    assert "[hash_mismatch]" in result.output
    assert run(services, "verify", "--org", ORG_B).exit_code == 0
    failure = [e for e in recorded(services, "audit_verify") if e.outcome == "failure"]
    assert json.loads(failure[0].detail)["fault"] == {"chain": ORG_A, "seq": 2, "row_id": row_id,
                                                      "reason": "hash_mismatch"}


def test_query_table_csv_and_jsonl(services: Services) -> None:
    table = run(services, "query", "--org", "Clinic A", "--action", "upload,view")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split()[:3] == ["seq", "when", "(UTC)"]
    assert lines[1].split()[0] == "1" and lines[2].split()[0] == "2"
    assert len(lines) == 4 and "uploads/o1.pdf" in lines[1] and lines[-1] == "2 event(s)"

    exported = run(services, "query", "--org", ORG_A, "--format", "csv", "--user",
                   "NURSE@example.test", "--since", "2026-03-02T09:01:00Z", "--until", "2026-03-02")
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert [(r["action"], r["object_id"]) for r in rows] == [("view", "o1"), ("denied", "o2")]

    everything = run(services, "query", "--format", "jsonl")  # no --org: every organisation
    events = [json.loads(line) for line in everything.output.splitlines()]
    assert {e["org_id"] for e in events} == {ORG_A, ORG_B, None}  # None: the query audits
    page = run(services, "query", "--org", "Clinic A", "--limit", "2")
    assert "more: add --after" in page.output
    after = page.output.splitlines()[-1].split()[-1]
    assert after == "2"  # the chain's seq, not a row id that counts other chains' rows
    rest = run(services, "query", "--org", "Clinic A", "--after", after, "--action", "denied")
    assert rest.output.splitlines()[-1] == "1 event(s)" and rest.output.splitlines()[1].split()[
        0] == "3"

    assert [e.outcome for e in recorded(services, "audit_query")] == ["success"] * 3
    assert len(recorded(services, "audit_export")) == 2


BAD_VALUES = [
    (["--since", "yesterday"], "YYYY-MM-DD or ISO 8601"),
    (["--until", "2026-02-30"], "is not a date"),
    (["--action", "peek"], "unknown action 'peek'"),
    (["--outcome", "fine"], "unknown outcome 'fine'"),
    (["--user", "nurse"], "user id or an e-mail address"),
    (["--since", "2026-03-02", "--until", "2026-03-01"], "--since must come before --until"),
    (["--limit", "0"], "0 is not in the range"),
    (["--format", "xml"], "'xml' is not one of"),
    (["--until", "9999-12-31"], "outside the calendar"),
    (["--since", "0001-01-01T00:00:00+14:00"], "outside the calendar"),
    (["--since", "9999-12-31T23:59:59-14:00"], "outside the calendar"),
    (["--user", "9223372036854775808"], "user id must be between"),
    (["--user", "2147483648"], "user id must be between"),
    (["--after", "9223372036854775808"], "is not in the range"),
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_query_refuses_bad_values_clearly(services: Services) -> None:
    for args, message in BAD_VALUES:
        result = run(services, "query", *args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert recorded(services, "audit_query") == []


def test_query_names_an_unknown_organisation(services: Services) -> None:
    result = run(services, "query", "--org", "Clinic Z")
    assert result.exit_code == 1 and "no organisation with id or name 'Clinic Z'" in result.output


def test_query_shows_nothing_when_it_cannot_be_audited(services: Services,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def down(**kwargs: Any) -> None:
        raise AuditUnavailable("the audit log is unavailable")

    monkeypatch.setattr(services.audit, "record", down)
    result = run(services, "query", "--org", "Clinic A", "--format", "jsonl")
    assert result.exit_code == 1
    assert "audit log is unavailable" in result.output and "nurse@" not in result.output


def test_archive_and_verify_archive_commands(sqlite_stack: Any) -> None:
    services = sqlite_stack.services
    march = Clock(datetime(2026, 3, 15, tzinfo=timezone.utc))
    services._cache["audit"] = AuditLog(services.sessions, services.keyring, clock=march)
    for org in (sqlite_stack.org1, sqlite_stack.org2):
        services.audit.record(action="view", outcome="started", actor=Actor(org_id=org))
    march.now = datetime.now(timezone.utc)

    result = run(services, "archive", "--month", "2026-03")
    assert result.exit_code == 0, result.output
    assert f"Clinic One: written audit-archive/{sqlite_stack.org1}/2026/03.jsonl.gz " \
           "(1 events, seq 1-1)" in result.output
    assert "Clinic SSEC: no events in 2026-03" in result.output
    again = run(services, "archive", "--month", "2026-03", "--org", "Clinic One")
    assert again.exit_code == 0 and "Clinic One: unchanged" in again.output

    checked = run(services, "verify-archive", "--month", "2026-03", "--org", "Clinic Two")
    assert checked.exit_code == 0, checked.output
    assert checked.output.startswith("audit archive intact: audit-archive/")
    missing = run(services, "verify-archive", "--month", "2026-02", "--org", "Clinic Two")
    assert missing.exit_code == 1 and "no archive at audit-archive/" in missing.output
    bad = run(services, "archive", "--month", "2026-3")
    assert bad.exit_code == 2 and "use YYYY-MM" in bad.output
    with services.sessions() as s:
        done = query(s, org_id=sqlite_stack.org1, action="audit_archive", outcome="completed")
    assert [json.loads(e.detail)["status"] for e in done] == ["written", "unchanged"]
