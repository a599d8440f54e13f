"""No audit, no access, against the real gateway: PostgreSQL made unavailable before and
during transfers (gunicorn, moto's S3 server, a database of the test's own)."""
from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from urllib3.exceptions import ProtocolError

from gateway.db.models import StoredObject
from tests.services import PostgresServer, _psycopg
from tests.stack import LiveGateway, build_stack
from tests.test_files_api import auth, events, pdf_bytes

MIB = 1024 * 1024


@pytest.fixture
def pg_live(postgres_server: PostgresServer, moto_endpoint: str,
            tmp_path: Path) -> Iterator[tuple[LiveGateway, str]]:
    psycopg = _psycopg()
    name = f"gw_fc_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    stack = build_stack(postgres_server.url(name), moto_endpoint, tmp_path)
    gw = LiveGateway(stack, tmp_path / "gunicorn.log", workers=1)
    try:
        yield gw, name
    finally:
        gw.stop()
        stack.close()
        with psycopg.connect(postgres_server.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stored(live: LiveGateway, name: str, size: int, seed: int) -> tuple[str, bytes]:
    """Upload ``size`` bytes as ``uploads/fc/NAME``; its URL and content."""
    data = pdf_bytes(size, seed=seed)
    url = f"{live.url}/api/v1/files/uploads/fc/{name}"
    assert requests.put(url, data=data, headers=auth(live, "staff1"), timeout=120).status_code == 201
    return url, data


@contextmanager
def database_down(server: PostgresServer, name: str) -> Iterator[None]:
    """Refuse new connections to ``name`` and end every open one, then allow them again."""
    psycopg = _psycopg()
    with psycopg.connect(server.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            yield
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_nothing_is_served_while_the_audit_database_is_down(
        pg_live: tuple[LiveGateway, str], postgres_server: PostgresServer) -> None:
    live, name = pg_live
    url, data = stored(live, "scan.pdf", 3 * MIB + 5, seed=11)
    keys_before = sorted(live.stack.services.store.list_keys())

    with database_down(postgres_server, name):
        for method, kwargs in (("GET", {}), ("HEAD", {}),
                               ("GET", {"headers": {"Range": "bytes=0-99"}}),
                               ("PUT", {"data": pdf_bytes(2 * MIB, seed=12)})):
            target = url if method != "PUT" else url.replace("scan.pdf", "new.pdf")
            resp = requests.request(method, target, timeout=60,
                                    headers={**auth(live, "staff1"), **kwargs.pop("headers", {})},
                                    **kwargs)
            assert resp.status_code == 503, (method, resp.status_code, resp.text[:200])
            if method != "HEAD":
                assert resp.json()["error"]["code"] == "audit_unavailable"
                assert data[:100] not in resp.content
        assert requests.get(f"{live.url}/readyz", timeout=30).status_code == 503

    # nothing reached the bucket, and the trail shows no access while it was down
    assert sorted(live.stack.services.store.list_keys()) == keys_before
    with live.stack.services.sessions() as s:
        assert s.scalar(select(StoredObject).where(StoredObject.path == "uploads/fc/new.pdf")) is None
    reads = [e for e in events(live, object_path="uploads/fc/scan.pdf")
             if e.action in ("view", "download", "range_read")]
    assert reads == []
    # and once it is back, the same request is served and recorded
    again = requests.get(url, headers=auth(live, "staff1"), timeout=60)
    assert again.status_code == 200 and again.content == data
    assert [e.outcome for e in events(live, object_path="uploads/fc/scan.pdf", action="view")] \
        == ["started", "completed"]


def test_a_download_whose_end_cannot_be_recorded_is_cut_short(
        pg_live: tuple[LiveGateway, str], postgres_server: PostgresServer) -> None:
    live, name = pg_live
    url, data = stored(live, "big.pdf", 24 * MIB + 3, seed=13)

    resp = requests.get(url, headers=auth(live, "staff1"), stream=True, timeout=60)
    assert resp.status_code == 200
    received = bytearray()
    chunks = resp.raw.stream(256 * 1024, decode_content=False)
    received += next(chunks)  # the transfer is under way, its start on record
    with database_down(postgres_server, name):
        with pytest.raises(ProtocolError):  # the connection ends before Content-Length bytes
            for chunk in chunks:
                received += chunk
    # the client holds a strict prefix of the file, never all of it
    assert 0 < len(received) < len(data)
    assert bytes(received) == data[:len(received)]
    trail = [e.outcome for e in events(live, object_path="uploads/fc/big.pdf", action="view")]
    assert trail == ["started"]  # visibly unfinished: no completion was recorded
    assert hashlib.sha256(requests.get(url, headers=auth(live, "staff1"), timeout=60).content) \
        .digest() == hashlib.sha256(data).digest()
