"""Buckets that block SSE-C (AWS, new buckets since April 2026): detected from the bucket's
encryption configuration, and said in one line by ``gateway storage setup`` and ``/readyz``.

moto does not know ``BlockedEncryptionTypes``, so the S3 answers are stubbed at the storage
edge (botocore's Stubber on the store's own client): the rest runs as in production.
"""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from botocore.stub import Stubber
from click.testing import CliRunner

from gateway.cli.storage import storage
from gateway.storage import ObjectStore
from tests.stack import Stack

BLOCKED = {"ServerSideEncryptionConfiguration": {"Rules": [{
    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
    "BucketKeyEnabled": False,
    "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]},
}]}}
UNBLOCKED = {"ServerSideEncryptionConfiguration": {"Rules": [{
    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
    "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]},
}]}}


@pytest.fixture
def stubbed(sqlite_stack: Stack) -> Iterator[tuple[ObjectStore, Stubber]]:
    store = sqlite_stack.services.store
    with Stubber(store.client) as stub:
        yield store, stub


def _encryption(stub: Stubber, store: ObjectStore, answer: dict[str, Any] | None,
                error: str | None = None) -> None:
    if error is not None:
        stub.add_client_error("get_bucket_encryption", service_error_code=error,
                              http_status_code=404 if "NotFound" in error else 501,
                              expected_params={"Bucket": store.bucket})
    else:
        stub.add_response("get_bucket_encryption", answer, {"Bucket": store.bucket})


def test_the_store_reads_the_blocked_encryption_types(stubbed) -> None:  # type: ignore[no-untyped-def]
    store, stub = stubbed
    _encryption(stub, store, BLOCKED)
    _encryption(stub, store, UNBLOCKED)
    _encryption(stub, store, None, "ServerSideEncryptionConfigurationNotFoundError")
    _encryption(stub, store, None, "NotImplemented")
    blocked = store.bucket_encryption()
    assert blocked is not None and blocked.ssec_blocked and blocked.algorithms == ("AES256",)
    unblocked = store.bucket_encryption()
    assert unblocked is not None and not unblocked.ssec_blocked and unblocked.blocked == ()
    none = store.bucket_encryption()
    assert none is not None and not none.ssec_blocked
    assert store.bucket_encryption() is None  # this S3 cannot say
    stub.assert_no_pending_responses()


def test_readyz_says_what_to_do_when_the_bucket_blocks_ssec(sqlite_stack: Stack, stubbed) -> None:  # type: ignore[no-untyped-def]
    from gateway.app import create_app

    store, stub = stubbed
    client = create_app(services=sqlite_stack.services, test_config={"TESTING": True}).test_client()
    stub.add_response("head_bucket", {}, {"Bucket": store.bucket})
    _encryption(stub, store, BLOCKED)
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "not ready" and body["checks"]["bucket"] == "ok"
    line = body["checks"]["ssec"]
    assert "\n" not in line and "Clinic SSEC" in line and "blocks SSE-C" in line
    assert "gateway keys migrate-ssec" in line and "BlockedEncryptionTypes NONE" in line

    stub.add_response("head_bucket", {}, {"Bucket": store.bucket})
    _encryption(stub, store, UNBLOCKED)
    ok = client.get("/readyz")
    assert ok.status_code == 200 and ok.get_json()["checks"]["ssec"] == "ok"
    stub.assert_no_pending_responses()


def test_storage_setup_says_what_to_do_when_the_bucket_blocks_ssec(
        sqlite_stack: Stack, stubbed, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    store, stub = stubbed
    monkeypatch.setattr(store, "setup_bucket", lambda origin: ["bucket exists"])
    runner = CliRunner()
    _encryption(stub, store, BLOCKED)
    result = runner.invoke(storage, ["setup"], obj={"services": sqlite_stack.services})
    assert result.exit_code == 1, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("gateway: bucket ") and "Clinic SSEC" in last
    assert "gateway keys migrate-ssec --org ORG" in last

    _encryption(stub, store, UNBLOCKED)
    fine = runner.invoke(storage, ["setup"], obj={"services": sqlite_stack.services})
    assert fine.exit_code == 0 and "SSE-C allowed for 1 organisation(s)" in fine.output
    stub.assert_no_pending_responses()


def test_readyz_against_a_bucket_that_allows_ssec(client: Any, sqlite_stack: Stack) -> None:
    """moto's own answer (the default encryption ``storage setup`` wrote, nothing blocked);
    without an organisation in ssec mode the bucket is not asked."""
    from sqlalchemy import update

    from gateway.db.models import Organisation

    resp = client.get("/readyz")
    assert resp.status_code == 200 and resp.get_json()["checks"]["ssec"] == "ok"

    with sqlite_stack.services.sessions() as s:
        s.execute(update(Organisation).values(encryption_mode="cse"))
        s.commit()
    resp = client.get("/readyz")
    assert resp.status_code == 200 and "ssec" not in resp.get_json()["checks"]
