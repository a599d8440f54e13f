"""The object service directly: delete, restore and purge; failed uploads leave nothing."""
from __future__ import annotations

import hashlib

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway.cli import cli
from gateway.db.models import AuditEvent, StoredObject
from gateway.files import NotFound, TooLarge, UnsupportedType
from gateway.principal import Actor
from tests.stack import Stack

PDF = b"%PDF-1.7\n" + bytes(5000)


def actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)


def test_delete_restore_purge(stack: Stack, monkeypatch) -> None:
    svc = stack.services
    staff = actor(stack, "staff1")
    obj = svc.objects.upload(staff, "templates/t.pdf", [PDF])
    svc.objects.delete(staff, "templates/t.pdf")
    with pytest.raises(NotFound):
        svc.objects.find(staff, "templates/t.pdf", "view")
    for k, v in stack.env.items():
        monkeypatch.setenv(k, v)
    runner = CliRunner()
    restored = runner.invoke(cli, ["files", "restore", obj.id, "--org", stack.org1])
    assert restored.exit_code == 0, restored.output
    again = svc.objects.find(staff, "templates/t.pdf", "view")
    assert hashlib.sha256(b"".join(svc.objects.open(staff, again).body)).hexdigest() == obj.sha256
    svc.objects.delete(staff, "templates/t.pdf")
    purged = runner.invoke(cli, ["files", "purge", "--older-than-days", "0"])
    assert purged.exit_code == 0 and "purged 1" in purged.output
    with svc.sessions() as s:
        assert s.get(StoredObject, obj.id) is None
    assert obj.s3_key not in dict(svc.store.list_keys(stack.org1 + "/"))


def test_failed_uploads_leave_nothing(stack: Stack) -> None:
    svc = stack.services
    staff = actor(stack, "staff1")
    limit = svc.settings.max_upload_bytes

    def too_much():
        yield PDF
        for _ in range(limit // (8 << 20) + 2):
            yield bytes(8 << 20)

    with pytest.raises(TooLarge):
        svc.objects.upload(staff, "uploads/huge.pdf", too_much())
    with pytest.raises(UnsupportedType):
        svc.objects.upload(staff, "uploads/fake.pdf", [b"#!/bin/sh\nrm -rf /\n"])

    def broken():
        yield PDF
        yield bytes(10 << 20)
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        svc.objects.upload(staff, "uploads/broken.pdf", broken())
    with svc.sessions() as s:
        assert s.scalars(select(StoredObject)).all() == []
    assert list(svc.store.list_keys("")) == []
    assert svc.store.list_multipart_uploads("") == []


def test_other_org_cannot_reach_object_by_id(stack: Stack) -> None:
    svc = stack.services
    obj = svc.objects.upload(actor(stack, "staff1"), "uploads/x.pdf", [PDF])
    with pytest.raises(NotFound):
        svc.objects.get_by_id(actor(stack, "staff2"), obj.id, "view")


@pytest.mark.parametrize("range_header", [None, "bytes=100-20000000"])
def test_a_download_closed_early_stops_its_threads_at_once(sqlite_stack: Stack,
                                                           range_header: str | None) -> None:
    """The WSGI server closes the body when the client goes away: the read-ahead threads (S3,
    decryption) stop without waiting for the garbage collector, and the end is audited."""
    import gc
    import threading
    import time

    services = sqlite_stack.services
    who = actor(sqlite_stack, "staff1")
    data = b"%PDF-1.7\n" + bytes(30 << 20)
    obj = services.objects.upload(who, "uploads/closed-early.pdf",
                                  [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
    gc.disable()
    try:
        before = {t.ident for t in threading.enumerate()}
        body = iter(services.objects.open(who, obj, range_header=range_header).body)
        assert next(body)  # made before the answer started; it goes out from this thread
        assert next(body)  # the read-ahead thread starts with the second chunk
        mine = [t for t in threading.enumerate()
                if t.ident not in before and t.name == "read-ahead"]
        assert len(mine) == 1  # it reads S3 and decrypts
        body.close()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 2
        while any(t.is_alive() for t in mine) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(t.is_alive() for t in mine)
    finally:
        gc.enable()
    with services.sessions() as s:
        rows = s.scalars(select(AuditEvent).where(AuditEvent.object_id == obj.id)
                         .order_by(AuditEvent.id)).all()
    assert rows[-1].outcome == "aborted" and 0 < rows[-1].bytes < len(data)
