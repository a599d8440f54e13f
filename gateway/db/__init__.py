"""The database: the schema every domain stores its rows in, the engine, and the migrations.

Rooms: :mod:`.engine` (engine and sessions, and the one translation of an unusable database
into :class:`DatabaseUnavailable`), :mod:`.models` (the tables, as typed SQLAlchemy models;
``migrations/`` holds the same schema as Alembic revisions), :mod:`.migrate` (running them;
imported on its own, so that what does not migrate does not load Alembic).

May import: :mod:`gateway.errors`, SQLAlchemy and Alembic; nothing else of the gateway.
"""
from .engine import Base, DatabaseUnavailable, make_engine, make_session_factory

__all__ = ["Base", "DatabaseUnavailable", "make_engine", "make_session_factory"]
