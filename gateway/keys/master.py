"""Master key providers: the key file (:class:`FileMasterKey`) and, in :mod:`.kms`, AWS KMS.

The master key wraps every organisation key version and every audit-chain key. It lives
outside the database. Both providers implement :class:`MasterKey`. ``keys/README.md``
describes the key file's format, its backups and the rotation procedures.
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
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..config import parse_master_key
from ..crypto import envelope
from .errors import KeyringError
from .kms import KmsMasterKey, make_kms_client

if TYPE_CHECKING:
    from ..config import Settings

KEY_SIZE = 32
KEY_FILE_FORMAT = "gateway-master-key"
#: A key file is a few hundred bytes per version; anything far larger is not one.
_MAX_KEY_FILE_SIZE = 1 << 20
_FILE_ID_PREFIX = "file:"

_U32 = struct.Struct(">I")
_MASTER_WRAP_LABEL = b"master-wrap"


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
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


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
    ``aws-kms:KEY`` a :class:`gateway.keys.kms.KmsMasterKey` whose client honours the optional
    ``GATEWAY_KMS_ENDPOINT_URL``. Nothing is read or contacted yet.

    :raises KeyringError: if the KMS client cannot be created (e.g. no AWS region).
    """
    scheme, rest = parse_master_key(settings.master_key)
    if scheme == "file":
        return FileMasterKey(rest)
    return KmsMasterKey(rest, make_kms_client())
