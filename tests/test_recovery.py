"""The recovery procedure of keys/README.md, end to end.

Files are uploaded through the real gateway (gunicorn over moto's S3 server). Then the gateway
is gone: its database is dumped and restored into a fresh one (``sqlite3 .dump``, or
``pg_dump`` and ``psql`` for PostgreSQL), the master key file is copied, the objects' bytes are
copied out of the bucket, and ``gateway decrypt`` (the installed command, in a clean
environment) recovers every file from those alone. The same with an AWS KMS master key.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from sqlalchemy import create_engine, text

from tests.services import PostgresServer, _psycopg, find_pg_binary
from tests.stack import LiveGateway, Stack, build_stack

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
GATEWAY = Path(sys.executable).with_name("gateway")
PATHS = ("uploads/forms/201/field_7/scan.pdf", "documents/reports/befund-müller.pdf")


def upload(gw: LiveGateway, who: str, path: str, data: bytes) -> dict[str, object]:
    token = gw.stack.users[who].token
    answer = requests.put(f"{gw.url}/api/v1/files/{path}", data=data, timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 201, answer.text
    return answer.json()


def upload_files(gw: LiveGateway) -> dict[str, bytes]:
    """Two files, the second under a newer organisation key version than the first."""
    stack = gw.stack
    files = {PATHS[0]: PDF + os.urandom(1024 * 1024 + 12345), PATHS[1]: PDF + b"x" * 300}
    upload(gw, "staff1", PATHS[0], files[PATHS[0]])
    with stack.services.sessions() as session:
        stack.services.keyring.create_org_key(session, stack.org1)
        session.commit()
    body = upload(gw, "staff1", PATHS[1], files[PATHS[1]])
    assert body["key_version"] == 2
    return files


def clean_env(**extra: str) -> dict[str, str]:
    """No gateway setting at all: the command gets only what the procedure gives it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(extra)
    return env


