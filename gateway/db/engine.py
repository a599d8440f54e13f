"""Database engine and sessions (plain SQLAlchemy 2; no Flask here).

A database that cannot be used (unreachable, gone away, locked, no tables yet) is translated
here, once, for every caller: the engine raises :class:`DatabaseUnavailable`, which is both the
gateway's error (HTTP 503 ``audit_unavailable``: the database holds the audit log, so nothing
is served) and still SQLAlchemy's ``OperationalError``, with the driver's error as ``orig``.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, ExceptionContext
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ..errors import GatewayError


class Base(DeclarativeBase):
    """Base class of every model; its metadata is what Alembic compares against."""


class DatabaseUnavailable(GatewayError, OperationalError):
    """The database cannot be used: unreachable, gone away, locked, or without its tables.

    It stays an ``OperationalError`` too, chaining the driver's error as ``orig``, so that the
    logs (and a caller that chains it, as the audit log does) keep the database's own words.

    :ivar reason: the driver's first line (``no such table: organisations``, say).
    :ivar schema_missing: whether the tables are missing (``gateway db upgrade`` is the fix).
    """

    status, code = 503, "audit_unavailable"
    public_message = "the database (and with it the audit log) is unavailable; nothing was served"

    def __init__(self, error: DBAPIError) -> None:
        OperationalError.__init__(
            self, error.statement, error.params, error.orig,  # type: ignore[arg-type]
            hide_parameters=error.hide_parameters,
            connection_invalidated=error.connection_invalidated, ismulti=error.ismulti)
        self.code = type(self).code  # the contract's code, not SQLAlchemy's error-page code
        orig = error.orig
        self.reason = str(orig).splitlines()[0] if orig is not None and str(orig) \
            else type(orig or error).__name__
        self.schema_missing = "no such table" in self.reason or "does not exist" in self.reason
        self.message = "database error: " + self.reason + \
            (" (run `gateway db upgrade`)" if self.schema_missing else "")
        self.headers = {}

    def _code_str(self) -> str:
        return ""  # SQLAlchemy would link its error page by ``code``, which here is ours


def _unusable(error: BaseException) -> bool:
    """Whether a database error means the database cannot be used at all."""
    if isinstance(error, (OperationalError, InterfaceError)):
        return True
    # PostgreSQL: a missing table is a ProgrammingError (undefined_table)
    return isinstance(error, ProgrammingError) and \
        getattr(getattr(error, "orig", None), "sqlstate", None) == "42P01"


def _translate_errors(engine: Engine) -> None:
    @event.listens_for(engine, "handle_error")
    def _handle_error(context: ExceptionContext) -> BaseException | None:
        error = context.sqlalchemy_exception
        if context.is_pre_ping or isinstance(error, DatabaseUnavailable):
            return None  # a stale pooled connection: SQLAlchemy reconnects by itself
        if isinstance(error, DBAPIError) and _unusable(error):
            return DatabaseUnavailable(error)
        return None


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the settings this application relies on.

    SQLite gets WAL journaling, foreign keys, a busy timeout (several gunicorn workers write at
    once) and ``BEGIN IMMEDIATE`` transactions so that writers queue instead of failing.
    """
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        # A pool keeps connections open: closing SQLite's last connection checkpoints the WAL,
        # which would cost a sync on every short session.
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin() below control it
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        _translate_errors(engine)
        return engine
    if "poolclass" not in kwargs:
        kwargs.update(pool_size=10, max_overflow=20)
    engine = create_engine(url, pool_pre_ping=True, **kwargs)
    _translate_errors(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay usable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _ensure_sqlite_dir(url: str) -> None:
    from pathlib import Path

    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
