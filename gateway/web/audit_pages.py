"""The audit console's pages (auditors and admins; staff get the 403 page, audited): the
search (``/audit``), the histories of a file, a user and a folder, and the review dashboard.

The pages hold no events: their scripts ask ``/api/v1/audit/...``, which records each query.
"""
from __future__ import annotations

from flask import Blueprint, make_response, render_template, request
from flask_login import current_user
from sqlalchemy import select

from ..audit import Action, Outcome, folder_prefix
from ..db.models import User
from .auth import require_roles
from .context import services

bp = Blueprint("audit_pages", __name__)

ROLES = ("auditor", "admin")
ACTIONS = [a.value for a in Action]
OUTCOMES = [o.value for o in Outcome]


def _page(template: str, status: int = 200, **context):  # type: ignore[no-untyped-def]
    resp = make_response(render_template(template, user=current_user, actions=ACTIONS,
                                         outcomes=OUTCOMES, **context), status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/audit")
@require_roles(*ROLES)
def audit_page():  # type: ignore[no-untyped-def]
    return _page("audit.html")


@bp.get("/audit/objects/<object_id>")
@require_roles(*ROLES)
def object_page(object_id: str):  # type: ignore[no-untyped-def]
    # the page names the file only from the events its script reads (of this organisation):
    # a foreign id and a missing one show the same empty history
    return _page("audit_history.html", kind="object", heading="Access history of a file",
                 subject=object_id, api=f"/api/v1/audit/objects/{object_id}")


@bp.get("/audit/users/<int:user_id>")
@require_roles(*ROLES)
def user_page(user_id: int):  # type: ignore[no-untyped-def]
    with services().sessions() as session:
        email = session.scalar(select(User.email).where(
            User.id == user_id, User.org_id == current_user.org_id))
    return _page("audit_history.html", kind="user", heading="Activity of a user",
                 subject=email or f"user {user_id}", api=f"/api/v1/audit/users/{user_id}")


@bp.get("/audit/folders")
@require_roles(*ROLES)
def folder_page():  # type: ignore[no-untyped-def]
    raw = request.args.get("prefix", "")
    try:
        prefix = folder_prefix(raw) if raw.strip() else ""
    except ValueError as exc:
        return _page("audit_history.html", 400, kind="folder", heading="Access to a folder",
                     subject=raw, api="", error=str(exc))
    return _page("audit_history.html", kind="folder", heading="Access to a folder",
                 subject=prefix, api="/api/v1/audit/folders", prefix=prefix)


@bp.get("/audit/review")
@require_roles(*ROLES)
def review_page():  # type: ignore[no-untyped-def]
    return _page("audit_review.html")


__all__ = ["bp"]
