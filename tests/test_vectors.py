"""The gateway's own code against the key chain vectors of ``tests/vectors/``.

``tests/vectors/generate.py`` writes the vectors from ``docs/format.md`` and ``keys/README.md``
with a separate implementation that never imports the gateway. Here every link runs through
the gateway's code (master key file, keyring, envelope, audit chain and archives, and
``gateway decrypt``): each positive vector must give exactly its bytes, and each negative one
(``tampered`` names what was changed) must fail.
"""
from __future__ import annotations

import ast
import base64
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session, sessionmaker

from gateway.audit.archives import verify_archive
from gateway.audit.chain import row_hash, row_message
from gateway.audit.verification import verify
from gateway.crypto import envelope
from gateway.db import Base, make_engine, make_session_factory
from gateway.db.models import (
    AuditChainHead,
    AuditEvent,
    AuditKey,
    Organisation,
    OrgKeyVersion,
    StoredObject,
)
from gateway.errors import GatewayError
from gateway.keys import (
    FileMasterKey,
    Keyring,
    KeyringError,
    KmsMasterKey,
    encode_context,
)
from tests.test_cli_keys import GATEWAY_VARIABLES

VECTORS = Path(__file__).parent / "vectors"
CHAIN_FILES = ("master-wrap", "data-kek", "data-key-wrap", "full-chain", "object-negative",
               "range-plan", "audit-chain", "audit-archive")
CREATED = datetime(2026, 11, 1, tzinfo=timezone.utc)


