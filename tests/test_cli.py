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


def test_user_and_token_commands_need_only_the_database(sqlite_stack) -> None:
    """Managing users and tokens touches the database alone: no bucket, key or secret needed
    (creating an organisation needs the master key, for its first key version)."""
    only_db = {"GATEWAY_DATABASE_URL": sqlite_stack.env["GATEWAY_DATABASE_URL"],
               "GATEWAY_S3_BUCKET": None, "GATEWAY_MASTER_KEY": None, "GATEWAY_SECRET_KEY": None}
    runner = CliRunner()

    def run(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env=only_db)

    assert run("orgs", "list").exit_code == 0
    made = run("users", "create", "clerk@example.test", "--org", "Clinic One", "--role", "staff")
    assert made.exit_code == 0, made.output
    token = run("tokens", "create", "clerk@example.test")
    assert token.exit_code == 0 and token.output.strip().startswith("gwt_"), token.output
    revoked = run("tokens", "revoke", "clerk@example.test")
    assert revoked.exit_code == 0 and "revoked 1 token(s)" in revoked.output
    org = run("orgs", "create", "Clinic Four")
    assert org.exit_code == 1
    assert org.output.count("\n") == 1 and "GATEWAY_MASTER_KEY" in org.output
