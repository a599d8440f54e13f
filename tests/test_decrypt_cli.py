"""``gateway decrypt FILE``: an object copied out of the bucket, decrypted without the web app."""
from __future__ import annotations

import hashlib
import os
import stat
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.cli import cli
from gateway.crypto import envelope
from gateway.db import make_engine, make_session_factory
from gateway.db.migrate import upgrade
from gateway.db.models import StoredObject, new_id
from gateway.keys import FileMasterKey, Keyring, init_master_key_file
from tests.test_cli_keys import GATEWAY_VARIABLES
from tests.test_keyring import add_object, make_org

SEGMENT = 4096


@dataclass
class Copied:
    """An object as ``aws s3 cp`` would leave it: the stored bytes, named by storage id."""

    path: Path
    plaintext: bytes
    row_id: str
    storage_id: str


class Catalog:
    def __init__(self, db_url: str, key_path: Path, bucket_dir: Path) -> None:
        self.engine = make_engine(db_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.keyring = Keyring(self.sessions, FileMasterKey(key_path))
        self.bucket_dir = bucket_dir
        self.org = make_org(self.sessions, self.keyring, "Clinic")

    def store(
        self, plaintext: bytes, *, record_salt: bool = True, org: str | None = None
    ) -> Copied:
        """Encrypt like the object service does, insert the catalog row, write the object."""
        org = org or self.org
        storage_id = new_id()
        data_key = envelope.new_data_key()
        path = self.bucket_dir / storage_id
        with open(path, "wb") as sink:
            for part in envelope.encrypt_stream(
                data_key, _pieces(plaintext), org_id=org, object_id=storage_id,
                segment_size=SEGMENT,
            ):
                sink.write(part)
        with open(path, "rb") as source:
            salt = envelope.parse_header(source.read(envelope.HEADER_SIZE)).salt
        with self.sessions() as session:
            version, wrapped = self.keyring.wrap_data_key(session, org, storage_id, data_key)
            row = add_object(
                session, org, version, storage_id=storage_id, wrapped_data_key=wrapped,
                envelope_salt=salt if record_salt else None, size=len(plaintext),
                sha256=hashlib.sha256(plaintext).hexdigest(),
            )
            session.commit()
            return Copied(path, plaintext, row.id, storage_id)

    def audit_outcomes(self) -> list[str]:
        from gateway.db.models import AuditEvent

        with self.sessions() as session:
            return list(session.scalars(
                select(AuditEvent.outcome).where(AuditEvent.action == "decrypt")
                .order_by(AuditEvent.id)
            ))


def _pieces(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.fixture
def catalog(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    for name in GATEWAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    key_path = Path("keys") / "master.key"
    init_master_key_file(key_path)
    upgrade(db_url)
    monkeypatch.setenv("GATEWAY_DATABASE_URL", db_url)
    monkeypatch.setenv("GATEWAY_MASTER_KEY", f"file:{key_path}")
    bucket_dir = tmp_path / "copied"
    bucket_dir.mkdir()
    result = Catalog(db_url, key_path, bucket_dir)
    try:
        yield result
    finally:
        result.engine.dispose()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["decrypt", *args], catch_exceptions=False)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_round_trip_to_a_file(catalog: Catalog, tmp_path: Path) -> None:
    copied = catalog.store(os.urandom(5 * SEGMENT + 123))
    out = tmp_path / "restored.bin"
    result = run(str(copied.path), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == copied.plaintext
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert leftovers(tmp_path).count("restored.bin.partial") == 0
    assert catalog.audit_outcomes() == ["started", "completed"]


def test_round_trip_to_stdout_and_by_file_name(catalog: Catalog) -> None:
    copied = catalog.store(b"scan of patient form 201", record_salt=False)
    result = run(str(copied.path))
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == copied.plaintext


def test_an_object_under_an_older_key_version(catalog: Catalog, tmp_path: Path) -> None:
    copied = catalog.store(b"x" * (SEGMENT * 2))
    with catalog.sessions() as session:
        catalog.keyring.create_org_key(session, catalog.org)
        session.commit()
    catalog.keyring.forget()
    result = run(str(copied.path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out").read_bytes() == copied.plaintext


@pytest.mark.parametrize("damage", ["flip-last-segment", "truncate", "extend"])
def test_tampered_object_leaves_no_plaintext(
    catalog: Catalog, tmp_path: Path, damage: str
) -> None:
    copied = catalog.store(os.urandom(4 * SEGMENT + 7))
    data = bytearray(copied.path.read_bytes())
    if damage == "flip-last-segment":
        data[-3] ^= 0x01  # earlier segments decrypt (and are written) before this one fails
    elif damage == "truncate":
        del data[-(SEGMENT + 40):]
    else:
        data += b"\0" * 16
    copied.path.write_bytes(bytes(data))
    out_dir = tmp_path / "restore"
    out_dir.mkdir()
    result = run(str(copied.path), "-o", str(out_dir / "out.bin"))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("gateway: integrity failure")
    assert leftovers(out_dir) == []
    assert catalog.audit_outcomes() == ["started", "integrity_failure"]


def test_wrong_digest_in_catalog_is_an_integrity_failure(catalog: Catalog, tmp_path: Path) -> None:
    copied = catalog.store(b"a" * 100)
    with catalog.sessions() as session:
        session.get(StoredObject, copied.row_id).sha256 = hashlib.sha256(b"b").hexdigest()
        session.commit()
    result = run(str(copied.path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "integrity failure" in result.stderr and "SHA-256" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_wrapped_key_of_another_object_is_an_integrity_failure(
    catalog: Catalog, tmp_path: Path
) -> None:
    first = catalog.store(b"first object")
    second = catalog.store(b"second object")
    with catalog.sessions() as session:
        a = session.get(StoredObject, first.row_id)
        b = session.get(StoredObject, second.row_id)
        a.wrapped_data_key = b.wrapped_data_key
        session.commit()
    result = run(str(first.path), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "integrity failure" in result.stderr and "wrapped data key" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bytes_moved_to_another_object_fail(catalog: Catalog, tmp_path: Path) -> None:
    first = catalog.store(b"first object")
    second = catalog.store(b"second object")
    # The first object's bytes under the second one's name, without a salt to find the row by.
    with catalog.sessions() as session:
        session.get(StoredObject, first.row_id).envelope_salt = None
        session.commit()
    moved = catalog.bucket_dir / "elsewhere" / second.storage_id
    moved.parent.mkdir()
    moved.write_bytes(first.path.read_bytes())
    result = run(str(moved), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1 and "integrity failure" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_files_are_one_line_errors(catalog: Catalog, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(500))
    result = run(str(junk))
    assert result.exit_code == 1 and "does not start with a gateway object header" in result.stderr
    orphan = tmp_path / "orphan"
    orphan.write_bytes(envelope.encrypt(envelope.new_data_key(), b"x", org_id="o", object_id="i"))
    result = run(str(orphan))
    assert result.exit_code == 1 and "no catalog row" in result.stderr
    assert result.stderr.count("\n") == 1


def test_memory_stays_bounded(catalog: Catalog, tmp_path: Path) -> None:
    size = 24 * 1024 * 1024
    copied = catalog.store(os.urandom(1024) * (size // 1024))
    out = tmp_path / "big.out"
    tracemalloc.start()
    try:
        result = run(str(copied.path), "-o", str(out))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert out.stat().st_size == size
    assert peak < 8 * 1024 * 1024, peak


def test_a_restored_database_and_key_named_by_options(
    catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied = catalog.store(os.urandom(3 * SEGMENT + 5))
    url = catalog.engine.url.render_as_string(hide_password=False)
    # The environment names another database and no usable key: the options win.
    monkeypatch.setenv("GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("GATEWAY_MASTER_KEY", "file:nowhere/master.key")
    out = tmp_path / "restored.bin"
    result = run(str(copied.path), "-o", str(out), "--database-url", url,
                 "--master-key", "file:keys/master.key")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == copied.plaintext
    assert catalog.audit_outcomes() == ["started", "completed"]
    # Without the options, the environment's (wrong) key is used and refused in one line.
    result = run(str(copied.path), "-o", str(tmp_path / "other.bin"), "--database-url", url)
    assert result.exit_code == 1 and "master key file" in result.stderr
    assert not (tmp_path / "other.bin").exists()


def test_help_names_everything_the_recovery_needs() -> None:
    result = CliRunner().invoke(cli, ["decrypt", "--help"])
    assert result.exit_code == 0
    for needed in ("--database-url", "--master-key", "aws-kms:", "restored", "keys/README.md"):
        assert needed in result.output
