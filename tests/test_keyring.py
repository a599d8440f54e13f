"""The key hierarchy: master key providers, organisation keys, data keys, audit keys, rotation."""
from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway.config import Settings
from gateway.crypto import envelope
from gateway.db import make_engine, make_session_factory
from gateway.db.migrate import upgrade
from gateway.db.models import (
    AuditKey,
    KeyState,
    Organisation,
    OrgKeyVersion,
    StoredObject,
    new_id,
)
from gateway.keys import (
    FileMasterKey,
    KeyInUse,
    Keyring,
    KeyringError,
    MasterKey,
    UnknownKeyVersion,
    add_master_key_version,
    encode_context,
    init_master_key_file,
    load_master_key,
    retire_master_key_version,
)

# --------------------------------------------------------------------------------------------
# Helpers (also used by the command-line tests)


def file_keys(path: Path) -> list[bytes]:
    """Every master key in a key file (the tests look for them where they must not be)."""
    document = json.loads(path.read_text())
    return [base64.b64decode(v["key"]) for v in document["versions"]]


def make_org(sessions: sessionmaker[Session], keyring: Keyring | None, name: str) -> str:
    """An organisation with key version 1 (when a keyring is given); returns its id."""
    with sessions() as session:
        org = Organisation(name=name)
        session.add(org)
        session.flush()
        if keyring is not None:
            keyring.create_org_key(session, org.id)
        session.commit()
        return org.id


def add_object(
    session: Session,
    org_id: str,
    key_version: int,
    *,
    storage_id: str | None = None,
    wrapped_data_key: bytes | None = b"\0" * 60,
    envelope_salt: bytes | None = None,
    size: int = 10,
    sha256: str = "0" * 64,
    deleted: bool = False,
) -> StoredObject:
    """Insert a catalog row (not committed)."""
    from gateway.db.models import utcnow

    storage_id = storage_id or new_id()
    row = StoredObject(
        org_id=org_id,
        path=f"uploads/{storage_id}.bin",
        category="uploads",
        size=size,
        content_type="application/octet-stream",
        sha256=sha256,
        encryption="cse",
        key_version=key_version,
        wrapped_data_key=wrapped_data_key,
        envelope_salt=envelope_salt,
        storage_id=storage_id,
        s3_key=f"{org_id}/uploads/{storage_id}",
        deleted_at=utcnow() if deleted else None,
    )
    session.add(row)
    session.flush()
    return row


class CountingMaster:
    """A master key provider that counts unwraps (to observe the keyring's cache)."""

    def __init__(self, inner: MasterKey) -> None:
        self.inner = inner
        self.unwraps = 0

    @property
    def key_id(self) -> str:
        return self.inner.key_id

    def wrap(self, key: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        return self.inner.wrap(key, context)

    def unwrap(self, blob: bytes, master_key_id: str, context: Mapping[str, str]) -> bytes:
        self.unwraps += 1
        return self.inner.unwrap(blob, master_key_id, context)

    def check(self) -> None:
        self.inner.check()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_no_key_material(text: str, secrets_: list[bytes]) -> None:
    for secret in secrets_:
        for form in (secret.hex(), base64.b64encode(secret).decode(), repr(secret)[2:-1]):
            assert form not in text


# --------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "master.key"
    init_master_key_file(path)
    return path


@pytest.fixture
def master(key_path: Path) -> FileMasterKey:
    return FileMasterKey(key_path)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def keyring(sessions: sessionmaker[Session], master: FileMasterKey) -> Keyring:
    return Keyring(sessions, master)


@pytest.fixture
def org(sessions: sessionmaker[Session], keyring: Keyring) -> str:
    return make_org(sessions, keyring, "Clinic")


# --------------------------------------------------------------------------------------------
# The master key file


def test_init_writes_a_private_file_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "master.key"
    init_master_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document = json.loads(path.read_text())
    assert document["format"] == "gateway-master-key" and document["current"] == 1
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        init_master_key_file(path)
    assert path.read_bytes() == before
    assert FileMasterKey(path).key_id == "file:1"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o620], ids=lambda m: f"{m:04o}")
