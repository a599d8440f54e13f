"""``gateway keys ...``: init, status, rotate, retire, rotate-master, retire-master."""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.cli import cli
from gateway.db import make_engine, make_session_factory
from gateway.db.migrate import upgrade
from gateway.db.models import AuditKey, OrgKeyVersion, StoredObject
from gateway.keys import (
    FileMasterKey,
    Keyring,
    add_master_key_version,
    init_master_key_file,
)
from tests.test_keyring import add_object, file_keys, make_org

GATEWAY_VARIABLES = [
    "GATEWAY_DATABASE_URL", "GATEWAY_S3_BUCKET", "GATEWAY_S3_ENDPOINT_URL", "GATEWAY_MASTER_KEY",
    "GATEWAY_SECRET_KEY", "GATEWAY_KMS_ENDPOINT_URL",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in GATEWAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def versions_in(path: Path) -> list[int]:
    return [v["version"] for v in json.loads(path.read_text())["versions"]]


class KeyEnv:
    """A database and a master key file, named by the environment as an operator would."""

    def __init__(self, db_url: str, key_path: Path) -> None:
        self.key_path = key_path
        self.engine = make_engine(db_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.keyring = Keyring(self.sessions, FileMasterKey(key_path))

    def audit_events(self, action: str) -> list[tuple[str, str | None]]:
        from gateway.db.models import AuditEvent

        with self.sessions() as session:
            return [
                (row.outcome, row.detail)
                for row in session.scalars(
                    select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                )
            ]


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyEnv]:
    key_path = Path("keys") / "master.key"
    init_master_key_file(key_path)
    upgrade(db_url)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", f"file:{key_path}")
    keys = KeyEnv(db_url, key_path)
    try:
        yield keys
    finally:
        keys.engine.dispose()


# --------------------------------------------------------------------------------------------
# keys init


def test_init_writes_the_default_key_file_once(tmp_path: Path) -> None:
    first = run("keys", "init")
    assert first.exit_code == 0, first.output
    path = tmp_path / "keys" / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FileMasterKey(path).key_id == "file:1"
    assert "keys/master.key" in first.stdout
    content = path.read_bytes()

    again = run("keys", "init")
    assert again.exit_code == 1
    assert again.stdout == ""
    assert again.stderr.count("\n") == 1
    assert "already exists" in again.stderr and "refusing to overwrite" in again.stderr
    assert path.read_bytes() == content
    for key in file_keys(path):
        assert key.hex() not in first.output + again.output


def test_init_writes_where_the_setting_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "file:secrets/gw/master.key")
    result = run("keys", "init")
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE((tmp_path / "secrets/gw/master.key").stat().st_mode) == 0o600


def test_init_refuses_a_kms_master_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "aws-kms:alias/gateway")
    result = run("keys", "init")
    assert result.exit_code == 1
    assert "AWS KMS" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "keys").exists()


# --------------------------------------------------------------------------------------------
# Organisation keys


def test_rotate_status_and_retire(env: KeyEnv) -> None:
    org = make_org(env.sessions, env.keyring, "Clinic")

    rotated = run("keys", "rotate", "--org", "Clinic")
    assert rotated.exit_code == 0, rotated.output
    assert rotated.stdout == "2\n"
    assert f"gateway keys rewrap --org {org}" in rotated.stderr
    with env.sessions() as session:
        assert env.keyring.current_version(session, org) == 2
        add_object(session, org, 1, size=1234)
        session.commit()

    status = run("keys", "status")
    assert status.exit_code == 0, status.output
    lines = status.stdout.splitlines()
    assert lines[0].split() == ["org", "version", "state", "objects", "bytes", "created", "master"]
    assert lines[1].split()[:5] == ["Clinic", "1", "active", "1", "1234"]
    assert lines[2].split()[:5] == ["Clinic", "2", "current", "0", "0"]
    assert lines[-1] == "current master key: file:1"

    refused = run("keys", "retire", "--org", org, "--version", "1")
    assert refused.exit_code == 1
    assert "1 object(s)" in refused.stderr and "keys rewrap" in refused.stderr
    current = run("keys", "retire", "--org", "Clinic", "--version", "2")
    assert current.exit_code == 1 and "current" in current.stderr

    with env.sessions() as session:
        session.scalars(select(StoredObject)).one().key_version = 2
        session.commit()
    retired = run("keys", "retire", "--org", "Clinic", "--version", "1")
    assert retired.exit_code == 0, retired.output
    assert run("keys", "status", "--org", "Clinic").stdout.splitlines()[1].split()[2] == "retired"

    missing = run("keys", "retire", "--org", "Clinic", "--version", "7")
    assert missing.exit_code == 1 and "no key version 7" in missing.stderr
    unknown = run("keys", "status", "--org", "Nowhere")
    assert unknown.exit_code == 1 and "no organisation" in unknown.stderr

    assert [o for o, _ in env.audit_events("key_rotate")] == ["success"]
    # in use, then current, then done
    assert [o for o, _ in env.audit_events("key_retire")] == ["denied", "denied", "success"]
    assert json.loads(env.audit_events("key_retire")[0][1] or "{}")["objects"] == 1


