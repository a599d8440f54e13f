"""The key hierarchy: master key → organisation key versions → derived keys → data keys.

* The **master key** wraps every organisation key version and every audit-chain key. It lives
  outside the database: a versioned key file (:class:`FileMasterKey`) or an AWS KMS key
  (:class:`gateway.kms.KmsMasterKey`). Both implement :class:`MasterKey`.
* Each organisation has **key versions** (:class:`~gateway.models.OrgKeyVersion`): 32 random
  bytes, stored only wrapped by the master key. Exactly one version is ``current`` (used for
  new objects); older ones stay ``active`` while objects use them, then may be ``retired``.
* From an organisation key version two keys are **derived** with HKDF-SHA256 under distinct
  labels: the key-encryption key that wraps data keys (:meth:`Keyring.data_kek`) and the SSE-C
  customer key sent to S3 (:meth:`Keyring.ssec_key`). Knowing one reveals nothing of the
  other, so the key S3 sees can never unwrap a data key.
* Each object's **data key** is wrapped under the data KEK of one version and bound to its
  organisation, object and version (:func:`gateway.envelope.data_key_context`).

Errors: :class:`KeyringError` means the keyring cannot do its work (master key unusable,
key version missing); the web layer answers 503. A wrapped *data* key that fails to unwrap is
an integrity failure of that object and surfaces as :class:`gateway.envelope.DecryptionError`.
No message, ``repr()`` or log line of this module contains key material.

``keys/README.md`` describes the layout, the backups and the rotation procedures.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import envelope
from .config import parse_master_key
from .models import AuditKey, KeyState, Organisation, OrgKeyVersion, StoredObject, utcnow

if TYPE_CHECKING:
    from .config import Settings

__all__ = [
    "KEY_FILE_FORMAT",
    "KeyInUse",
    "KeyUsage",
    "Keyring",
    "KeyringError",
    "FileMasterKey",
    "MasterKey",
    "UnknownKeyVersion",
    "add_master_key_version",
    "init_master_key_file",
    "load_master_key",
    "retire_master_key_version",
]

KEY_SIZE = 32
KEY_FILE_FORMAT = "gateway-master-key"
#: A key file is a few hundred bytes per version; anything far larger is not one.
_MAX_KEY_FILE_SIZE = 1 << 20
_FILE_ID_PREFIX = "file:"

_U32 = struct.Struct(">I")
_MASTER_WRAP_LABEL = b"master-wrap"
_DERIVE_LABEL = b"gateway org key v1"
_DATA_KEK_PURPOSE = b"data-kek"
_SSEC_PURPOSE = b"sse-c"

_DEFAULT_MAX_CACHED = 4096


class KeyringError(Exception):
    """The keyring cannot do its work: master key unusable, key version missing, KMS failing.

    The web layer answers 503 "keyring unavailable". Messages never contain key material.
    """


class UnknownKeyVersion(KeyringError):
    """An organisation has no such key version (or no current one)."""


class KeyInUse(KeyringError):
    """A key version cannot be retired: objects still use it, or it is the current one.

    :ivar count: how many objects (deleted ones included) still use the version.
    """

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


# --------------------------------------------------------------------------------------------
# Master key providers


@runtime_checkable
class MasterKey(Protocol):
    """What the keyring needs from a master key: wrap and unwrap small keys with a context.

    ``key_id`` names the *current* master key (version); every wrap records the id it used, so
    that a later unwrap (and :meth:`Keyring.rotate_master`) knows which master key to ask.
    """

    @property
    def key_id(self) -> str:
        """Id of the current master key version, e.g. ``file:2`` or a KMS key ARN."""
        ...

    def wrap(self, key: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        """Wrap ``key`` bound to ``context``; return ``(blob, master_key_id used)``."""
        ...

    def unwrap(self, blob: bytes, master_key_id: str, context: Mapping[str, str]) -> bytes:
        """Unwrap a blob made by :meth:`wrap` under ``master_key_id`` with the same context."""
        ...

    def check(self) -> None:
        """Raise :class:`KeyringError` if the master key cannot be used right now."""
        ...


def encode_context(context: Mapping[str, str], master_key_id: str) -> bytes:
    """The canonical bytes of a wrapping context: sorted, every field length-prefixed.

    ``b"master-wrap" || u32(n) || (u32(len k) || k || u32(len v) || v) * n || u32(len id) || id``
    with keys sorted and everything UTF-8, so no two different contexts share an encoding.
    """

    def field(value: str) -> bytes:
        if not isinstance(value, str):
            raise TypeError("wrapping context keys and values must be str.")
        raw = value.encode("utf-8")
        return _U32.pack(len(raw)) + raw

    parts = [_MASTER_WRAP_LABEL, _U32.pack(len(context))]
    for name in sorted(context):
        parts.append(field(name))
        parts.append(field(context[name]))
    parts.append(field(master_key_id))
    return b"".join(parts)


class _KeyFileContents:
    """The parsed versions of a key file. Holds key material: its repr shows none."""

    __slots__ = ("versions", "current", "stamp")

    def __init__(self, versions: dict[int, bytes], current: int, stamp: tuple[int, ...]) -> None:
        self.versions = versions
        self.current = current
        self.stamp = stamp

    def __repr__(self) -> str:
        return f"<key file: versions {sorted(self.versions)}, current {self.current}>"


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def _check_key_file_stat(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise KeyringError(f"master key file {path} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyringError(
            f"master key file {path} is readable or writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); refusing to use it: run chmod 600 {path}"
        )
    if st.st_size > _MAX_KEY_FILE_SIZE:
        raise KeyringError(f"master key file {path} is malformed: far too large for a key file")


def _read_key_file_document(path: Path) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Open, check permissions (on the open file) and JSON-decode a key file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KeyringError(
            f"master key file {path} is missing (create one with: gateway keys init)"
        ) from None
    except OSError as exc:
        raise KeyringError(f"master key file {path} cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        _check_key_file_stat(path, st)
        raw = bytearray()
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            raw += chunk
            if len(raw) > _MAX_KEY_FILE_SIZE:
                raise KeyringError(f"master key file {path} is malformed: far too large")
    except OSError as exc:
        raise KeyringError(f"master key file {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        document = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        # The decoder's message may quote the file: never repeat it.
        raise KeyringError(f"master key file {path} is malformed: not a JSON document") from None
    return document, _stamp(st)


def _parse_key_file(path: Path, document: Any) -> tuple[dict[int, bytes], int]:
    """Validate a key file document; return ``(versions, current)``."""

    def malformed(reason: str) -> KeyringError:
        return KeyringError(f"master key file {path} is malformed: {reason}")

    if not isinstance(document, dict) or document.get("format") != KEY_FILE_FORMAT:
        raise malformed(f'expected a JSON object with "format": "{KEY_FILE_FORMAT}"')
    entries = document.get("versions")
    if not isinstance(entries, list) or not entries:
        raise malformed('"versions" must be a non-empty list')
    versions: dict[int, bytes] = {}
    for position, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise malformed(f"version entry {position} is not an object")
        number = entry.get("version")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise malformed(f"version entry {position} has no positive integer \"version\"")
        if number in versions:
            raise malformed(f"version {number} appears twice")
        encoded = entry.get("key")
        if not isinstance(encoded, str):
            raise malformed(f"version {number} has no base64 \"key\"")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise malformed(f"version {number} has a key that is not valid base64") from None
        if len(key) != KEY_SIZE:
            raise malformed(f"version {number} has a key that is not {KEY_SIZE} bytes")
        versions[number] = key
    current = document.get("current")
    if not isinstance(current, int) or isinstance(current, bool) or current not in versions:
        raise malformed('"current" must name one of the versions')
    return versions, current


def _file_key_id(version: int) -> str:
    return f"{_FILE_ID_PREFIX}{version}"


def _file_version(master_key_id: str) -> int | None:
    if not master_key_id.startswith(_FILE_ID_PREFIX):
        return None
    number = master_key_id[len(_FILE_ID_PREFIX):]
    return int(number) if number.isdigit() else None


class FileMasterKey:
    """A master key kept in a versioned key file (see ``keys/README.md`` for the format).

    The file is re-read whenever it changes on disk, so a running gateway picks up a version
    added by ``gateway keys rotate-master`` without a restart. A file that is missing,
    malformed, or readable by anyone but its owner is refused with :class:`KeyringError`.

    :param path: the key file (relative paths are relative to the working directory).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._contents: _KeyFileContents | None = None

    def __repr__(self) -> str:
        return f"FileMasterKey(path={str(self.path)!r})"

    def _load(self) -> _KeyFileContents:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise KeyringError(
                f"master key file {self.path} is missing (create one with: gateway keys init)"
            ) from None
        except OSError as exc:
            raise KeyringError(
                f"master key file {self.path} cannot be read: {exc.strerror}"
            ) from None
        _check_key_file_stat(self.path, st)
        with self._lock:
            contents = self._contents
            if contents is None or contents.stamp != _stamp(st):
                document, stamp = _read_key_file_document(self.path)
                versions, current = _parse_key_file(self.path, document)
                contents = self._contents = _KeyFileContents(versions, current, stamp)
            return contents

    @property
    def key_id(self) -> str:
        """``file:N`` where N is the file's current version."""
        return _file_key_id(self._load().current)

    @property
    def versions(self) -> list[int]:
        """The version numbers the file holds, in order."""
        return sorted(self._load().versions)

    def wrap(self, key: bytes, context: Mapping[str, str]) -> tuple[bytes, str]:
        """Wrap ``key`` under the current version, bound to ``context`` and that version."""
        contents = self._load()
        key_id = _file_key_id(contents.current)
        blob = envelope.wrap_key(
            contents.versions[contents.current], key, encode_context(context, key_id)
        )
        return blob, key_id

    def unwrap(self, blob: bytes, master_key_id: str, context: Mapping[str, str]) -> bytes:
        """Unwrap a blob made by :meth:`wrap` with version ``master_key_id`` (``file:N``).

        :raises KeyringError: if the id is not a file version, the version is no longer in the
            file, or the blob does not unwrap (another key file, or an altered row).
        """
        version = _file_version(master_key_id)
        if version is None:
            raise KeyringError(
                f"a key is wrapped by master key {master_key_id!r}, which is not a key file "
                f"version; GATEWAY_MASTER_KEY names the key file {self.path}"
            )
        contents = self._load()
        master = contents.versions.get(version)
        if master is None:
            raise KeyringError(
                f"master key version {version} is not in {self.path} (retired too early, or "
                "the wrong key file)"
            )
        try:
            return envelope.unwrap_key(master, blob, encode_context(context, master_key_id))
        except envelope.DecryptionError:
            raise KeyringError(
                f"a key wrapped by master key {master_key_id} failed to unwrap: wrong key file "
                f"{self.path}, or the database row was altered"
            ) from None

    def check(self) -> None:
        """Re-read the file if it changed; raise :class:`KeyringError` if it is unusable."""
        self._load()