def dump_and_restore(db_url: str, recovery: Path, postgres: PostgresServer | None) -> str:
    """Dump the gateway's database and restore it into a fresh one; return the new URL."""
    if db_url.startswith("sqlite"):
        source = Path(urlsplit(db_url).path[1:])
        dump = recovery / "gateway.sql"
        sqlite_cli = shutil.which("sqlite3")
        if sqlite_cli:  # the procedure's commands: sqlite3 DB .dump; sqlite3 NEW < dump
            with open(dump, "wb") as out:
                subprocess.run([sqlite_cli, str(source), ".dump"], stdout=out, check=True)
            with open(dump, "rb") as inp:
                subprocess.run([sqlite_cli, str(recovery / "restored.db")], stdin=inp,
                               check=True)
        else:  # the same dump, from Python's sqlite3 module
            with sqlite3.connect(source) as conn:
                dump.write_text("\n".join(conn.iterdump()), encoding="utf-8")
            with sqlite3.connect(recovery / "restored.db") as conn:
                conn.executescript(dump.read_text(encoding="utf-8"))
        source.unlink()  # the original is gone
        for suffix in ("-wal", "-shm"):
            Path(str(source) + suffix).unlink(missing_ok=True)
        return f"sqlite:///{recovery / 'restored.db'}"
    assert postgres is not None
    original = urlsplit(db_url).path.lstrip("/")
    restored = f"gw_restore_{secrets.token_hex(4)}"
    dump = recovery / "gateway.sql"
    server = ["-h", postgres.host, "-p", str(postgres.port), "-U", postgres.user]
    pg_dump = find_pg_binary("pg_dump")
    psql = find_pg_binary("psql")
    if not pg_dump or not psql:
        pytest.skip("pg_dump or psql not found")
    subprocess.run([pg_dump, *server, "-f", str(dump), original], check=True)
    psycopg = _psycopg()
    with psycopg.connect(postgres.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{original}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{restored}"')
    subprocess.run([psql, *server, "-v", "ON_ERROR_STOP=1", "-q", "-d", restored, "-f",
                    str(dump)], check=True, stdout=subprocess.DEVNULL)
    return postgres.url(restored)


def copy_objects(stack: Stack, database_url: str, recovery: Path) -> dict[str, Path]:
    """`aws s3 cp` of every catalogued object, named by its storage id; by path."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT path, s3_key, storage_id FROM objects "
                                     "WHERE encryption = 'cse' ORDER BY path")).all()
    finally:
        engine.dispose()
    s3 = boto3.client("s3", endpoint_url=stack.settings.s3_endpoint_url)
    copied = recovery / "copied"
    copied.mkdir()
    out = {}
    for path, s3_key, storage_id in rows:
        target = copied / storage_id
        target.write_bytes(s3.get_object(Bucket=stack.settings.s3_bucket, Key=s3_key)["Body"]
                           .read())
        out[path] = target
    return out


def gateway(recovery: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GATEWAY), *args], cwd=recovery, env=env, capture_output=True,
                          text=True, timeout=120)


def recover(stack: Stack, gw: LiveGateway, files: dict[str, bytes], db_url: str,
            recovery: Path, postgres: PostgresServer | None, master_key: str,
            env: dict[str, str]) -> None:
    gw.stop()
    stack.close()  # the gateway is gone; only its backups remain
    database_url = dump_and_restore(db_url, recovery, postgres)
    copied = copy_objects(stack, database_url, recovery)
    assert set(copied) == set(files)
    options = ["--database-url", database_url, "--master-key", master_key]

    # The procedure's check of the restore: the audit chains verify, so the audit keys unwrap.
    settings = dict(env, GATEWAY_DATABASE_URL=database_url, GATEWAY_MASTER_KEY=master_key)
    status = gateway(recovery, settings, "audit", "verify")
    assert status.returncode == 0, status.stderr
    assert "audit chain intact" in status.stdout
    listed = gateway(recovery, settings, "keys", "status")
    assert listed.returncode == 0, listed.stderr

    plain = recovery / "plain"
    plain.mkdir(mode=0o700)
    for path, source in copied.items():
        result = gateway(recovery, env, "decrypt", str(source), "-o",
                         str(plain / source.name), *options)
        assert result.returncode == 0, result.stderr
        restored = (plain / source.name).read_bytes()
        assert hashlib.sha256(restored).digest() == hashlib.sha256(files[path]).digest()
        assert restored == files[path]
    assert sorted(p.name for p in plain.iterdir()) == sorted(p.name for p in copied.values())

    # A damaged copy is refused, and nothing is written.
    damaged = recovery / "damaged" / copied[PATHS[0]].name
    damaged.parent.mkdir()
    data = bytearray(copied[PATHS[0]].read_bytes())
    data[len(data) // 2] ^= 1
    damaged.write_bytes(bytes(data))
    refused = gateway(recovery, env, "decrypt", str(damaged), "-o", str(recovery / "bad.out"),
                      *options)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("gateway: integrity failure")
    assert not (recovery / "bad.out").exists() and not (recovery / "bad.out.partial").exists()

    # Every run is in the restored database's audit trail.
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            outcomes = list(conn.execute(text(
                "SELECT outcome FROM audit_events WHERE action = 'decrypt' ORDER BY id"
            )).scalars())
    finally:
        engine.dispose()
    assert outcomes == ["started", "completed"] * len(files) + ["started", "integrity_failure"]


@pytest.fixture
def recovery(tmp_path: Path) -> Path:
    path = tmp_path / "recovery"
    path.mkdir(mode=0o700)
    return path


def copy_key_file(stack: Stack, recovery: Path) -> str:
    """The master key file from its backup, mode 0600 (the gateway refuses anything wider)."""
    source = Path(stack.env["GATEWAY_MASTER_KEY"].removeprefix("file:"))
    (recovery / "keys").mkdir(mode=0o700)
    target = recovery / "keys" / "master.key"
    shutil.copyfile(source, target)
    target.chmod(0o600)
    return "file:keys/master.key"


def test_recover_from_dump_and_key_file(
    db_url: str, moto_endpoint: str, tmp_path: Path, recovery: Path,
    request: pytest.FixtureRequest,
) -> None:
    postgres = request.getfixturevalue("postgres_server") if db_url.startswith("postgres") \
        else None
    stack = build_stack(db_url, moto_endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log")
    try:
        files = upload_files(gw)
        master_key = copy_key_file(stack, recovery)
        recover(stack, gw, files, db_url, recovery, postgres, master_key, clean_env())
    finally:
        gw.stop()
        stack.close()


@pytest.fixture
def kms_key(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A KMS key on moto's server; the gateway reaches it through GATEWAY_KMS_ENDPOINT_URL."""
    monkeypatch.setenv("GATEWAY_KMS_ENDPOINT_URL", moto_endpoint)
    kms = boto3.client("kms", endpoint_url=moto_endpoint)
    key = kms.create_key(Description="gateway master (recovery test)")["KeyMetadata"]
    yield key["Arn"]


def test_recover_from_dump_and_kms(
    moto_endpoint: str, tmp_path: Path, recovery: Path, kms_key: str
) -> None:
    db_url = f"sqlite:///{tmp_path / 'gw.db'}"
    stack = build_stack(db_url, moto_endpoint, tmp_path, GATEWAY_MASTER_KEY=f"aws-kms:{kms_key}")
    gw = LiveGateway(stack, tmp_path / "gunicorn.log")
    try:
        files = upload_files(gw)
        env = clean_env(GATEWAY_KMS_ENDPOINT_URL=moto_endpoint)
        recover(stack, gw, files, db_url, recovery, None, f"aws-kms:{kms_key}", env)
    finally:
        gw.stop()
        stack.close()
