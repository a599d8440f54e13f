"""Browser pages: the file list with uploads, and the audit view for auditors."""
from __future__ import annotations

from flask import Blueprint, render_template, request
from flask_login import current_user, login_required

from .context import current_actor, services

bp = Blueprint("pages", __name__)


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    prefix = request.args.get("prefix", "")
    objects = services().objects.list(current_actor(), prefix)
    return render_template("index.html", objects=objects, prefix=prefix, user=current_user)


@bp.get("/audit")
@login_required
def audit_page():  # type: ignore[no-untyped-def]
    return render_template("audit.html", user=current_user)