def init_master_key_file(path: str | os.PathLike[str]) -> None:
    """Create a new key file with one random version, mode 0600, never overwriting.

    The parent directory is created (mode 0700) if missing.

    :raises FileExistsError: if ``path`` exists.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _create_private(path, _dump_key_file({1: secrets.token_bytes(KEY_SIZE)}, 1, {1: _now_text()}))
    _fsync_dir(path.parent)


def add_master_key_version(path: str | os.PathLike[str]) -> int:
    """Add a new random version to a key file and make it current; return its number.

    The file is replaced atomically (a new file of mode 0600 renamed over the old one).

    :raises KeyringError: if the file is missing, malformed or too widely readable.
    """
    path = Path(path)
    with _locked_directory(path.parent):
        versions, current, created = _read_for_update(path)
        new = max(versions) + 1
        versions[new] = secrets.token_bytes(KEY_SIZE)
        created[new] = _now_text()
        _replace_atomically(path, _dump_key_file(versions, new, created))
    return new


def retire_master_key_version(path: str | os.PathLike[str], version: int) -> None:
    """Remove an old version from a key file.

    The caller must have made sure nothing is wrapped by it any more (``gateway keys
    retire-master`` counts the rows naming it first): keys wrapped by a removed version are
    lost, and so are database backups that still hold such rows.

    :raises KeyringError: if the version is the current one or is not in the file, or the
        file is unusable.
    """
    path = Path(path)
    with _locked_directory(path.parent):
        versions, current, created = _read_for_update(path)
        if version not in versions:
            raise KeyringError(f"master key file {path} has no version {version}")
        if version == current:
            raise KeyringError(
                f"master key version {version} is the current one and cannot be retired"
            )
        del versions[version]
        created.pop(version, None)
        _replace_atomically(path, _dump_key_file(versions, current, created))


def _read_for_update(path: Path) -> tuple[dict[int, bytes], int, dict[int, str]]:
    document, _stamp_ = _read_key_file_document(path)
    versions, current = _parse_key_file(path, document)
    created = {
        entry["version"]: str(entry.get("created_at", ""))
        for entry in document["versions"]
    }
    return versions, current, created


def _dump_key_file(
    versions: Mapping[int, bytes], current: int, created: Mapping[int, str]
) -> bytes:
    document = {
        "format": KEY_FILE_FORMAT,
        "current": current,
        "versions": [
            {
                "version": number,
                "key": base64.b64encode(versions[number]).decode("ascii"),
                "created_at": created.get(number, ""),
            }
            for number in sorted(versions)
        ],
    }
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _now_text() -> str:
    return utcnow().replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file of mode 0600, synced; never over an existing file.

    :raises FileExistsError: if ``path`` exists. On any failure no file is left.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _replace_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    _create_private(temporary, data)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[None]:
    """Serialise changes to the key files of one directory between processes."""
    import fcntl

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise KeyringError(f"key directory {directory} cannot be opened: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_master_key(settings: Settings) -> MasterKey:
    """The master key provider that ``settings.master_key`` names.

    ``file:PATH`` gives a :class:`FileMasterKey` (PATH relative to the working directory);
    ``aws-kms:KEY`` a :class:`gateway.kms.KmsMasterKey` whose client honours the optional
    ``GATEWAY_KMS_ENDPOINT_URL``. Nothing is read or contacted yet.

    :raises KeyringError: if the KMS client cannot be created (e.g. no AWS region).
    """
    scheme, rest = parse_master_key(settings.master_key)
    if scheme == "file":
        return FileMasterKey(rest)
    from .kms import KmsMasterKey, make_kms_client

    return KmsMasterKey(rest, make_kms_client())


# --------------------------------------------------------------------------------------------
# The keyring


@dataclass(frozen=True)
class KeyUsage:
    """One organisation key version and what it protects (``gateway keys status``)."""

    org_id: str
    org_name: str
    version: int
    state: str
    created_at: datetime
    master_key_id: str
    objects: int
    bytes: int


def _org_key_context(org_id: str, version: int) -> dict[str, str]:
    return {"org": org_id, "purpose": "org-key", "version": str(version)}


def _audit_key_context(chain: str) -> dict[str, str]:
    return {"chain": chain, "purpose": "audit"}


def _derive(org_key: bytes, purpose: bytes, org_id: str, version: int) -> bytes:
    org = org_id.encode("utf-8")
    info = (
        _DERIVE_LABEL
        + _U32.pack(len(purpose)) + purpose
        + _U32.pack(len(org)) + org
        + _U32.pack(version)
    )
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(org_key)


class Keyring:
    """Organisation keys, the keys derived from them, data-key wrapping and audit keys.

    Every method that reads the database takes the caller's ``session`` and never commits it,
    except :meth:`rotate_master`, which commits row by row so that it can be resumed.

    Unwrapped organisation and audit keys are kept in memory for at most ``cache_seconds``
    (``0`` disables the cache), in a dict bounded to ``max_cached`` entries. The cache is
    filled only when a key is *read*, never when one is created, so a creation that the
    caller rolls back leaves nothing behind.

    :param sessions: the session factory (kept for callers that need their own sessions).
    :param master: the master key provider.
    :param cache_seconds: how long an unwrapped key may stay in memory.
    :param max_cached: most keys held at once.
    :param clock: monotonic clock in seconds (tests replace it).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session] | None,
        master: MasterKey,
        *,
        cache_seconds: float = 300.0,
        max_cached: int = _DEFAULT_MAX_CACHED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0:
            raise ValueError("cache_seconds must not be negative.")
        if max_cached < 1:
            raise ValueError("max_cached must be at least 1.")
        self.sessions = sessions
        self.master = master
        self.cache_seconds = float(cache_seconds)
        self.max_cached = max_cached
        self._clock = clock
        self._cache: dict[tuple[str, str, int], tuple[bytes, float]] = {}
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Keyring(master={self.master!r}, cache_seconds={self.cache_seconds:g}, "
            f"cached={len(self._cache)})"
        )

    # ---- cache ---------------------------------------------------------------------------

    def _cached(self, slot: tuple[str, str, int]) -> bytes | None:
        with self._cache_lock:
            entry = self._cache.get(slot)
            if entry is None:
                return None
            key, expiry = entry
            if self._clock() >= expiry:
                del self._cache[slot]
                return None
            return key

    def _remember(self, slot: tuple[str, str, int], key: bytes) -> None:
        if self.cache_seconds <= 0:
            return
        now = self._clock()
        with self._cache_lock:
            if slot not in self._cache and len(self._cache) >= self.max_cached:
                for stale in [s for s, (_k, expiry) in self._cache.items() if expiry <= now]:
                    del self._cache[stale]
                while len(self._cache) >= self.max_cached:
                    # Dicts keep insertion order: drop the oldest entry.
                    del self._cache[next(iter(self._cache))]
            self._cache[slot] = (key, now + self.cache_seconds)

    def forget(self) -> None:
        """Drop every unwrapped key held in memory."""
        with self._cache_lock:
            self._cache.clear()

    # ---- master key ----------------------------------------------------------------------

    def _unwrap_master(self, blob: bytes, master_key_id: str, context: Mapping[str, str]) -> bytes:
        key = self.master.unwrap(bytes(blob), master_key_id, context)
        if len(key) != KEY_SIZE:
            raise KeyringError(f"a key wrapped by master key {master_key_id} has the wrong size")
        return key

    # ---- organisation keys ---------------------------------------------------------------

    def create_org_key(self, session: Session, org_id: str) -> OrgKeyVersion:
        """Add a new key version to an organisation and make it current.

        The previous current version becomes ``active``. The caller commits; two concurrent
        rotations of one organisation cannot both commit (version numbers are unique).

        :raises LookupError: if there is no such organisation.
        :raises KeyringError: if the master key cannot wrap.
        """
        org = session.scalar(
            select(Organisation).where(Organisation.id == org_id).with_for_update()
        )
        if org is None:
            raise LookupError(f"no organisation with id {org_id!r}")
        latest = session.scalar(
            select(func.max(OrgKeyVersion.version)).where(OrgKeyVersion.org_id == org_id)
        )
        version = (latest or 0) + 1
        blob, master_key_id = self.master.wrap(
            secrets.token_bytes(KEY_SIZE), _org_key_context(org_id, version)
        )
        for previous in session.scalars(
            select(OrgKeyVersion).where(
                OrgKeyVersion.org_id == org_id, OrgKeyVersion.state == KeyState.CURRENT.value
            )
        ):
            previous.state = KeyState.ACTIVE.value
        row = OrgKeyVersion(
            org_id=org_id,
            version=version,
            wrapped_key=blob,
            master_key_id=master_key_id,
            state=KeyState.CURRENT.value,
            created_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row

    def current_version(self, session: Session, org_id: str) -> int:
        """The organisation's current key version (the one new objects use).

        :raises UnknownKeyVersion: if the organisation has no current version.
        """
        version = session.scalar(
            select(func.max(OrgKeyVersion.version)).where(
                OrgKeyVersion.org_id == org_id, OrgKeyVersion.state == KeyState.CURRENT.value
            )
        )
        if version is None:
            raise UnknownKeyVersion(f"organisation {org_id} has no current key version")
        return version

    def _version_row(self, session: Session, org_id: str, version: int) -> OrgKeyVersion:
        row = session.scalar(
            select(OrgKeyVersion).where(
                OrgKeyVersion.org_id == org_id, OrgKeyVersion.version == version
            )
        )
        if row is None:
            raise UnknownKeyVersion(f"organisation {org_id} has no key version {version}")
        return row

    def _org_key(self, session: Session, org_id: str, version: int) -> bytes:
        slot = ("org", org_id, version)
        key = self._cached(slot)
        if key is None:
            row = self._version_row(session, org_id, version)
            key = self._unwrap_master(
                row.wrapped_key, row.master_key_id, _org_key_context(org_id, version)
            )
            self._remember(slot, key)
        return key

    def data_kek(self, session: Session, org_id: str, version: int) -> bytes:
        """The key-encryption key for data keys under one organisation key version.

        :raises UnknownKeyVersion: if there is no such version.
        :raises KeyringError: if the master key cannot unwrap it.
        """
        return _derive(self._org_key(session, org_id, version), _DATA_KEK_PURPOSE, org_id, version)

    def ssec_key(self, session: Session, org_id: str, version: int) -> bytes:
        """The 256-bit SSE-C customer key of one organisation key version.

        Derived apart from :meth:`data_kek`: S3 seeing this key learns nothing of the other.

        :raises UnknownKeyVersion: if there is no such version.
        :raises KeyringError: if the master key cannot unwrap it.
        """
        return _derive(self._org_key(session, org_id, version), _SSEC_PURPOSE, org_id, version)

    # ---- data keys -----------------------------------------------------------------------

    def wrap_data_key(
        self, session: Session, org_id: str, storage_id: str, data_key: bytes
    ) -> tuple[int, bytes]:
        """Wrap an object's data key under the organisation's current version.

        :returns: ``(key_version, wrapped_data_key)`` for the catalog row.
        :raises KeyringError: if the organisation key is unavailable.
        """
        version = self.current_version(session, org_id)
        return version, self._wrap_under(session, org_id, storage_id, version, data_key)

    def _wrap_under(
        self, session: Session, org_id: str, storage_id: str, version: int, data_key: bytes
    ) -> bytes:
        kek = self.data_kek(session, org_id, version)
        return envelope.wrap_key(
            kek, data_key, envelope.data_key_context(org_id, storage_id, version)
        )

    def unwrap_data_key(
        self, session: Session, org_id: str, storage_id: str, version: int, wrapped: bytes
    ) -> bytes:
        """Unwrap an object's data key.

        :raises gateway.envelope.DecryptionError: if the wrapped key does not unwrap (an
            integrity failure of that object: altered, or moved from another object).
        :raises KeyringError: if the organisation key version is unavailable.
        """
        kek = self.data_kek(session, org_id, version)
        return envelope.unwrap_key(
            kek, bytes(wrapped), envelope.data_key_context(org_id, storage_id, version)
        )

    def rewrap_data_key(
        self,
        session: Session,
        org_id: str,
        storage_id: str,
        from_version: int,
        wrapped: bytes,
        to_version: int,
    ) -> bytes:
        """Move a wrapped data key from one organisation key version to another.

        :raises gateway.envelope.DecryptionError: if ``wrapped`` does not unwrap.
        :raises KeyringError: if either version is unavailable, or ``to_version`` is retired.
        """
        target = self._version_row(session, org_id, to_version)
        if target.state == KeyState.RETIRED.value:
            raise KeyringError(
                f"key version {to_version} of organisation {org_id} is retired; "
                "nothing may be wrapped under it"
            )
        data_key = self.unwrap_data_key(session, org_id, storage_id, from_version, wrapped)
        return self._wrap_under(session, org_id, storage_id, to_version, data_key)

    # ---- audit keys ----------------------------------------------------------------------

    def audit_key(self, session: Session, chain: str) -> bytes:
        """The keyed-hash key of an audit chain (an organisation id, or ``"system"``).

        Created on first use, in a savepoint of the caller's transaction (the caller
        commits). When another process creates it at the same moment, the loser's insert
        fails, is rolled back to the savepoint, and the winner's key is read instead.

        :raises KeyringError: if the master key cannot wrap or unwrap it.
        """
        slot = ("audit", chain, 0)
        key = self._cached(slot)
        if key is not None:
            return key
        context = _audit_key_context(chain)
        row = session.get(AuditKey, chain)
        if row is None:
            key = secrets.token_bytes(KEY_SIZE)
            blob, master_key_id = self.master.wrap(key, context)
            try:
                with session.begin_nested():
                    session.add(
                        AuditKey(
                            chain=chain,
                            wrapped_key=blob,
                            master_key_id=master_key_id,
                            created_at=utcnow(),
                        )
                    )
            except IntegrityError:
                row = session.execute(
                    select(AuditKey).where(AuditKey.chain == chain),
                    execution_options={"populate_existing": True},
                ).scalar_one()
            else:
                return key  # not cached: the caller may still roll back
        key = self._unwrap_master(row.wrapped_key, row.master_key_id, context)
        self._remember(slot, key)
        return key

    # ---- master rotation -----------------------------------------------------------------

    def master_rewrap_pending(self, session: Session) -> int:
        """How many organisation and audit keys are not wrapped by the current master key."""
        current = self.master.key_id
        org_keys = session.scalar(
            select(func.count()).select_from(OrgKeyVersion).where(
                OrgKeyVersion.master_key_id != current
            )
        )
        audit_keys = session.scalar(
            select(func.count()).select_from(AuditKey).where(AuditKey.master_key_id != current)
        )
        return int(org_keys or 0) + int(audit_keys or 0)

    def master_key_usage(self, session: Session) -> dict[str, int]:
        """How many organisation and audit keys each master key id wraps."""
        usage: dict[str, int] = {}
        for model in (OrgKeyVersion, AuditKey):
            for master_key_id, count in session.execute(
                select(model.master_key_id, func.count()).group_by(model.master_key_id)
            ):
                usage[master_key_id] = usage.get(master_key_id, 0) + int(count)
        return usage

    def iter_rotate_master(self, session: Session) -> Iterator[str]:
        """Rewrap, one committed row at a time, every key not under the current master key.

        Yields a label (``org-key ORG vN`` or ``audit-key CHAIN``) after each row is
        committed. Interrupting and calling again continues where it stopped; rows already
        under the current master key are skipped. Each new wrapping is checked to unwrap to
        the same key before it replaces the old one.

        :raises KeyringError: if an old wrapping cannot be unwrapped or the new one not made.
        """
        current = self.master.key_id
        org_ids = list(
            session.scalars(
                select(OrgKeyVersion.id)
                .where(OrgKeyVersion.master_key_id != current)
                .order_by(OrgKeyVersion.id)
            )
        )
        chains = list(
            session.scalars(
                select(AuditKey.chain)
                .where(AuditKey.master_key_id != current)
                .order_by(AuditKey.chain)
            )
        )
        session.rollback()  # end the read; every row below is its own transaction
        for row_id in org_ids:
            org_row = session.get(
                OrgKeyVersion, row_id, with_for_update=True, populate_existing=True
            )
            if org_row is None or org_row.master_key_id == current:
                session.rollback()
                continue
            context = _org_key_context(org_row.org_id, org_row.version)
            org_row.wrapped_key, org_row.master_key_id = self._rewrap_master(
                org_row.wrapped_key, org_row.master_key_id, context
            )
            label = f"org-key {org_row.org_id} v{org_row.version}"
            session.commit()
            yield label
        for chain in chains:
            audit_row = session.get(AuditKey, chain, with_for_update=True, populate_existing=True)
            if audit_row is None or audit_row.master_key_id == current:
                session.rollback()
                continue
            audit_row.wrapped_key, audit_row.master_key_id = self._rewrap_master(
                audit_row.wrapped_key, audit_row.master_key_id, _audit_key_context(chain)
            )
            session.commit()
            yield f"audit-key {chain}"

    def _rewrap_master(
        self, blob: bytes, master_key_id: str, context: Mapping[str, str]
    ) -> tuple[bytes, str]:
        key = self._unwrap_master(blob, master_key_id, context)
        new_blob, new_id = self.master.wrap(key, context)
        if self._unwrap_master(new_blob, new_id, context) != key:
            raise KeyringError(f"rewrapping under master key {new_id} did not round-trip")
        return new_blob, new_id

    def rotate_master(self, session: Session) -> int:
        """Rewrap every key not yet under the current master key; return how many were.

        Idempotent and resumable: see :meth:`iter_rotate_master`.
        """
        return sum(1 for _label in self.iter_rotate_master(session))

    # ---- retirement and status -----------------------------------------------------------

    def objects_using(self, session: Session, org_id: str, version: int) -> int:
        """How many catalog rows (deleted ones included) use an organisation key version."""
        return int(
            session.scalar(
                select(func.count()).select_from(StoredObject).where(
                    StoredObject.org_id == org_id, StoredObject.key_version == version
                )
            )
            or 0
        )

    def retire_version(self, session: Session, org_id: str, version: int) -> OrgKeyVersion:
        """Mark a version retired: it protects nothing and may never wrap again.

        The wrapped key stays in the database for the record. The caller commits.

        :raises UnknownKeyVersion: if there is no such version.
        :raises KeyInUse: if it is the current version, or any object (deleted ones
            included, since they can still be restored) uses it.
        """
        row = session.scalar(
            select(OrgKeyVersion)
            .where(OrgKeyVersion.org_id == org_id, OrgKeyVersion.version == version)
            .with_for_update()
        )
        if row is None:
            raise UnknownKeyVersion(f"organisation {org_id} has no key version {version}")
        if row.state == KeyState.CURRENT.value:
            raise KeyInUse(
                f"key version {version} is the current one: rotate first (gateway keys rotate)",
                self.objects_using(session, org_id, version),
            )
        count = self.objects_using(session, org_id, version)
        if count:
            raise KeyInUse(
                f"key version {version} still protects {count} object(s): move them with "
                "gateway keys rewrap first",
                count,
            )
        if row.state != KeyState.RETIRED.value:
            row.state = KeyState.RETIRED.value
            row.retired_at = utcnow()
        with self._cache_lock:
            self._cache.pop(("org", org_id, version), None)
        return row

    def usage(self, session: Session, org_id: str | None = None) -> list[KeyUsage]:
        """Every key version (of one organisation, or all) with the objects it protects."""
        query = (
            select(
                Organisation.id,
                Organisation.name,
                OrgKeyVersion.version,
                OrgKeyVersion.state,
                OrgKeyVersion.created_at,
                OrgKeyVersion.master_key_id,
                func.count(StoredObject.id),
                func.coalesce(func.sum(StoredObject.size), 0),
            )
            .join(OrgKeyVersion, OrgKeyVersion.org_id == Organisation.id)
            .outerjoin(
                StoredObject,
                and_(
                    StoredObject.org_id == OrgKeyVersion.org_id,
                    StoredObject.key_version == OrgKeyVersion.version,
                ),
            )
            .group_by(
                Organisation.id,
                Organisation.name,
                OrgKeyVersion.id,
                OrgKeyVersion.version,
                OrgKeyVersion.state,
                OrgKeyVersion.created_at,
                OrgKeyVersion.master_key_id,
            )
            .order_by(Organisation.name, OrgKeyVersion.version)
        )
        if org_id is not None:
            query = query.where(Organisation.id == org_id)
        return [
            KeyUsage(
                org_id=row[0],
                org_name=row[1],
                version=row[2],
                state=row[3],
                created_at=row[4],
                master_key_id=row[5],
                objects=int(row[6]),
                bytes=int(row[7]),
            )
            for row in session.execute(query)
        ]

    def check(self, session: Session) -> None:
        """Readiness: the master key is usable and unwraps a key of this database.

        :raises KeyringError: if not.
        """
        self.master.check()
        latest = session.execute(
            select(OrgKeyVersion.org_id, OrgKeyVersion.version)
            .order_by(OrgKeyVersion.id.desc())
            .limit(1)
        ).first()
        if latest is not None:
            self._org_key(session, latest[0], latest[1])
            return
        chain = session.scalar(select(AuditKey.chain).limit(1))
        if chain is not None:
            self.audit_key(session, chain)
