"""An account's life after it is created: listing users and tokens, deactivating and
reactivating, changing a role, resetting a password (printed, or a one-time link), revoking
one token.

The ``gateway users|tokens`` commands and the admin API both call these, so a change is the
same - and audited the same (:mod:`.trail`) - whichever door it came through. ``scope_org``
confines a call to one organisation: the admin API passes the admin's own, and a user or token
of another organisation is then "not found". The command line passes none (the operator of
the server sees every organisation).
"""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ..db.models import ApiToken, Organisation, PasswordReset, Role, User, utcnow
from .admin import AccountServices, find_org, load_user
from .credentials import generate_password, hash_password, hash_token
from .errors import AccountError, AccountExists, AccountNotFound
from .sessions import end_user_sessions
from .trail import iso, record, refusals

#: How long a password-reset link works.
RESET_LINK_SECONDS = 30 * 60
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
ROLES = tuple(r.value for r in Role)


class AccountConflict(AccountExists):
    """The change would leave the organisation without an admin, or lock the admin out."""


@dataclass(frozen=True)
class UserInfo:
    """A user as listed (``gateway users list``, ``GET /api/v1/admin/users``)."""

    id: int
    email: str
    role: str
    org_id: str
    org_name: str
    active: bool
    created_at: datetime
    last_login_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "email": self.email, "role": self.role, "org_id": self.org_id,
            "organisation": self.org_name, "active": self.active,
            "created_at": iso(self.created_at), "last_login_at": iso(self.last_login_at),
        }


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never the token itself, only its first characters."""

    id: int
    prefix: str
    user_id: int
    email: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= utcnow():
            return "expired"
        return "active"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "prefix": self.prefix, "user_id": self.user_id, "email": self.email,
            "created_at": iso(self.created_at), "expires_at": iso(self.expires_at),
            "last_used_at": iso(self.last_used_at), "revoked_at": iso(self.revoked_at),
            "status": self.status,
        }


@dataclass(frozen=True)
class ResetLink:
    """A one-time reset link's token (shown once) and when it stops working."""

    token: str
    expires_at: datetime
    email: str


def _user_info(user: User, org: Organisation) -> UserInfo:
    return UserInfo(user.id, user.email, user.role, user.org_id, org.name, bool(user.is_active),
                    user.created_at, user.last_login_at)


def _token_info(t: ApiToken, user: User) -> TokenInfo:
    return TokenInfo(t.id, t.prefix, user.id, user.email, t.created_at, t.expires_at,
                     t.last_used_at, t.revoked_at)


def _target(user: User) -> dict[str, Any]:
    return {"user_id": user.id, "email": user.email}


def check_password(password: str) -> None:
    """The password rule: 12 to 1024 characters.

    :raises AccountError: naming the rule.
    """
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must be at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must be at most {MAX_PASSWORD} characters")


def _active_admins(s: Session, org_id: str) -> int:
    return int(s.scalar(select(func.count(User.id)).where(
        User.org_id == org_id, User.role == Role.ADMIN.value, User.is_active.is_(True))) or 0)


def _refuse_lockout(s: Session, user: User, actor: Any, what: str) -> None:
    """Refuse to take away the last active admin of an organisation, or one's own access."""
    if actor is not None and getattr(actor, "user_id", None) == user.id:
        raise AccountConflict(f"you cannot {what} your own account")
    if user.role == Role.ADMIN.value and user.is_active and _active_admins(s, user.org_id) <= 1:
        raise AccountConflict(f"{user.email} is the organisation's last active admin; "
                              "make another user admin first")


def list_users(services: AccountServices, *, org_ref: str | None = None,
               scope_org: str | None = None) -> list[UserInfo]:
    """Every user (of one organisation), by organisation name and e-mail address."""
    with services.sessions() as s:
        query = select(User, Organisation).join(Organisation)
        if scope_org is not None:
            query = query.where(User.org_id == scope_org)
        elif org_ref is not None:
            query = query.where(User.org_id == find_org(s, org_ref).id)
        rows = s.execute(query.order_by(Organisation.name, User.email)).all()
        return [_user_info(u, o) for u, o in rows]


def get_user(services: AccountServices, ref: int | str, *,
             scope_org: str | None = None) -> UserInfo:
    """One user, as listed."""
    with services.sessions() as s:
        user = load_user(s, ref, scope_org)
        return _user_info(user, user.organisation)