def test_file_readable_by_others_is_refused(key_path: Path, mode: int) -> None:
    os.chmod(key_path, mode)
    provider = FileMasterKey(key_path)
    with pytest.raises(KeyringError) as caught:
        provider.check()
    message = str(caught.value)
    assert str(key_path) in message and "chmod 600" in message
    assert_no_key_material(message + repr(provider), file_keys(key_path))


def test_permissions_are_checked_again_after_loading(key_path: Path) -> None:
    provider = FileMasterKey(key_path)
    provider.wrap(b"k" * 32, {"a": "b"})
    os.chmod(key_path, 0o644)
    with pytest.raises(KeyringError, match="group or others"):
        provider.wrap(b"k" * 32, {"a": "b"})


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="missing.*gateway keys init"):
        FileMasterKey(tmp_path / "nope.key").check()


def _write_private(path: Path, text: str) -> None:
    path.write_text(text)
    os.chmod(path, 0o600)


GOOD_KEY = base64.b64encode(b"S" * 32).decode()


@pytest.mark.parametrize(
    "text",
    [
        "not json " + GOOD_KEY,
        json.dumps({"format": "something-else", "current": 1,
                    "versions": [{"version": 1, "key": GOOD_KEY}]}),
        json.dumps({"format": "gateway-master-key", "current": 1, "versions": []}),
        json.dumps({"format": "gateway-master-key", "current": 2,
                    "versions": [{"version": 1, "key": GOOD_KEY}]}),
        json.dumps({"format": "gateway-master-key", "current": 1,
                    "versions": [{"version": 1, "key": GOOD_KEY[:-8]}]}),
        json.dumps({"format": "gateway-master-key", "current": 1,
                    "versions": [{"version": 1, "key": "!!" + GOOD_KEY}]}),
        json.dumps({"format": "gateway-master-key", "current": 1,
                    "versions": [{"version": 1, "key": GOOD_KEY},
                                 {"version": 1, "key": GOOD_KEY}]}),
        json.dumps({"format": "gateway-master-key", "current": True,
                    "versions": [{"version": True, "key": GOOD_KEY}]}),
    ],
    ids=["not-json", "format", "no-versions", "bad-current", "short-key", "bad-base64",
         "duplicate", "bool-version"],
)
def test_malformed_file_is_refused_without_quoting_it(tmp_path: Path, text: str) -> None:
    path = tmp_path / "master.key"
    _write_private(path, text)
    with pytest.raises(KeyringError, match="malformed") as caught:
        FileMasterKey(path).check()
    assert str(path) in str(caught.value)
    assert_no_key_material(str(caught.value), [b"S" * 32])
    assert GOOD_KEY[:16] not in str(caught.value)


def test_file_round_trip_and_versions(key_path: Path) -> None:
    provider = FileMasterKey(key_path)
    context = {"org": "o1", "purpose": "org-key", "version": "1"}
    blob1, id1 = provider.wrap(b"A" * 32, context)
    assert id1 == "file:1"
    assert provider.unwrap(blob1, id1, context) == b"A" * 32

    assert add_master_key_version(key_path) == 2
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # The same instance sees the new version without being told.
    assert provider.key_id == "file:2" and provider.versions == [1, 2]
    blob2, id2 = provider.wrap(b"B" * 32, context)
    assert id2 == "file:2"
    assert provider.unwrap(blob2, id2, context) == b"B" * 32
    assert provider.unwrap(blob1, id1, context) == b"A" * 32
    with pytest.raises(KeyringError):
        provider.unwrap(blob1, "file:2", context)  # the wrong version never unwraps

    with pytest.raises(KeyringError, match="current"):
        retire_master_key_version(key_path, 2)
    retire_master_key_version(key_path, 1)
    assert provider.versions == [2]
    with pytest.raises(KeyringError, match="not in"):
        provider.unwrap(blob1, id1, context)
    with pytest.raises(KeyringError, match="no version 7"):
        retire_master_key_version(key_path, 7)
    assert [p.name for p in key_path.parent.iterdir()] == ["master.key"]  # no temporary left


