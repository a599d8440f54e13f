"""Flask-Limiter storage in the gateway's own database, so that every gateway process (and
every gunicorn worker) counts the same sign-in attempts.

Flask-Limiter's strategies do the limiting; this is only where its counters live (scheme
``gateway-sql://``, fixed windows). The counters are rows of
:class:`~gateway.db.models.RateLimitCounter`, in the database :func:`use_sessions` points at
(the web app points it at the current application's services, so one limiter serves any
number of applications). A database that cannot be reached raises,
and the request is refused (503) rather than let through unthrottled.
"""
from __future__ import annotations

import hashlib
import time
from typing import Callable

from limits.storage import Storage
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import RateLimitCounter

SCHEME = "gateway-sql"
_INSERT_ATTEMPTS = 3
_sessions_of: Callable[[], sessionmaker[Session]] | None = None


def use_sessions(provider: Callable[[], sessionmaker[Session]]) -> None:
    """Where the counters live: ``provider()`` returns the session factory to use."""
    global _sessions_of
    _sessions_of = provider


def _row_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class SqlStorage(Storage):
    """Fixed-window counters in the ``rate_limit_counters`` table."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False,
                 **options: float | str | bool) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    @staticmethod
    def _sessions() -> sessionmaker[Session]:
        if _sessions_of is None:
            raise RuntimeError("throttle.use_sessions() was not called")
        return _sessions_of()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        row_key = _row_key(key)
        for attempt in range(_INSERT_ATTEMPTS):
            now = time.time()
            try:
                with self._sessions()() as s, s.begin():
                    row = s.get(RateLimitCounter, row_key, with_for_update=True)
                    if row is None:
                        # a new window: drop the windows that are over while here
                        s.execute(delete(RateLimitCounter)
                                  .where(RateLimitCounter.expires_at <= now))
                        s.add(RateLimitCounter(key=row_key, hits=amount,
                                               expires_at=now + expiry))
                        return amount
                    if row.expires_at <= now:
                        row.hits, row.expires_at = amount, now + expiry
                    else:
                        row.hits += amount
                    return row.hits
            except IntegrityError:
                if attempt + 1 == _INSERT_ATTEMPTS:
                    raise
                # another process opened the same window first: count in it
        raise AssertionError("unreachable")

    def _live_row(self, key: str) -> RateLimitCounter | None:
        with self._sessions()() as s:
            row = s.get(RateLimitCounter, _row_key(key))
        return row if row is not None and row.expires_at > time.time() else None

    def get(self, key: str) -> int:
        row = self._live_row(key)
        return row.hits if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._live_row(key)
        return row.expires_at if row else time.time()

    def check(self) -> bool:
        try:
            with self._sessions()() as s:
                s.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self._sessions()() as s, s.begin():
            count = s.scalar(select(func.count()).select_from(RateLimitCounter))
            s.execute(delete(RateLimitCounter))
        return int(count or 0)

    def clear(self, key: str) -> None:
        with self._sessions()() as s, s.begin():
            s.execute(delete(RateLimitCounter).where(RateLimitCounter.key == _row_key(key)))