def vector(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


def negatives(name: str, key: str = "negative") -> list[Any]:
    cases = vector(name)[key]
    return [pytest.param(case, id=case["tampered"][:60]) for case in cases]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


def key_file(directory: Path, text: str) -> FileMasterKey:
    """The master key file of a vector, written as `gateway keys init` would (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "master.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as sink:
        sink.write(text)
    return FileMasterKey(path)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def insert_rows(engine: Engine, rows: dict[str, list[dict[str, Any]]]) -> None:
    """The catalog rows of a vector (byte columns in hex), as a database dump would hold them."""
    blobs = {"wrapped_key", "wrapped_data_key", "envelope_salt"}
    tables = {"organisations": Organisation, "org_key_versions": OrgKeyVersion,
              "audit_keys": AuditKey, "objects": StoredObject}
    with engine.begin() as conn:
        org_ids = {r["id"] for r in rows.get("organisations", [])}
        for table in ("org_key_versions", "objects"):
            for row in rows.get(table, []):
                if row["org_id"] not in org_ids:  # a row moved to an organisation of its own
                    org_ids.add(row["org_id"])
                    conn.execute(insert(Organisation.__table__).values(
                        id=row["org_id"], name=f"Other {row['org_id'][:8]}",
                        encryption_mode="cse", created_at=CREATED))
        for table in ("organisations", "org_key_versions", "audit_keys", "objects"):
            for row in rows.get(table, []):
                values = {k: (h(v) if k in blobs and v is not None else v) for k, v in row.items()}
                values.setdefault("created_at", CREATED)
                conn.execute(insert(tables[table].__table__).values(**values))


@dataclass
class World:
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A database holding the worked example's rows, and a keyring on its master key file."""
    chain = vector("full-chain")
    engine = make_engine(f"sqlite:///{tmp_path / 'restored.db'}")
    Base.metadata.create_all(engine)
    insert_rows(engine, chain["rows"])
    sessions = make_session_factory(engine)
    keyring = Keyring(sessions, key_file(tmp_path / "keys", chain["master_key_file"]),
                      cache_seconds=0)
    yield World(engine, sessions, keyring)
    engine.dispose()


def test_every_chain_vector_file_is_there_and_up_to_date() -> None:
    names = {p.stem for p in VECTORS.glob("*.json")}
    assert set(CHAIN_FILES) <= names
    result = subprocess.run([sys.executable, str(VECTORS / "generate.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in CHAIN_FILES:
        data = vector(name)
        for case in data.get("negative", []) + (data.get("cases", []) if name ==
                                                 "object-negative" else []):
            assert case["tampered"], name


def test_the_generator_does_not_use_the_gateway() -> None:
    tree = ast.parse((VECTORS / "generate.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert "gateway" not in imported and "tests" not in imported
    assert imported <= {"__future__", "argparse", "base64", "gzip", "hashlib", "hmac", "json",
                        "struct", "sys", "pathlib", "cryptography"}


# --------------------------------------------------------------------------------------------
# Master wrap


@pytest.mark.parametrize("case", vector("master-wrap")["cases"], ids=lambda c: c["name"])
def test_master_wrap(case: dict[str, Any], tmp_path: Path) -> None:
    data = vector("master-wrap")
    master = key_file(tmp_path, data["master_key_file"])
    encoded = encode_context(case["context"], case["master_key_id"])
    assert encoded.hex() == case["context_bytes"]
    assert (b"gateway key wrap v1" + encoded).hex() == case["aad"]
    document = json.loads(data["master_key_file"])
    version_key = next(base64.b64decode(v["key"]) for v in document["versions"]
                       if v["version"] == case["master_key_version"])
    wrapped = envelope.wrap_key(version_key, h(case["key"]), encoded, nonce=h(case["nonce"]))
    assert wrapped.hex() == case["wrapped"]
    assert master.unwrap(h(case["wrapped"]), case["master_key_id"], case["context"]) == h(
        case["key"])


@pytest.mark.parametrize("case", negatives("master-wrap"))
def test_master_wrap_negative(case: dict[str, Any], tmp_path: Path) -> None:
    text = case.get("master_key_file", vector("master-wrap")["master_key_file"])
    master = key_file(tmp_path, text)
    with pytest.raises(KeyringError):
        master.unwrap(h(case["wrapped"]), case["master_key_id"], case["context"])


class RecordingKms:
    """A KMS client that records what the gateway sends (the context is the point here)."""

    ARN = "arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def encrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("Encrypt", kwargs))
        return {"CiphertextBlob": b"kms:" + kwargs["Plaintext"], "KeyId": self.ARN}

    def decrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("Decrypt", kwargs))
        return {"Plaintext": kwargs["CiphertextBlob"][4:], "KeyId": self.ARN}

    def describe_key(self, **kwargs: Any) -> dict[str, Any]:
        return {"KeyMetadata": {"Arn": self.ARN, "KeyState": "Enabled"}}


def test_kms_encryption_context(tmp_path: Path) -> None:
    """The aws-kms: provider sends exactly the documented EncryptionContext, and the ARN."""
    cases = {c["name"]: c for c in vector("master-wrap")["cases"]}
    org_case = cases["organisation key version 1"]
    audit_case = cases["audit chain key of the organisation's chain"]
    org_id = org_case["context"]["org"]
    engine = make_engine(f"sqlite:///{tmp_path / 'kms.db'}")
    Base.metadata.create_all(engine)
    insert_rows(engine, {"organisations": [{"id": org_id, "name": "Clinic",
                                            "encryption_mode": "cse"}]})
    client = RecordingKms()
    keyring = Keyring(make_session_factory(engine), KmsMasterKey("alias/gateway", client),
                      cache_seconds=0)
    with keyring.sessions() as session:  # type: ignore[union-attr]
        row = keyring.create_org_key(session, org_id)
        session.commit()
        assert row.master_key_id == RecordingKms.ARN
        keyring.data_kek(session, org_id, 1)
        keyring.audit_key(session, org_id)
        session.commit()
        keyring.audit_key(session, org_id)
    engine.dispose()
    contexts = [(op, kw["EncryptionContext"], kw.get("KeyId")) for op, kw in client.calls]
    assert contexts == [
        ("Encrypt", org_case["kms_encryption_context"], "alias/gateway"),
        ("Decrypt", org_case["kms_encryption_context"], RecordingKms.ARN),
        ("Encrypt", audit_case["kms_encryption_context"], "alias/gateway"),
        ("Decrypt", audit_case["kms_encryption_context"], RecordingKms.ARN),
    ]


# --------------------------------------------------------------------------------------------
# Derived keys and the data key wrap


@pytest.mark.parametrize("case", vector("data-kek")["cases"], ids=lambda c: c["name"])
def test_derived_keys(case: dict[str, Any], world: World) -> None:
    assert case["salt"] == "00" * 32
    with world.sessions() as session:
        derive = world.keyring.data_kek if case["purpose"] == "data-kek" else \
            world.keyring.ssec_key
        assert derive(session, case["org_id"], case["version"]).hex() == case["derived"]


def test_data_key_wrap(world: World) -> None:
    data = vector("data-key-wrap")
    context = envelope.data_key_context(data["org_id"], data["storage_id"], data["key_version"])
    assert context.hex() == data["context"]
    wrapped = envelope.wrap_key(h(data["kek"]), h(data["key"]), context, nonce=h(data["nonce"]))
    assert wrapped.hex() == data["wrapped"]
    with world.sessions() as session:
        assert world.keyring.data_kek(session, data["org_id"], 2).hex() == data["kek"]
        assert world.keyring.unwrap_data_key(
            session, data["org_id"], data["storage_id"], data["key_version"], wrapped
        ) == h(data["key"])


@pytest.mark.parametrize("case", negatives("data-key-wrap"))
def test_data_key_wrap_negative(case: dict[str, Any]) -> None:
    context = envelope.data_key_context(case["org_id"], case["storage_id"], case["key_version"])
    with pytest.raises(envelope.DecryptionError):
        envelope.unwrap_key(h(case["kek"]), h(case["wrapped"]), context)


# --------------------------------------------------------------------------------------------
# Objects and ranges


@pytest.mark.parametrize("case", negatives("object-negative", "cases"))
@pytest.mark.parametrize("chunk", [None, 7])
def test_object_negative(case: dict[str, Any], chunk: int | None) -> None:
    data = h(case["object"])
    chunks = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    with pytest.raises(envelope.DecryptionError):
        for _ in envelope.decrypt_stream(h(case["data_key"]), chunks, org_id=case["org_id"],
                                         object_id=case["object_id"]):
            pass


def _range_decryptor(data: dict[str, Any]) -> envelope.Decryptor:
    obj = h(data["object"])
    return envelope.Decryptor(h(data["data_key"]), obj[:envelope.HEADER_SIZE],
                              org_id=data["org_id"], object_id=data["object_id"])


@pytest.mark.parametrize("case", vector("range-plan")["ranges"],
                         ids=lambda c: f"{c['start']}-{c['end_inclusive']}")
def test_range_plan(case: dict[str, Any]) -> None:
    data = vector("range-plan")
    plan = envelope.plan_range(data["plaintext_size"], data["segment_size"], case["start"],
                               case["end_inclusive"])
    assert {name: getattr(plan, name) for name in (
        "first_segment", "last_segment", "ciphertext_start", "ciphertext_end_inclusive", "skip",
        "length")} == {name: case[name] for name in (
            "first_segment", "last_segment", "ciphertext_start", "ciphertext_end_inclusive",
            "skip", "length")}
    assert plan.http_range == case["http_range"]
    fetched = h(case["fetched"])
    assert fetched == h(data["object"])[plan.ciphertext_start:plan.ciphertext_end_inclusive + 1]
    pieces = [fetched[i:i + 5] for i in range(0, len(fetched), 5)]
    out = b"".join(envelope.decrypt_range(_range_decryptor(data), plan, data["plaintext_size"],
                                          pieces))
    assert out.hex() == case["plaintext"]


@pytest.mark.parametrize("case", negatives("range-plan"))
def test_range_negative(case: dict[str, Any]) -> None:
    data = vector("range-plan")
    plan = envelope.plan_range(case["plaintext_size"], data["segment_size"], case["start"],
                               case["end_inclusive"])
    with pytest.raises(envelope.DecryptionError):
        for _ in envelope.decrypt_range(_range_decryptor(data), plan, case["plaintext_size"],
                                        [h(case["fetched"])]):
            pass


@pytest.mark.parametrize("case", vector("range-plan")["unsatisfiable"],
                         ids=lambda c: f"{c['start']}-{c['end_inclusive']}")
def test_range_unsatisfiable(case: dict[str, Any]) -> None:
    data = vector("range-plan")
    with pytest.raises(ValueError):
        envelope.plan_range(data["plaintext_size"], data["segment_size"], case["start"],
                            case["end_inclusive"])


# --------------------------------------------------------------------------------------------
# The full chain: master key file, catalog rows, object bytes -> plaintext


def _decrypt_in_process(world: World, obj: bytes) -> bytes:
    with world.sessions() as session:
        row = session.get(StoredObject, vector("full-chain")["rows"]["objects"][0]["id"])
        assert row is not None
        data_key = world.keyring.unwrap_data_key(session, row.org_id, row.storage_id,
                                                 row.key_version, row.wrapped_data_key)
        org_id, storage_id, digest = row.org_id, row.storage_id, row.sha256
    plaintext = b"".join(envelope.decrypt_stream(data_key, [obj], org_id=org_id,
                                                 object_id=storage_id))
    if hashlib.sha256(plaintext).hexdigest() != digest:
        raise AssertionError("catalog digest")
    return plaintext


def test_full_chain_in_process(world: World) -> None:
    data = vector("full-chain")
    steps = data["steps"]
    row = data["rows"]["objects"][0]
    with world.sessions() as session:
        assert world.keyring.data_kek(session, row["org_id"], 2).hex() == steps["data_kek"]
    assert envelope.data_key_context(row["org_id"], row["storage_id"], 2).hex() == \
        steps["data_key_context"]
    assert _decrypt_in_process(world, h(data["object"])).hex() == data["plaintext"]


def _patched_rows(case: dict[str, Any]) -> tuple[dict[str, Any], str, bytes]:
    data = vector("full-chain")
    rows = json.loads(json.dumps(data["rows"]))
    rows["objects"][0].update(case.get("objects", {}))
    for row in rows["org_key_versions"]:
        row.update(case.get("org_key_versions", {}).get(str(row["version"]), {}))
    return rows, case.get("master_key_file", data["master_key_file"]), h(
        case.get("object", data["object"]))


@pytest.mark.parametrize("case", negatives("full-chain"))
def test_full_chain_negative_in_process(case: dict[str, Any], tmp_path: Path) -> None:
    rows, key_text, obj = _patched_rows(case)
    engine = make_engine(f"sqlite:///{tmp_path / 'tampered.db'}")
    Base.metadata.create_all(engine)
    insert_rows(engine, rows)
    world = World(engine, make_session_factory(engine), Keyring(
        make_session_factory(engine), key_file(tmp_path / "keys", key_text), cache_seconds=0))
    try:
        with pytest.raises((GatewayError, AssertionError)) as caught:
            _decrypt_in_process(world, obj)
        if case["checked_by"] == "catalog":
            assert isinstance(caught.value, AssertionError)
        else:
            assert isinstance(caught.value, GatewayError)
    finally:
        engine.dispose()


@pytest.fixture
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty database made by the migrations (what `gateway db upgrade` leaves)."""
    from gateway.db.migrate import upgrade

    path = tmp_path_factory.mktemp("migrated") / "empty.db"
    upgrade(f"sqlite:///{path}")
    return path


def _run_decrypt(tmp_path: Path, migrated: Path, monkeypatch: pytest.MonkeyPatch,
                 rows: dict[str, Any], key_text: str, obj: bytes) -> tuple[Any, Path]:
    for name in GATEWAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    database = tmp_path / "restored.db"
    shutil.copy(migrated, database)
    engine = make_engine(f"sqlite:///{database}")
    insert_rows(engine, rows)
    engine.dispose()
    key_file(tmp_path / "keys", key_text)
    copied = tmp_path / "copied" / rows["objects"][0]["storage_id"]
    copied.parent.mkdir()
    copied.write_bytes(obj)
    out = tmp_path / "restored" / "plaintext.bin"
    out.parent.mkdir()
    from gateway.cli import cli

    result = CliRunner().invoke(cli, [
        "decrypt", str(copied), "-o", str(out), "--database-url", f"sqlite:///{database}",
        "--master-key", f"file:{tmp_path / 'keys' / 'master.key'}",
    ], catch_exceptions=False)
    return result, out


def test_full_chain_with_gateway_decrypt(
    tmp_path: Path, migrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = vector("full-chain")
    result, out = _run_decrypt(tmp_path, migrated, monkeypatch, data["rows"],
                               data["master_key_file"], h(data["object"]))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().hex() == data["plaintext"]


@pytest.mark.parametrize("case", negatives("full-chain"))
def test_full_chain_negative_with_gateway_decrypt(
    case: dict[str, Any], tmp_path: Path, migrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows, key_text, obj = _patched_rows(case)
    result, out = _run_decrypt(tmp_path, migrated, monkeypatch, rows, key_text, obj)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("gateway: ")
    assert list(out.parent.iterdir()) == []


# --------------------------------------------------------------------------------------------
# The audit chain and its archive


def _audit_world(tmp_path: Path, rows: list[dict[str, Any]], head: dict[str, Any]) -> World:
    data = vector("audit-chain")
    engine = make_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    Base.metadata.create_all(engine)
    org_id = data["audit_key_row"]["chain"]
    chain_rows = vector("full-chain")["rows"]
    insert_rows(engine, {"organisations": chain_rows["organisations"],
                         "org_key_versions": chain_rows["org_key_versions"],
                         "audit_keys": [data["audit_key_row"]]})
    with engine.begin() as conn:
        for row in rows:
            conn.execute(insert(AuditEvent.__table__).values(
                **dict(row, occurred_at=parse_time(row["occurred_at"]))))
        conn.execute(insert(AuditChainHead.__table__).values(**head))
    assert org_id == head["chain"]
    sessions = make_session_factory(engine)
    return World(engine, sessions, Keyring(
        sessions, key_file(tmp_path / "keys", data["master_key_file"]), cache_seconds=0))


def test_audit_chain(tmp_path: Path) -> None:
    data = vector("audit-chain")
    key = h(data["chain_key"])
    for row, message in zip(data["rows"], data["messages"]):
        fields = dict(row, occurred_at=parse_time(row["occurred_at"]))
        assert row_message(row["prev_hash"], fields).hex() == message
        assert row_hash(key, row["prev_hash"], fields) == row["row_hash"]
    world = _audit_world(tmp_path, data["rows"], data["head"])
    try:
        with world.sessions() as session:
            assert world.keyring.audit_key(session, data["head"]["chain"]) == key
            report = verify(session, world.keyring)
        assert report.ok and report.rows == len(data["rows"])
    finally:
        world.engine.dispose()


@pytest.mark.parametrize("case", negatives("audit-chain"))
def test_audit_chain_negative(case: dict[str, Any], tmp_path: Path) -> None:
    world = _audit_world(tmp_path, case["rows"], case["head"])
    try:
        with world.sessions() as session:
            fault = verify(session, world.keyring).first_fault
        assert fault is not None
        assert (fault.reason, fault.seq) == (case["reason"], case["seq"])
    finally:
        world.engine.dispose()


class ArchiveBucket:
    """The few store calls the archive functions make, on objects held in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}

    def head(self, key: str) -> dict[str, Any]:
        return {"metadata": self.objects[key][1], "size": len(self.objects[key][0])}

    def get_bytes(self, key: str) -> bytes:
        return self.objects[key][0]


@dataclass
class ArchiveServices:
    sessions: Any
    keyring: Any
    store: Any
    audit: Any = None


def test_audit_archive(tmp_path: Path) -> None:
    data = vector("audit-archive")
    assert gzip.decompress(h(data["gzip"])).decode("utf-8") == data["jsonl"]
    assert b"".join(envelope.decrypt_stream(
        h(data["data_key"]), [h(data["object"])], org_id=data["org_id"],
        object_id=data["storage_id"])) == h(data["gzip"])
    assert data["s3_key"] == f"audit-archive/{data['org_id']}/2026/11.jsonl.gz"
    world = _audit_world(tmp_path, data["rows"], vector("audit-chain")["head"])
    try:
        bucket = ArchiveBucket()
        bucket.objects[data["s3_key"]] = (h(data["object"]), data["metadata"])
        report = verify_archive(ArchiveServices(world.sessions, world.keyring, bucket),
                                data["org_id"], data["year"], data["month"])
        assert report.ok, report.problems
        assert report.rows == len(data["rows"])
    finally:
        world.engine.dispose()


@pytest.mark.parametrize("case", negatives("audit-archive"))
def test_audit_archive_negative(case: dict[str, Any], tmp_path: Path) -> None:
    data = vector("audit-archive")
    world = _audit_world(tmp_path, data["rows"], vector("audit-chain")["head"])
    try:
        bucket = ArchiveBucket()
        key = f"audit-archive/{data['org_id']}/{case['year']:04d}/{case['month']:02d}.jsonl.gz"
        bucket.objects[key] = (h(case["object"]), case["metadata"])
        services = ArchiveServices(world.sessions, world.keyring, bucket)
        try:
            report = verify_archive(services, data["org_id"], case["year"], case["month"])
        except GatewayError:
            return  # refused outright (a wrapped key that does not unwrap)
        assert not report.ok
    finally:
        world.engine.dispose()