def test_wrapping_is_bound_to_its_context(master: FileMasterKey) -> None:
    context = {"org": "o1", "purpose": "org-key", "version": "1"}
    blob, key_id = master.wrap(b"K" * 32, context)
    for other in (
        {"org": "o2", "purpose": "org-key", "version": "1"},
        {"org": "o1", "purpose": "audit", "version": "1"},
        {"org": "o1", "purpose": "org-key", "version": "2"},
        {"org": "o1", "purpose": "org-key"},
    ):
        with pytest.raises(KeyringError) as caught:
            master.unwrap(blob, key_id, other)
        assert "failed to unwrap" in str(caught.value)
    with pytest.raises(KeyringError, match="not a key file version"):
        master.unwrap(blob, "arn:aws:kms:eu-west-1:1:key/x", context)


def test_context_encoding_is_canonical() -> None:
    assert encode_context({"a": "1", "b": "2"}, "file:1") == encode_context(
        {"b": "2", "a": "1"}, "file:1")
    assert encode_context({"a": "bc"}, "file:1") != encode_context({"ab": "c"}, "file:1")
    assert encode_context({"a": "b"}, "file:1") != encode_context({"a": "b"}, "file:2")


def test_another_key_file_does_not_unwrap(tmp_path: Path, master: FileMasterKey) -> None:
    other_path = tmp_path / "other.key"
    init_master_key_file(other_path)
    blob, key_id = master.wrap(b"K" * 32, {"x": "y"})
    with pytest.raises(KeyringError, match="wrong key file"):
        FileMasterKey(other_path).unwrap(blob, key_id, {"x": "y"})


def test_load_master_key_from_settings(key_path: Path) -> None:
    provider = load_master_key(Settings(master_key=f"file:{key_path}"))
    assert isinstance(provider, FileMasterKey) and provider.path == key_path


# --------------------------------------------------------------------------------------------
# AWS KMS (moto, which checks the encryption context)


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    moto = pytest.importorskip("moto")
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "GATEWAY_KMS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    with moto.mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def test_kms_round_trip_and_context_enforced(kms) -> None:  # type: ignore[no-untyped-def]
    from gateway.keys import KmsMasterKey

    key = kms.create_key(Description="gateway master")["KeyMetadata"]
    provider = KmsMasterKey(key["KeyId"], kms)
    provider.check()
    assert provider.key_id == key["Arn"]
    context = {"org": "o1", "purpose": "org-key", "version": "1"}
    blob, key_id = provider.wrap(b"K" * 32, context)
    assert key_id == key["Arn"]
    assert provider.unwrap(blob, key_id, context) == b"K" * 32
    with pytest.raises(KeyringError) as caught:
        provider.unwrap(blob, key_id, {**context, "org": "o2"})
    assert str(caught.value).startswith("KMS Decrypt failed")
    assert key["KeyId"] not in str(caught.value)
    assert_no_key_material(str(caught.value) + repr(provider), [b"K" * 32])

    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(KeyringError, match="not enabled"):
        provider.check()


def test_kms_missing_key_is_a_keyring_error(kms) -> None:  # type: ignore[no-untyped-def]
    from gateway.keys import KmsMasterKey

    provider = KmsMasterKey("alias/does-not-exist", kms)
    with pytest.raises(KeyringError, match="KMS DescribeKey failed"):
        provider.check()
    with pytest.raises(KeyringError, match="KMS Encrypt failed"):
        provider.wrap(b"K" * 32, {"org": "o1"})