def set_active(services: AccountServices, ref: int | str, active: bool, *, actor: Any = None,
               scope_org: str | None = None) -> tuple[UserInfo, bool]:
    """Deactivate or reactivate a user; the user as it is now, and whether anything changed.

    Deactivation takes effect at once: the user's browser sessions end, their API tokens are
    revoked (a reactivated user gets new ones), their signed links and reset links stop
    working, and sign-in is refused like a wrong password.

    :raises AccountConflict: for one's own account, or an organisation's last active admin.
    """
    action = "user_reactivate" if active else "user_deactivate"
    with refusals(services, actor, action, scope_org, {"user": str(ref)}) as where:
        with services.sessions() as s:
            user = load_user(s, ref, scope_org)
            org_id = where["org_id"] = user.org_id
            if bool(user.is_active) == active:
                return _user_info(user, user.organisation), False
            detail: dict[str, Any] = {**_target(user), "before": {"active": not active},
                                      "after": {"active": active}}
            if not active:
                _refuse_lockout(s, user, actor, "deactivate")
                now = utcnow()
                tokens = s.scalars(select(ApiToken).where(
                    ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))).all()
                for t in tokens:
                    t.revoked_at = now
                detail["sessions_ended"] = end_user_sessions(s, user.id)
                detail["tokens_revoked"] = [t.prefix for t in tokens]
                s.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id,
                                                      PasswordReset.used_at.is_(None)))
            user.is_active = active
            s.commit()
            info = _user_info(user, user.organisation)
    record(services, actor, action, org_id, detail)
    return info, True


def set_role(services: AccountServices, ref: int | str, role: str, *, actor: Any = None,
             scope_org: str | None = None) -> tuple[UserInfo, bool]:
    """Give a user another role; the user as it is now, and whether anything changed.

    :raises AccountError: for an unknown role.
    :raises AccountConflict: for one's own role, or demoting an organisation's last admin.
    """
    with refusals(services, actor, "user_set_role", scope_org,
                  {"user": str(ref), "role": role}) as where:
        if role not in ROLES:
            raise AccountError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        with services.sessions() as s:
            user = load_user(s, ref, scope_org)
            where["org_id"] = user.org_id
            before = user.role
            if before == role:
                return _user_info(user, user.organisation), False
            _refuse_lockout(s, user, actor, "change the role of")
            user.role = role
            org_id, target = user.org_id, _target(user)
            s.commit()
            info = _user_info(user, user.organisation)
    record(services, actor, "user_set_role", org_id,
           {**target, "before": {"role": before}, "after": {"role": role}})
    return info, True


def _replace_password(s: Session, user: User, password_hash: str) -> int:
    """Set the hash, end the user's sessions, drop pending reset links; sessions ended."""
    user.password_hash = password_hash
    s.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id,
                                          PasswordReset.used_at.is_(None)))
    return end_user_sessions(s, user.id)


def reset_password(services: AccountServices, ref: int | str, *, actor: Any = None,
                   scope_org: str | None = None) -> str:
    """Give a user a new random password and return it (shown once). Their browser sessions
    end and earlier reset links stop working; API tokens are kept."""
    with refusals(services, actor, "password_reset", scope_org,
                  {"user": str(ref), "method": "printed"}) as where:
        password = generate_password()
        with services.sessions() as s:
            user = load_user(s, ref, scope_org)
            where["org_id"] = user.org_id
            if not user.is_active:
                raise AccountConflict(f"{user.email} is deactivated; reactivate the account first")
            ended = _replace_password(s, user, hash_password(password))
            org_id, target = user.org_id, _target(user)
            s.commit()
    record(services, actor, "password_reset", org_id,
           {**target, "method": "printed", "sessions_ended": ended})
    return password


def issue_reset_link(services: AccountServices, ref: int | str, *, actor: Any = None,
                     scope_org: str | None = None,
                     lifetime_seconds: int = RESET_LINK_SECONDS) -> ResetLink:
    """A one-time link's token for the user to choose a new password (``/reset/TOKEN``).

    Only its SHA-256 is stored; it works once, for ``lifetime_seconds``, while the user is
    active. An earlier unused link of the user stops working. The current password keeps
    working until the new one is set.
    """
    with refusals(services, actor, "password_reset", scope_org,
                  {"user": str(ref), "method": "link"}) as where:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        expires = now + timedelta(seconds=lifetime_seconds)
        with services.sessions() as s:
            user = load_user(s, ref, scope_org)
            where["org_id"] = user.org_id
            if not user.is_active:
                raise AccountConflict(f"{user.email} is deactivated; reactivate the account first")
            s.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id,
                                                  PasswordReset.used_at.is_(None)))
            s.add(PasswordReset(user_id=user.id, token_hash=hash_token(token), created_at=now,
                                created_by=getattr(actor, "email", None), expires_at=expires))
            org_id, target, email = user.org_id, _target(user), user.email
            s.commit()
    record(services, actor, "password_reset", org_id,
           {**target, "method": "link", "expires_at": iso(expires)})
    return ResetLink(token, expires, email)


