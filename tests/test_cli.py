"""The command line: every contract command is listed, and the admin commands work."""
from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from gateway.cli import cli
from tests.stack import ROOT

CONTRACT_COMMANDS = ["dev", "db", "orgs", "users", "tokens", "keys", "audit", "storage", "decrypt"]


def test_help_lists_every_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for name in CONTRACT_COMMANDS:
        assert f"  {name} " in proc.stdout or f"  {name}\n" in proc.stdout, name


def test_keys_group_lists_contract_commands() -> None:
    result = CliRunner().invoke(cli, ["keys", "--help"])
    assert result.exit_code == 0
    for name in ["init", "status", "rotate", "rotate-master"]:
        assert name in result.output


def test_admin_commands(sqlite_stack, monkeypatch) -> None:
    for k, v in sqlite_stack.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    created = runner.invoke(cli, ["orgs", "create", "Hospital Three", "--mode", "ssec"])
    assert created.exit_code == 0, created.output
    org_id = created.output.strip()
    assert len(org_id) == 32
    dup = runner.invoke(cli, ["orgs", "create", "Hospital Three"])
    assert dup.exit_code == 1 and "already exists" in dup.output
    user = runner.invoke(cli, ["users", "create", "nurse@three.test", "--org", "Hospital Three",
                               "--role", "staff", "--password-stdin"],
                         input="a long enough password\n")
    assert user.exit_code == 0, user.output
    assert "password:" not in user.output
    token = runner.invoke(cli, ["tokens", "create", "nurse@three.test", "--expires-days", "7"])
    assert token.exit_code == 0 and token.output.startswith("gwt_")
    bad_role = runner.invoke(cli, ["users", "create", "x@three.test", "--org", org_id,
                                   "--role", "king"])
    assert bad_role.exit_code == 2
    no_org = runner.invoke(cli, ["users", "create", "x@three.test", "--org", "nope",
                                 "--role", "staff"])
    assert no_org.exit_code == 1 and "no organisation" in no_org.output


def test_listings_need_only_the_database_and_changes_need_the_audit_key(sqlite_stack) -> None:
    """Listing users and tokens touches the database alone; changing them is audited, so it
    needs the master key (the audit chain's key is wrapped by it) and says so in one line."""
    only_db = {"GATEWAY_DATABASE_URL": sqlite_stack.env["GATEWAY_DATABASE_URL"],
               "GATEWAY_S3_BUCKET": None, "GATEWAY_MASTER_KEY": None, "GATEWAY_SECRET_KEY": None}
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env=only_db)

    assert run("orgs", "list").exit_code == 0
    assert run("users", "list").exit_code == 0
    assert run("tokens", "list").exit_code == 0
    for change in (("users", "create", "clerk@example.test", "--org", "Clinic One", "--role",
                    "staff"), ("tokens", "create", "staff1@example.test"),
                   ("tokens", "revoke", "staff1@example.test"), ("orgs", "create", "Clinic Four"),
                   ("users", "deactivate", "staff1@example.test")):
        out = run(*change)
        assert out.exit_code == 1, (change, out.output)
        assert out.output.count("\n") == 1 and "GATEWAY_MASTER_KEY" in out.output