def test_keyring_over_kms(
    kms, sessions: sessionmaker[Session]  # type: ignore[no-untyped-def]
) -> None:
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/gateway", TargetKeyId=key["KeyId"])
    provider = load_master_key(Settings(master_key="aws-kms:alias/gateway"))
    keyring = Keyring(sessions, provider)
    org_id = make_org(sessions, keyring, "KMS Clinic")
    with sessions() as session:
        row = session.scalars(select(OrgKeyVersion)).one()
        assert row.master_key_id == key["Arn"]
        version, wrapped = keyring.wrap_data_key(session, org_id, "obj", b"D" * 32)
        keyring.forget()
        assert keyring.unwrap_data_key(session, org_id, "obj", version, wrapped) == b"D" * 32
        keyring.check(session)
        assert keyring.master_rewrap_pending(session) == 0

        # The operator points GATEWAY_MASTER_KEY at a new KMS key: rotate-master rewraps.
        new_key = kms.create_key()["KeyMetadata"]
        new_setting = Settings(master_key=f"aws-kms:{new_key['KeyId']}")
        rotated = Keyring(sessions, load_master_key(new_setting))
        assert rotated.master_rewrap_pending(session) == 1
        assert rotated.rotate_master(session) == 1
        assert rotated.rotate_master(session) == 0
        assert session.scalars(select(OrgKeyVersion)).one().master_key_id == new_key["Arn"]
        assert rotated.unwrap_data_key(session, org_id, "obj", version, wrapped) == b"D" * 32


