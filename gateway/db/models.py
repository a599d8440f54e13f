"""The catalog, identity, key, audit and sign-in throttle tables.

Typed SQLAlchemy 2 models. The Alembic migrations create exactly these tables; a test
checks that an autogenerate diff between the two is empty on SQLite and PostgreSQL.
"""
from __future__ import annotations

import enum
import secrets
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from .engine import Base


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def new_id() -> str:
    """An opaque random identifier: 32 lowercase hex digits (128 bits)."""
    return secrets.token_hex(16)


class Role(str, enum.Enum):
    STAFF = "staff"
    AUDITOR = "auditor"
    ADMIN = "admin"


class EncryptionMode(str, enum.Enum):
    CSE = "cse"
    SSEC = "ssec"


class KeyState(str, enum.Enum):
    CURRENT = "current"  # used for new objects
    ACTIVE = "active"  # still protects objects, no longer used for new ones
    RETIRED = "retired"  # protects nothing; kept wrapped for the record


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    encryption_mode: Mapped[str] = mapped_column(String(8), default=EncryptionMode.CSE.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="organisation")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    organisation: Mapped[Organisation] = relationship(back_populates="users")


class BrowserSession(Base):
    """A signed-in browser session, so that signing out ends it on the server too.

    The session cookie carries a random session id; only its SHA-256 is stored here. A cookie
    whose row is missing or ended no longer signs anyone in, even if it was copied before the
    sign-out.
    """

    __tablename__ = "browser_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiToken(Base):
    """A bearer token for scripts. Only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    user: Mapped[User] = relationship()


class PasswordReset(Base):
    """A one-time password-reset link. Only the SHA-256 of its random token is stored; it
    works once, until ``expires_at``, and only for an active user."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(320))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OrgKeyVersion(Base):
    """One version of an organisation's key, stored wrapped by a master key version.

    The unwrapped 256-bit key never reaches the database. Client-side encryption wraps data
    keys with a key derived from it; SSE-C objects use another key derived from it.
    """

    __tablename__ = "org_key_versions"
    __table_args__ = (UniqueConstraint("org_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), default=KeyState.CURRENT.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StoredObject(Base):
    """A catalog row: one file of an organisation.

    ``id`` is the public, stable identifier; ``storage_id`` is the opaque id in the S3 key
    (``{org_id}/{category}/{storage_id}``) and the one the ciphertext is bound to, so a full
    re-encryption can write a new S3 object before switching the row over.
    """

    __tablename__ = "objects"
    __table_args__ = (
        Index(
            "uq_objects_live_path",
            "org_id",
            "path",
            unique=True,
            sqlite_where=text("deleted_at IS NULL"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index("ix_objects_org_path", "org_id", "path"),
        Index("ix_objects_org_name", "org_id", "name_folded"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    path: Mapped[str] = mapped_column(String(1024))
    category: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    encryption: Mapped[str] = mapped_column(String(8))
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_data_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    envelope_salt: Mapped[bytes | None] = mapped_column(LargeBinary, index=True)
    storage_id: Mapped[str] = mapped_column(String(64), unique=True)
    s3_key: Mapped[str] = mapped_column(String(300), unique=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    #: set when an overwrite replaced this row: the id of the object that took its place (the
    #: row is then an earlier version of the path, not a deleted file in the trash)
    replaced_by: Mapped[str | None] = mapped_column(String(32))
    #: the file name (the path's last segment), case-folded, for searching by name
    name_folded: Mapped[str | None] = mapped_column(String(255))

    creator: Mapped[User | None] = relationship(foreign_keys=[created_by])


class AuditEvent(Base):
    """One audited event. Append-only; chained per organisation with a keyed hash.

    ``chain`` is the organisation id, or ``"system"`` for events without one (a failed login
    for an unknown e-mail address). ``seq`` numbers the rows of a chain from 1.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_org_time", "org_id", "occurred_at"),
        Index("ix_audit_user_time", "user_id", "occurred_at"),
        Index("ix_audit_object_time", "object_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    chain: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    org_id: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[int | None] = mapped_column(Integer)
    user_email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40), index=True)
    object_id: Mapped[str | None] = mapped_column(String(32))
    object_path: Mapped[str | None] = mapped_column(String(1024))
    outcome: Mapped[str] = mapped_column(String(32))
    http_status: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    client_addr: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    """The last row of each audit chain; locked while appending so chains never fork."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditKey(Base):
    """The keyed-hash key of one audit chain, stored wrapped by the master key."""

    __tablename__ = "audit_keys"

    chain: Mapped[str] = mapped_column(String(32), primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    """Progress of a long-running command, so it can be interrupted and re-run."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    org_id: Mapped[str | None] = mapped_column(String(32))
    params: Mapped[str] = mapped_column(Text, default="{}")
    state: Mapped[str] = mapped_column(String(16), default="running")
    cursor: Mapped[str | None] = mapped_column(String(64))
    done_count: Mapped[int] = mapped_column(BigInteger, default=0)
    done_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    failed_count: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateLimitCounter(Base):
    """A fixed-window counter of the sign-in throttle, shared by every gateway process.

    ``key`` is the SHA-256 of the limiter's key (which holds an address or an e-mail), so
    the table stores neither.
    """

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    hits: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[float] = mapped_column(Float)


class ResumableUpload(Base):
    """A resumable (tus) upload in progress: everything a later request, in any gateway
    process, needs to carry on from the acknowledged offset.

    Nothing here is plaintext: the data key is wrapped like an object's, the SHA-256 state of
    the bytes received so far and the tail kept in the interim object are sealed under a key
    derived from it. ``parts`` lists the multipart parts already in the bucket (JSON); the
    object appears in the catalog only when the last byte is stored.
    """

    __tablename__ = "resumable_uploads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    path: Mapped[str] = mapped_column(String(1024))
    category: Mapped[str] = mapped_column(String(32))
    overwrite: Mapped[bool] = mapped_column(default=False)
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    content_type: Mapped[str | None] = mapped_column(String(200))
    object_id: Mapped[str] = mapped_column(String(32))
    storage_id: Mapped[str] = mapped_column(String(64), unique=True)
    s3_key: Mapped[str] = mapped_column(String(300), unique=True)
    encryption: Mapped[str] = mapped_column(String(8))
    key_version: Mapped[int] = mapped_column(Integer)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    envelope_header: Mapped[bytes | None] = mapped_column(LargeBinary)
    multipart_id: Mapped[str | None] = mapped_column(String(1024))
    parts: Mapped[str] = mapped_column(Text, default="[]")
    sealed: Mapped[str] = mapped_column(Text, default="{}")
    interim_size: Mapped[int] = mapped_column(BigInteger, default=0)
    digest_state: Mapped[bytes | None] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
    lock_token: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
