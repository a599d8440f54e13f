"""Shared fixtures. Services (PostgreSQL, moto's S3 server, chromium) live in tests.services."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.stack import LiveGateway, Stack, build_stack

pytest_plugins = ["tests.services", "tests.ceph"]


@pytest.fixture
def stack(db_url: str, moto_endpoint: str, tmp_path: Path) -> Iterator[Stack]:
    """A seeded gateway on each database (SQLite and PostgreSQL)."""
    s = build_stack(db_url, moto_endpoint, tmp_path)
    yield s
    s.close()


@pytest.fixture
def sqlite_stack(moto_endpoint: str, tmp_path: Path) -> Iterator[Stack]:
    """A seeded gateway on SQLite only (for tests whose subject is not the database)."""
    s = build_stack(f"sqlite:///{tmp_path / 'gw.db'}", moto_endpoint, tmp_path)
    yield s
    s.close()


@pytest.fixture
def app(sqlite_stack: Stack):
    from gateway.app import create_app

    return create_app(services=sqlite_stack.services, test_config={"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def live(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """The real gateway under gunicorn (SQLite, moto's S3 server), shared by a test module."""
    tmp = tmp_path_factory.mktemp("live")
    s = build_stack(f"sqlite:///{tmp / 'gw.db'}", moto_endpoint, tmp)
    gw = LiveGateway(s, tmp / "gunicorn.log")
    yield gw
    gw.stop()
    s.close()