def test_kms_endpoint_setting_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.keys import make_kms_client

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("GATEWAY_KMS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert make_kms_client().meta.endpoint_url == "http://127.0.0.1:9"
    monkeypatch.delenv("GATEWAY_KMS_ENDPOINT_URL")
    assert "amazonaws.com" in make_kms_client().meta.endpoint_url


# --------------------------------------------------------------------------------------------
# Organisation keys and data keys


def test_org_key_rotation_keeps_old_versions_readable(
    sessions: sessionmaker[Session], keyring: Keyring, org: str
) -> None:
    with sessions() as session:
        assert keyring.current_version(session, org) == 1
        v1, wrapped1 = keyring.wrap_data_key(session, org, "object-1", b"1" * 32)
        assert v1 == 1
        assert keyring.create_org_key(session, org).version == 2
        session.commit()
        states = dict(session.execute(select(OrgKeyVersion.version, OrgKeyVersion.state)).all())
        assert states == {1: KeyState.ACTIVE.value, 2: KeyState.CURRENT.value}
        assert keyring.current_version(session, org) == 2
        v2, wrapped2 = keyring.wrap_data_key(session, org, "object-2", b"2" * 32)
        assert v2 == 2
        keyring.forget()
        assert keyring.unwrap_data_key(session, org, "object-1", 1, wrapped1) == b"1" * 32
        assert keyring.unwrap_data_key(session, org, "object-2", 2, wrapped2) == b"2" * 32

        moved = keyring.rewrap_data_key(session, org, "object-1", 1, wrapped1, 2)
        assert keyring.unwrap_data_key(session, org, "object-1", 2, moved) == b"1" * 32


def test_org_key_is_stored_only_wrapped(
    sessions: sessionmaker[Session], keyring: Keyring, org: str, key_path: Path
) -> None:
    with sessions() as session:
        row = session.scalars(select(OrgKeyVersion)).one()
        org_key = keyring._org_key(session, org, 1)
        assert len(org_key) == 32 and org_key not in row.wrapped_key
        assert row.master_key_id == "file:1"
        assert_no_key_material(repr(row.wrapped_key), [org_key, *file_keys(key_path)])


def test_derived_keys_are_distinct_and_stable(
    sessions: sessionmaker[Session], keyring: Keyring, org: str
) -> None:
    other = make_org(sessions, keyring, "Other Clinic")
    with sessions() as session:
        kek = keyring.data_kek(session, org, 1)
        ssec = keyring.ssec_key(session, org, 1)
        org_key = keyring._org_key(session, org, 1)
        assert len(kek) == len(ssec) == 32
        assert len({kek, ssec, org_key}) == 3
        keyring.forget()
        assert keyring.data_kek(session, org, 1) == kek
        assert keyring.ssec_key(session, org, 1) == ssec
        assert keyring.data_kek(session, other, 1) != kek
        assert keyring.ssec_key(session, other, 1) != ssec


def test_wrapped_data_key_is_bound_to_object_org_and_version(
    sessions: sessionmaker[Session], keyring: Keyring, org: str
) -> None:
    other = make_org(sessions, keyring, "Other Clinic")
    with sessions() as session:
        keyring.create_org_key(session, org)
        session.commit()
        version, wrapped = keyring.wrap_data_key(session, org, "object-1", b"D" * 32)
        for args in ((org, "object-2", version), (other, "object-1", 1), (org, "object-1", 1)):
            # An integrity failure of the object, not of the keyring.
            with pytest.raises(envelope.DecryptionError):
                keyring.unwrap_data_key(session, args[0], args[1], args[2], wrapped)
        tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
        with pytest.raises(envelope.DecryptionError):
            keyring.unwrap_data_key(session, org, "object-1", version, tampered)


def test_missing_versions_and_orgs_are_keyring_errors(
    sessions: sessionmaker[Session], keyring: Keyring, org: str
) -> None:
    bare = make_org(sessions, None, "No Keys Yet")
    with sessions() as session:
        with pytest.raises(UnknownKeyVersion, match="no key version 9"):
            keyring.data_kek(session, org, 9)
        with pytest.raises(UnknownKeyVersion, match="no current key version"):
            keyring.wrap_data_key(session, bare, "object", b"D" * 32)
        with pytest.raises(LookupError):
            keyring.create_org_key(session, "0" * 32)
    assert issubclass(UnknownKeyVersion, KeyringError)


def test_wrong_master_key_file_is_a_keyring_error(
    sessions: sessionmaker[Session], keyring: Keyring, org: str, tmp_path: Path
) -> None:
    other_path = tmp_path / "other.key"
    init_master_key_file(other_path)
    stranger = Keyring(sessions, FileMasterKey(other_path))
    with sessions() as session:
        keyring.check(session)
        with pytest.raises(KeyringError, match="wrong key file"):
            stranger.check(session)
        with pytest.raises(KeyringError):
            stranger.wrap_data_key(session, org, "object", b"D" * 32)


def test_unwrapped_keys_are_cached_for_a_limited_time(
    sessions: sessionmaker[Session], master: FileMasterKey, org: str
) -> None:
    counting = CountingMaster(master)
    clock = FakeClock()
    keyring = Keyring(sessions, counting, cache_seconds=300, clock=clock)
    with sessions() as session:
        keyring.data_kek(session, org, 1)
        keyring.ssec_key(session, org, 1)
        keyring.data_kek(session, org, 1)
        assert counting.unwraps == 1
        clock.now += 299
        keyring.data_kek(session, org, 1)
        assert counting.unwraps == 1
        clock.now += 2
        keyring.data_kek(session, org, 1)
        assert counting.unwraps == 2
        keyring.forget()
        keyring.data_kek(session, org, 1)
        assert counting.unwraps == 3

    uncached = Keyring(sessions, counting, cache_seconds=0)
    with sessions() as session:
        uncached.data_kek(session, org, 1)
        uncached.data_kek(session, org, 1)
    assert counting.unwraps == 5


def test_cache_is_bounded(sessions: sessionmaker[Session], master: FileMasterKey, org: str) -> None:
    keyring = Keyring(sessions, master, max_cached=2)
    with sessions() as session:
        keyring.create_org_key(session, org)
        keyring.create_org_key(session, org)
        session.commit()
        for version in (1, 2, 3):
            keyring.data_kek(session, org, version)
        keyring.audit_key(session, "system")
        session.commit()
        keyring.audit_key(session, "system")
    assert len(keyring._cache) == 2


# --------------------------------------------------------------------------------------------
# Audit keys


def test_audit_key_is_created_once_and_stored_wrapped(
    sessions: sessionmaker[Session], keyring: Keyring
) -> None:
    with sessions() as session:
        key = keyring.audit_key(session, "system")
        session.commit()
        assert len(key) == 32
        assert keyring.audit_key(session, "system") == key
        row = session.get(AuditKey, "system")
        assert row is not None and key not in row.wrapped_key and row.master_key_id == "file:1"
        assert keyring.audit_key(session, "another-chain") != key
        session.commit()
    with sessions() as session:
        assert Keyring(sessions, keyring.master).audit_key(session, "system") == key


def test_audit_key_of_a_rolled_back_transaction_is_not_kept(
    sessions: sessionmaker[Session], keyring: Keyring
) -> None:
    with sessions() as session:
        lost = keyring.audit_key(session, "system")
        session.rollback()
    other = Keyring(sessions, keyring.master)
    with sessions() as session:
        winner = other.audit_key(session, "system")
        session.commit()
    assert winner != lost
    with sessions() as session:
        assert keyring.audit_key(session, "system") == winner


def test_audit_key_created_once_when_two_processes_race(
    sessions: sessionmaker[Session], master: FileMasterKey, db_url: str
) -> None:
    """Two keyrings (two processes) create the same chain's key at the same moment."""
    keyrings = [Keyring(sessions, master), Keyring(sessions, master)]
    results: list[bytes] = []
    errors: list[BaseException] = []
    # On PostgreSQL both look, find nothing, and only then insert: one insert must lose. On
    # SQLite the second transaction cannot even start before the first commits.
    race = db_url.startswith("postgresql")
    barrier = threading.Barrier(2, timeout=10)

    def create(keyring: Keyring) -> None:
        try:
            with sessions() as session:
                if race:
                    original = session.get

                    def get_then_wait(*args, **kwargs):  # type: ignore[no-untyped-def]
                        found = original(*args, **kwargs)
                        barrier.wait()
                        return found

                    session.get = get_then_wait  # type: ignore[method-assign]
                key = keyring.audit_key(session, "org-race")
                session.commit()
                results.append(key)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(k,)) for k in keyrings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(results) == 2 and results[0] == results[1]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(AuditKey)) == 1
        assert Keyring(sessions, master).audit_key(session, "org-race") == results[0]


