"""The admin console page (admins only: staff and auditors get the 403 page, audited) and the
page behind a one-time password-reset link (``/reset/TOKEN``), where a user chooses a new
password without being signed in."""
from __future__ import annotations

from flask import Blueprint, make_response, render_template, request, url_for
from flask_login import current_user

from ..accounts import (
    AccountError,
    AccountNotFound,
    redeem_reset_link,
    reset_link_email,
)
from ..accounts.lifecycle import MIN_PASSWORD
from .auth import require_roles
from .context import anonymous_actor, services

bp = Blueprint("admin_pages", __name__)


def _page(template: str, status: int = 200, **context):  # type: ignore[no-untyped-def]
    resp = make_response(render_template(template, **context), status)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/admin")
@require_roles("admin")
def admin_page():  # type: ignore[no-untyped-def]
    return _page("admin.html", user=current_user)


@bp.route("/reset/<token>", methods=["GET", "POST"])
def reset_page(token: str):  # type: ignore[no-untyped-def]
    svc = services()

    def invalid(exc: AccountError):  # type: ignore[no-untyped-def]
        return _page("reset.html", 404, invalid=exc.message, min_length=MIN_PASSWORD)

    def form(status: int = 200, error: str | None = None):  # type: ignore[no-untyped-def]
        try:
            email = reset_link_email(svc, token)
        except AccountNotFound as exc:
            return invalid(exc)
        return _page("reset.html", status, email=email, min_length=MIN_PASSWORD, error=error)

    if request.method == "GET":
        return form()
    password = request.form.get("password", "")
    if password != request.form.get("confirm", ""):
        return form(400, "The two passwords differ.")
    try:
        email = redeem_reset_link(svc, token, password, actor=anonymous_actor())
    except AccountNotFound as exc:  # unknown, used or expired: audited as denied
        return invalid(exc)
    except AccountError as exc:  # the password breaks the rule; the link still works
        return form(400, exc.message)
    return _page("reset.html", done=True, email=email, login=url_for("auth.login"))


__all__ = ["bp"]
