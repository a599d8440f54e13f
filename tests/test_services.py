"""The services of tests/services.py start and answer."""
from __future__ import annotations

import os
import socket
import uuid

import pytest
import sqlalchemy as sa

from tests.services import free_port, reset_moto, service_unavailable, wait_for_http


def test_free_port_is_bindable():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_http_times_out_on_a_closed_port():
    with pytest.raises(TimeoutError):
        wait_for_http(f"http://127.0.0.1:{free_port()}/", timeout=0.3)


def test_service_unavailable_skips_or_fails(monkeypatch):
    monkeypatch.delenv("GATEWAY_TEST_REQUIRE_ALL", raising=False)
    with pytest.raises(pytest.skip.Exception):
        service_unavailable("nothing here")
    monkeypatch.setenv("GATEWAY_TEST_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception):
        service_unavailable("nothing here")


def test_postgres_url_answers(postgres_url):
    assert postgres_url.startswith("postgresql+psycopg://gw@127.0.0.1:")
    assert postgres_url.endswith("/gw")
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "gw"
            assert conn.execute(sa.text("SHOW fsync")).scalar_one() == "off"
    finally:
        engine.dispose()


def test_postgres_with_psycopg(postgres_server):
    import psycopg

    with psycopg.connect(postgres_server.conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_db_url_is_a_fresh_usable_database(db_url):
    engine = sa.create_engine(db_url)
    try:
        metadata = sa.MetaData()
        table = sa.Table(
            "probe", metadata,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50)),
        )
        with engine.begin() as conn:
            assert sa.inspect(conn).get_table_names() == []
            metadata.create_all(conn)
            conn.execute(table.insert(), [{"name": "a"}, {"name": "b"}])
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 2
    finally:
        engine.dispose()


def test_db_url_backends(request, db_url):
    backend = request.node.callspec.params["db_url"]
    assert sa.make_url(db_url).get_backend_name() == backend
    if backend == "postgresql":
        assert request.node.get_closest_marker("postgres") is not None


def test_moto_runs_in_its_own_process(moto_server, moto_endpoint):
    assert moto_server.endpoint == moto_endpoint
    assert moto_server.pid != os.getpid()
    os.kill(moto_server.pid, 0)  # alive


def test_aws_env_is_fake(moto_endpoint):
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"]


def test_moto_put_get_and_reset(moto_endpoint):
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="a/b")["Body"].read() == b"hello"

    reset_moto(moto_endpoint)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket not in names
    s3.close()


def test_chromium_renders_a_page(page, chromium_path):
    page.goto("data:text/html,<h1>hi</h1>")
    assert page.inner_text("h1") == "hi"
    assert page.context.browser.version


def test_each_test_gets_a_fresh_context(page):
    page.goto("data:text/html,<p>x</p>")
    assert page.context.cookies() == []
