"""Prefix matches that behave alike on every backend.

``LIKE 'p%'`` is case-insensitive for ASCII on SQLite (and needs its wildcards escaped), while
PostgreSQL's is case-sensitive; a range comparison depends on the database's collation. The
first ``len(prefix)`` characters compared for equality are exact on both.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func


def prefix_condition(column: Any, prefix: str) -> ColumnElement[bool]:
    """``column`` starts with ``prefix``, exactly (case, ``%``, ``_`` and ``\\`` included)."""
    if not prefix:
        return column.is_not(None)
    return func.substr(column, 1, len(prefix)) == prefix
