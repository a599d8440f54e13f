"""The admin console's JSON API (``/api/v1/admin/...``): admins only, their own organisation only.

Users (list, create, deactivate and reactivate, change role, reset password), API tokens
(list, create - shown once -, revoke), key versions with object counts, rotation jobs and
storage health. Everything that changes something is done and audited by
:mod:`gateway.accounts`, exactly as the ``gateway users|tokens`` commands do. Staff and
auditors get ``403`` with a ``denied`` audit row (:func:`~gateway.web.auth.require_roles`).
Cookie-authenticated writes need the ``X-CSRFToken`` header.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for
from flask_login import current_user

from ..accounts import create_user as _create_user
from ..accounts import (
    generate_password,
    get_user,
    issue_reset_link,
    issue_token,
    list_tokens,
    list_users,
    reset_password,
    revoke_token,
    set_active,
    set_role,
)
from ..accounts.overview import jobs, key_versions, storage_health
from .auth import require_roles
from .context import current_actor, services
from .errors import ApiError

bp = Blueprint("admin_api", __name__, url_prefix="/api/v1/admin")
admin_only = require_roles("admin")


@bp.after_request
def _no_store(response):  # type: ignore[no-untyped-def]
    response.headers["Cache-Control"] = "no-store"  # answers carry tokens and passwords
    return response


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    return data


def _org() -> str:
    return str(current_user.org_id)


def _reset_answer(link: Any) -> dict[str, Any]:
    return {"reset_url": url_for("admin_pages.reset_page", token=link.token, _external=True),
            "expires_at": link.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")}


@bp.get("/users")
@admin_only
def users_list():  # type: ignore[no-untyped-def]
    return jsonify({"users": [u.as_json() for u in list_users(services(), scope_org=_org())]})


@bp.post("/users")
@admin_only
def users_create():  # type: ignore[no-untyped-def]
    data = _body()
    email, role = data.get("email"), data.get("role", "staff")
    credential = data.get("credential", "link")
    if not isinstance(email, str) or not isinstance(role, str):
        raise ApiError(400, "bad_request", "email and role must be strings")
    if credential not in ("link", "password"):
        raise ApiError(400, "bad_request", 'credential must be "link" or "password"')
    svc, actor = services(), current_actor()
    password = generate_password()
    user_id = _create_user(svc, email, _org(), role, password, actor=actor)
    answer: dict[str, Any] = {"user": get_user(svc, user_id, scope_org=_org()).as_json()}
    if credential == "password":
        answer["password"] = password
    else:
        answer.update(_reset_answer(issue_reset_link(svc, user_id, actor=actor,
                                                     scope_org=_org())))
    return jsonify(answer), 201


@bp.get("/users/<int:user_id>")
@admin_only
def users_get(user_id: int):  # type: ignore[no-untyped-def]
    return jsonify({"user": get_user(services(), user_id, scope_org=_org()).as_json()})


@bp.patch("/users/<int:user_id>")
@admin_only
def users_update(user_id: int):  # type: ignore[no-untyped-def]
    data = _body()
    unknown = set(data) - {"role", "active"}
    if unknown or not data:
        raise ApiError(400, "bad_request", 'send "role" and/or "active"')
    if "active" in data and not isinstance(data["active"], bool):
        raise ApiError(400, "bad_request", '"active" must be true or false')
    if "role" in data and not isinstance(data["role"], str):
        raise ApiError(400, "bad_request", '"role" must be staff, auditor or admin')
    svc, actor = services(), current_actor()
    changed: list[str] = []
    if "role" in data:
        info, did = set_role(svc, user_id, data["role"], actor=actor, scope_org=_org())
        changed += ["role"] if did else []
    if "active" in data:
        info, did = set_active(svc, user_id, data["active"], actor=actor, scope_org=_org())
        changed += ["active"] if did else []
    return jsonify({"user": info.as_json(), "changed": changed})


@bp.post("/users/<int:user_id>/reset-password")
@admin_only
def users_reset_password(user_id: int):  # type: ignore[no-untyped-def]
    data = request.get_json(silent=True) or {}
    method = data.get("method", "link") if isinstance(data, dict) else None
    if method not in ("link", "password"):
        raise ApiError(400, "bad_request", 'method must be "link" or "password"')
    svc, actor = services(), current_actor()
    if method == "password":
        return jsonify({"password": reset_password(svc, user_id, actor=actor, scope_org=_org())})
    return jsonify(_reset_answer(issue_reset_link(svc, user_id, actor=actor, scope_org=_org())))


@bp.get("/tokens")
@admin_only
def tokens_list():  # type: ignore[no-untyped-def]
    user = request.args.get("user") or None
    found = list_tokens(services(), user_ref=user, scope_org=_org())
    return jsonify({"tokens": [t.as_json() for t in found]})


@bp.post("/tokens")
@admin_only
def tokens_create():  # type: ignore[no-untyped-def]
    data = _body()
    user, days = data.get("user"), data.get("expires_days", 90)
    if not isinstance(user, (int, str)) or isinstance(user, bool) or not str(user).strip():
        raise ApiError(400, "bad_request", '"user" must be a user id or e-mail address')
    if not isinstance(days, int) or isinstance(days, bool):
        raise ApiError(400, "bad_request", '"expires_days" must be a whole number of days')
    new = issue_token(services(), user, days, actor=current_actor(), scope_org=_org())
    return jsonify(new.as_json()), 201


@bp.delete("/tokens/<int:token_id>")
@admin_only
def tokens_revoke(token_id: int):  # type: ignore[no-untyped-def]
    info = revoke_token(services(), token_id, actor=current_actor(), scope_org=_org())
    return jsonify(info.as_json())


@bp.get("/keys")
@admin_only
def keys():  # type: ignore[no-untyped-def]
    return jsonify(key_versions(services(), _org()))


@bp.get("/jobs")
@admin_only
def jobs_list():  # type: ignore[no-untyped-def]
    return jsonify(jobs(services(), _org()))


@bp.get("/storage")
@admin_only
def storage():  # type: ignore[no-untyped-def]
    return jsonify(storage_health(services(), _org()))


__all__ = ["bp"]
