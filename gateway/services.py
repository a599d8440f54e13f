"""The application's services, built once from the settings: the one composition root.

The web app and the command line both go through :func:`build_services`, so a command sees
exactly the keyring, store and audit log the web app does. Everything below this module is
handed what it needs; nothing imports this module back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .audit import AuditLog
from .config import Settings
from .db import make_engine, make_session_factory
from .files import Catalog, ObjectService
from .keys import Keyring, load_master_key
from .storage import ObjectStore
from .uploads import ResumableUploads


@dataclass
class Services:
    """Everything a request or command needs; built lazily where construction costs I/O."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def keyring(self) -> Keyring:
        if "keyring" not in self._cache:
            self._cache["keyring"] = Keyring(self.sessions, load_master_key(self.settings))
        return self._cache["keyring"]

    @property
    def audit(self) -> AuditLog:
        if "audit" not in self._cache:
            self._cache["audit"] = AuditLog(self.sessions, self.keyring)
        return self._cache["audit"]

    @property
    def store(self) -> ObjectStore:
        if "store" not in self._cache:
            self._cache["store"] = ObjectStore(
                self.settings.s3_bucket, endpoint_url=self.settings.s3_endpoint_url
            )
        return self._cache["store"]

    @property
    def objects(self) -> ObjectService:
        if "objects" not in self._cache:
            self._cache["objects"] = ObjectService(
                sessions=self.sessions, keyring=self.keyring, store=self.store,
                audit=self.audit, max_upload_bytes=self.settings.max_upload_bytes,
            )
        return self._cache["objects"]

    @property
    def catalog(self) -> Catalog:
        if "catalog" not in self._cache:
            self._cache["catalog"] = Catalog(self.objects)
        return self._cache["catalog"]

    @property
    def uploads(self) -> ResumableUploads:
        if "uploads" not in self._cache:
            self._cache["uploads"] = ResumableUploads(
                objects=self.objects, expires_seconds=self.settings.upload_expires_seconds)
        return self._cache["uploads"]

    def close(self) -> None:
        self.engine.dispose()


def build_services(settings: Settings) -> Services:
    """Create the engine and session factory; other services are created on first use."""
    engine = make_engine(settings.database_url)
    return Services(settings=settings, engine=engine, sessions=make_session_factory(engine))