def _pending_reset(s: Session, token: str) -> tuple[PasswordReset, User]:
    row = s.execute(select(PasswordReset, User).join(User, PasswordReset.user_id == User.id)
                    .where(PasswordReset.token_hash == hash_token(token))).first()
    if row is None or row[0].used_at is not None or not row[1].is_active:
        raise AccountNotFound("this reset link is not valid (it may have been used already)")
    if row[0].expires_at <= utcnow():
        raise AccountNotFound("this reset link has expired; ask an admin for a new one")
    return row[0], row[1]


def reset_link_email(services: AccountServices, token: str) -> str:
    """The e-mail address a valid reset link is for.

    :raises AccountNotFound: if the link is unknown, used, expired, or its user inactive.
    """
    with services.sessions() as s:
        return _pending_reset(s, token)[1].email


def redeem_reset_link(services: AccountServices, token: str, password: str, *,
                      actor: Any = None) -> str:
    """Set the new password chosen through a reset link (once); the user's e-mail address.

    ``actor`` is the anonymous visitor; the audit row names the user the link is for. The
    user's other browser sessions end.

    :raises AccountNotFound: if the link does not work (any more).
    :raises AccountError: if the password breaks the rule (the link keeps working).
    """
    check_password(password)
    with refusals(services, actor, "password_set", None, {"method": "link"}):
        with services.sessions() as s:
            reset, user = _pending_reset(s, token)
            reset.used_at = utcnow()
            ended = _replace_password(s, user, hash_password(password))
            who = {"org_id": user.org_id, "user_id": user.id, "email": user.email,
                   "role": user.role}
            created_by = reset.created_by
            s.commit()
    if actor is not None and dataclasses.is_dataclass(actor):
        actor = dataclasses.replace(actor, **who)
    record(services, actor, "password_set", who["org_id"],
           {"user_id": who["user_id"], "email": who["email"], "method": "link",
            "link_issued_by": created_by, "sessions_ended": ended})
    return str(who["email"])


def list_tokens(services: AccountServices, *, user_ref: int | str | None = None,
                org_ref: str | None = None, scope_org: str | None = None) -> list[TokenInfo]:
    """API tokens (of one user, or one organisation), newest first."""
    with services.sessions() as s:
        query = select(ApiToken, User).join(User, ApiToken.user_id == User.id)
        if user_ref is not None:
            query = query.where(User.id == load_user(s, user_ref, scope_org).id)
        if scope_org is not None:
            query = query.where(User.org_id == scope_org)
        elif org_ref is not None:
            query = query.where(User.org_id == find_org(s, org_ref).id)
        rows = s.execute(query.order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()
        return [_token_info(t, u) for t, u in rows]


def revoke_token(services: AccountServices, token_id: int, *, actor: Any = None,
                 scope_org: str | None = None) -> TokenInfo:
    """Revoke one token by its id (at once: the next request with it is refused)."""
    with refusals(services, actor, "token_revoke", scope_org, {"token_id": token_id}) as where:
        with services.sessions() as s:
            row = s.execute(select(ApiToken, User).join(User, ApiToken.user_id == User.id)
                            .where(ApiToken.id == token_id)).first()
            if row is None or (scope_org is not None and row[1].org_id != scope_org):
                raise AccountNotFound(f"no token with id {token_id}")
            token, user = row
            where["org_id"] = user.org_id
            if token.revoked_at is not None:
                raise AccountConflict(f"token {token.prefix}… is already revoked")
            token.revoked_at = utcnow()
            org_id = user.org_id
            s.commit()
            info = _token_info(token, user)
    record(services, actor, "token_revoke", org_id,
           {"user_id": info.user_id, "email": info.email, "token_id": info.id,
            "prefix": info.prefix, "before": {"revoked": False}, "after": {"revoked": True}})
    return info


__all__ = [
    "MIN_PASSWORD", "RESET_LINK_SECONDS", "ROLES", "AccountConflict", "ResetLink", "TokenInfo",
    "UserInfo", "check_password", "get_user", "issue_reset_link", "list_tokens", "list_users",
    "load_user", "redeem_reset_link", "reset_link_email", "reset_password", "revoke_token",
    "set_active", "set_role",
]
