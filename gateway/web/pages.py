"""Browser pages: the file list with uploads, and the audit view for auditors."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from .context import current_actor, services

bp = Blueprint("pages", __name__)


@bp.get("/")
@login_required
def index():  # type: ignore[no-untyped-def]
    if current_user.role == "auditor":
        return redirect(url_for("pages.audit_page"))  # auditors see the trail, not the files
    prefix = request.args.get("prefix", "")
    objects = services().objects.list(current_actor(), prefix)
    return render_template("index.html", objects=objects, prefix=prefix, user=current_user)


@bp.get("/audit")
@login_required
def audit_page():  # type: ignore[no-untyped-def]
    return render_template("audit.html", user=current_user)