def test_key_commands_need_the_master_key_setting(
    env: KeyEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GATEWAY_MASTER_KEY")
    result = run("keys", "status")
    assert result.exit_code == 1
    assert "GATEWAY_MASTER_KEY is required" in result.stderr


def test_unusable_key_file_is_one_line(env: KeyEnv) -> None:
    make_org(env.sessions, env.keyring, "Clinic")
    os.chmod(env.key_path, 0o644)
    result = run("keys", "rotate", "--org", "Clinic")
    assert result.exit_code == 1
    # The error is the last line (the audit log, needing the same key, may warn before it).
    assert "chmod 600" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.output
    os.chmod(env.key_path, 0o600)
    env.key_path.unlink()
    result = run("keys", "rotate-master")
    assert result.exit_code == 1 and "missing" in result.stderr


# --------------------------------------------------------------------------------------------
# Master key


def test_rotate_master_then_retire_the_old_version(env: KeyEnv) -> None:
    org = make_org(env.sessions, env.keyring, "Clinic")
    make_org(env.sessions, env.keyring, "Hospital")
    with env.sessions() as session:
        env.keyring.audit_key(session, "system")
        session.commit()
        version, wrapped = env.keyring.wrap_data_key(session, org, "object", b"D" * 32)
    current = run("keys", "retire-master", "--version", "1")
    assert current.exit_code == 1 and "current" in current.stderr

    rotated = run("keys", "rotate-master")
    assert rotated.exit_code == 0, rotated.output
    assert "added master key version 2" in rotated.stderr
    assert "gateway keys retire-master --version 1" in rotated.stdout
    assert versions_in(env.key_path) == [1, 2]
    assert stat.S_IMODE(env.key_path.stat().st_mode) == 0o600
    with env.sessions() as session:
        ids = {r.master_key_id for r in session.scalars(select(OrgKeyVersion))}
        ids |= {r.master_key_id for r in session.scalars(select(AuditKey))}
        assert ids == {"file:2"}

    current = run("keys", "retire-master", "--version", "2")
    assert current.exit_code == 1 and "current" in current.stderr
    retired = run("keys", "retire-master", "--version", "1")
    assert retired.exit_code == 0, retired.output
    assert versions_in(env.key_path) == [2]

    fresh = Keyring(env.sessions, FileMasterKey(env.key_path))
    with env.sessions() as session:
        assert fresh.unwrap_data_key(session, org, "object", version, wrapped) == b"D" * 32
    assert [o for o, _ in env.audit_events("key_rotate_master")] == ["success"]
    # version 1 while current, version 2 while current, then version 1
    assert [o for o, _ in env.audit_events("key_retire")] == ["denied", "denied", "success"]


def test_rotate_master_resumes_without_adding_another_version(env: KeyEnv) -> None:
    make_org(env.sessions, env.keyring, "Clinic")
    make_org(env.sessions, env.keyring, "Hospital")
    # A rotation that added version 2 and was interrupted after rewrapping one key.
    add_master_key_version(env.key_path)
    with env.sessions() as session:
        steps = env.keyring.iter_rotate_master(session)
        next(steps)
        steps.close()
    too_early = run("keys", "retire-master", "--version", "1")
    assert too_early.exit_code == 1
    assert "still wraps 1 key(s)" in too_early.stderr and "rotate-master" in too_early.stderr

    resumed = run("keys", "rotate-master")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming: 1 key(s)" in resumed.stderr
    assert "1 key(s) rewrapped" in resumed.stdout
    assert versions_in(env.key_path) == [1, 2]
    # Run again once complete: a new rotation.
    again = run("keys", "rotate-master")
    assert again.exit_code == 0, again.output
    assert versions_in(env.key_path) == [1, 2, 3]
    assert "--version 1" in again.stdout and "--version 2" in again.stdout


def test_retire_master_refuses_with_kms(env: KeyEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "aws-kms:alias/gateway")
    result = run("keys", "retire-master", "--version", "1")
    assert result.exit_code == 1 and "KMS" in result.stderr
