"""The models and the Alembic migrations describe the same schema, on both databases."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from gateway.db import (
    Base,
    make_engine,
    models,  # noqa: F401
)
from gateway.db.migrate import upgrade


def test_autogenerate_diff_is_empty(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert diff == []
    assert {"organisations", "users", "api_tokens", "objects", "org_key_versions",
            "audit_events"} <= tables
