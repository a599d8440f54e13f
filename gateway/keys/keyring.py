"""The keyring: organisation key versions → derived keys → data keys, and audit keys.

* Each organisation has **key versions** (:class:`~gateway.db.models.OrgKeyVersion`): 32 random
  bytes, stored only wrapped by the master key (:mod:`.master`). Exactly one version is
  ``current`` (used for new objects); older ones stay ``active`` while objects use them, then
  may be ``retired``.
* From an organisation key version two keys are **derived** with HKDF-SHA256 under distinct
  labels: the key-encryption key that wraps data keys (:meth:`Keyring.data_kek`) and the SSE-C
  customer key sent to S3 (:meth:`Keyring.ssec_key`). Knowing one reveals nothing of the
  other, so the key S3 sees can never unwrap a data key.
* Each object's **data key** is wrapped under the data KEK of one version and bound to its
  organisation, object and version (:func:`gateway.crypto.envelope.data_key_context`).

Errors: :class:`~.errors.KeyringError` means the keyring cannot do its work (master key
unusable, key version missing). A wrapped *data* key that fails to unwrap is an integrity
failure of that object and surfaces as :class:`gateway.crypto.envelope.DecryptionError`.
No message, ``repr()`` or log line of this module contains key material.
"""
from __future__ import annotations

import secrets
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..crypto import envelope
from ..db.models import (
    AuditKey,
    KeyState,
    Organisation,
    OrgKeyVersion,
    StoredObject,
    utcnow,
)
from .errors import KeyInUse, KeyringError, UnknownKeyVersion
from .master import KEY_SIZE, MasterKey

_U32 = struct.Struct(">I")
_DERIVE_LABEL = b"gateway org key v1"
_DATA_KEK_PURPOSE = b"data-kek"
_SSEC_PURPOSE = b"sse-c"

_DEFAULT_MAX_CACHED = 4096


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

        :raises gateway.crypto.envelope.DecryptionError: if the wrapped key does not unwrap (an
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

        :raises gateway.crypto.envelope.DecryptionError: if ``wrapped`` does not unwrap.
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