# --------------------------------------------------------------------------------------------
# Master rotation


def test_rotate_master_rewraps_everything_once_and_resumes(
    sessions: sessionmaker[Session], keyring: Keyring, org: str, key_path: Path
) -> None:
    other = make_org(sessions, keyring, "Other Clinic")
    with sessions() as session:
        keyring.create_org_key(session, org)
        audit = keyring.audit_key(session, "system")
        session.commit()
        version, wrapped = keyring.wrap_data_key(session, org, "object", b"D" * 32)
        before = {
            (r.org_id, r.version): keyring._org_key(session, r.org_id, r.version)
            for r in session.scalars(select(OrgKeyVersion))
        }
        assert keyring.master_rewrap_pending(session) == 0
        assert keyring.rotate_master(session) == 0

        add_master_key_version(key_path)
        assert keyring.master_rewrap_pending(session) == 4  # three org keys, one audit key
        # Interrupted after two rows: those are committed, the rest still wait.
        steps = keyring.iter_rotate_master(session)
        next(steps)
        next(steps)
        steps.close()
        assert keyring.master_rewrap_pending(session) == 2
        assert keyring.rotate_master(session) == 2
        assert keyring.rotate_master(session) == 0
        assert keyring.master_key_usage(session) == {"file:2": 4}

    retire_master_key_version(key_path, 1)
    fresh = Keyring(sessions, FileMasterKey(key_path))
    with sessions() as session:
        for (org_id, number), key in before.items():
            assert fresh._org_key(session, org_id, number) == key
        assert fresh.audit_key(session, "system") == audit
        assert fresh.unwrap_data_key(session, org, "object", version, wrapped) == b"D" * 32
        assert other in {org_id for org_id, _ in before}


