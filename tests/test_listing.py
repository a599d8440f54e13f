"""Listing by prefix matches exactly, on SQLite as on PostgreSQL."""
from __future__ import annotations

from gateway.db.models import AuditEvent
from gateway.principal import Actor
from tests.stack import Stack

PDF = b"%PDF-1.7\n" + bytes(100)


def _actor(stack: Stack, who: str) -> Actor:
    u = stack.users[who]
    return Actor(org_id=u.org_id, user_id=u.user_id, email=u.email, role=u.role)


def test_a_prefix_lists_only_paths_that_start_with_it_exactly(stack: Stack) -> None:
    objects = stack.services.objects
    staff = _actor(stack, "staff1")
    for path in ("uploads/forms/1/a.pdf", "uploads/FORMS/2/b.pdf", "uploads/forms_x/c.pdf",
                 "uploads/forms%/d.pdf", "uploads/Forms/e.pdf", "documents/forms/f.pdf"):
        objects.upload(staff, path, [PDF])

    def listed(prefix: str) -> list[str]:
        return [o.path for o in objects.list(staff, prefix)]

    assert listed("uploads/forms/") == ["uploads/forms/1/a.pdf"]
    assert listed("uploads/FORMS/") == ["uploads/FORMS/2/b.pdf"]
    assert listed("uploads/forms_") == ["uploads/forms_x/c.pdf"]  # "_" is no wildcard
    assert listed("uploads/forms%") == ["uploads/forms%/d.pdf"]  # nor "%"
    assert listed("uploads/") == sorted(["uploads/forms/1/a.pdf", "uploads/FORMS/2/b.pdf",
                                         "uploads/forms_x/c.pdf", "uploads/forms%/d.pdf",
                                         "uploads/Forms/e.pdf"])
    with stack.services.sessions() as s:
        last = s.query(AuditEvent).filter(AuditEvent.action == "list").order_by(
            AuditEvent.id.desc()).first()
    assert last is not None and last.object_path == "uploads/" and '"count":5' in last.detail