# --------------------------------------------------------------------------------------------
# Retirement and status


def test_retire_refuses_while_objects_use_the_version(
    sessions: sessionmaker[Session], keyring: Keyring, org: str
) -> None:
    with sessions() as session:
        with pytest.raises(KeyInUse, match="current"):
            keyring.retire_version(session, org, 1)
        keyring.create_org_key(session, org)
        live = add_object(session, org, 1)
        gone = add_object(session, org, 1, deleted=True)
        session.commit()
        with pytest.raises(KeyInUse) as caught:
            keyring.retire_version(session, org, 1)
        assert caught.value.count == 2 and "2 object(s)" in str(caught.value)
        live.key_version = 2
        session.commit()
        with pytest.raises(KeyInUse) as caught:
            keyring.retire_version(session, org, 1)
        assert caught.value.count == 1  # a deleted object can still be restored
        gone.key_version = 2
        session.commit()
        row = keyring.retire_version(session, org, 1)
        session.commit()
        assert row.state == KeyState.RETIRED.value and row.retired_at is not None
        with pytest.raises(UnknownKeyVersion):
            keyring.retire_version(session, org, 5)
        # Nothing may be wrapped under a retired version any more.
        _, wrapped = keyring.wrap_data_key(session, org, "object", b"D" * 32)
        with pytest.raises(KeyringError, match="retired"):
            keyring.rewrap_data_key(session, org, "object", 2, wrapped, 1)


def test_usage_counts_objects_and_bytes_per_version(
    sessions: sessionmaker[Session], keyring: Keyring, org: str
) -> None:
    other = make_org(sessions, keyring, "Another Clinic")
    with sessions() as session:
        keyring.create_org_key(session, org)
        add_object(session, org, 1, size=100)
        add_object(session, org, 2, size=5)
        add_object(session, org, 2, size=7, deleted=True)
        session.commit()
        rows = keyring.usage(session)
        summary = [(u.org_name, u.version, u.state, u.objects, u.bytes) for u in rows]
        assert summary == [
            ("Another Clinic", 1, "current", 0, 0),
            ("Clinic", 1, "active", 1, 100),
            ("Clinic", 2, "current", 2, 12),
        ]
        assert [u.version for u in keyring.usage(session, other)] == [1]


# --------------------------------------------------------------------------------------------
# Key material never shows


def test_no_key_material_in_reprs_or_errors(
    sessions: sessionmaker[Session], keyring: Keyring, org: str, key_path: Path, tmp_path: Path
) -> None:
    with sessions() as session:
        org_key = keyring._org_key(session, org, 1)
        kek = keyring.data_kek(session, org, 1)
        ssec = keyring.ssec_key(session, org, 1)
        audit = keyring.audit_key(session, "system")
        session.commit()
        audit = keyring.audit_key(session, "system")
        messages = [repr(keyring), str(keyring), repr(keyring.master), str(keyring.master),
                    repr(keyring.master._load()), repr(keyring._cache_lock)]
        for failing in (
            lambda: keyring.data_kek(session, org, 4),
            lambda: keyring.retire_version(session, org, 1),
            lambda: Keyring(sessions, FileMasterKey(tmp_path / "none")).data_kek(session, org, 2),
        ):
            with pytest.raises(KeyringError) as caught:
                failing()
            messages += [str(caught.value), repr(caught.value)]
    secrets_ = [org_key, kek, ssec, audit, *file_keys(key_path)]
    assert_no_key_material("\n".join(messages), secrets_)
    assert "cached=" in repr(keyring)
