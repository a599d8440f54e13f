"""Creating organisations, users and API tokens (the ``gateway orgs|users|tokens`` commands,
the admin API and the dev stack use these).

Each function takes the acting ``actor`` (a :class:`gateway.principal.Actor`) and records the
change in the audit trail (:mod:`.trail`); set-up code that seeds a database passes none.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import ApiToken, Organisation, User, utcnow
from .credentials import hash_password, hash_token, new_api_token
from .errors import AccountError, AccountExists, AccountNotFound
from .trail import iso, record, refusals


class AccountServices(Protocol):
    """What these functions use (the application's services provide it)."""

    sessions: sessionmaker[Session]
    keyring: Any  # only :func:`create_organisation` uses it: ``create_org_key(session, org_id)``
    audit: Any  # ``record(action=..., outcome=..., actor=..., org_id=..., detail=...)``


def find_org(session: Session, ref: str) -> Organisation:
    """An organisation by id or by name.

    :raises AccountNotFound: if there is none.
    """
    org = session.get(Organisation, ref) or session.scalar(
        select(Organisation).where(Organisation.name == ref)
    )
    if org is None:
        raise AccountNotFound(f"no organisation with id or name {ref!r}")
    return org


def create_organisation(services: AccountServices, name: str, mode: str = "cse", *,
                        actor: Any = None) -> str:
    """Create an organisation with key version 1 and return its id."""
    name = name.strip()
    with refusals(services, actor, "org_create", None, {"name": name, "mode": mode}):
        if not name or len(name) > 200:
            raise AccountError("organisation name must be 1-200 characters")
        with services.sessions() as s:
            org = Organisation(name=name, encryption_mode=mode)
            s.add(org)
            try:
                s.flush()
            except IntegrityError:
                raise AccountExists(f"an organisation named {name!r} already exists") from None
            services.keyring.create_org_key(s, org.id)
            s.commit()
            org_id = org.id
    record(services, actor, "org_create", org_id,
           {"org_id": org_id, "after": {"name": name, "mode": mode, "key_version": 1}})
    return org_id


def create_user(services: AccountServices, email: str, org_ref: str, role: str, password: str,
                *, password_hash: str | None = None, actor: Any = None) -> int:
    """Create a user and return its id (``password_hash`` spares hashing a known password)."""
    email = email.strip().lower()
    with refusals(services, actor, "user_create", None,
                  {"email": email, "role": role}) as where:
        if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
            raise AccountError(f"not an e-mail address: {email!r}")
        if role not in {"staff", "auditor", "admin"}:
            raise AccountError(f"unknown role {role!r}: use one of staff, auditor, admin")
        with services.sessions() as s:
            org = find_org(s, org_ref)
            where["org_id"] = org.id
            if s.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
                raise AccountExists(f"a user {email} already exists")
            user = User(org_id=org.id, email=email, role=role,
                        password_hash=password_hash or hash_password(password))
            s.add(user)
            s.commit()
            user_id, org_id = user.id, org.id
    record(services, actor, "user_create", org_id,
           {"user_id": user_id, "email": email, "after": {"role": role, "active": True}})
    return user_id


def find_user(session: Session, email: str) -> User:
    """A user by e-mail address (case-insensitive).

    :raises AccountNotFound: if there is none.
    """
    email = email.strip().lower()
    user = session.scalar(select(User).where(func.lower(User.email) == email))
    if user is None:
        raise AccountNotFound(f"no user {email}")
    return user


def load_user(s: Session, ref: int | str, scope_org: str | None = None) -> User:
    """A user by id or e-mail address, within ``scope_org`` when given.

    :raises AccountNotFound: if there is none (there).
    """
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        user = s.get(User, int(ref))
        if user is None:
            raise AccountNotFound(f"no user with id {ref}")
    else:
        user = find_user(s, ref)
    if scope_org is not None and user.org_id != scope_org:
        raise AccountNotFound(f"no user {ref} in your organisation")
    return user


@dataclass(frozen=True)
class NewToken:
    """A token just created: the token itself (shown this once) and its row's fields."""

    token: str
    id: int
    prefix: str
    user_id: int
    email: str
    created_at: datetime
    expires_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"token": self.token, "id": self.id, "prefix": self.prefix,
                "user_id": self.user_id, "email": self.email,
                "created_at": iso(self.created_at), "expires_at": iso(self.expires_at)}


def issue_token(services: AccountServices, ref: int | str, expires_days: int = 90, *,
                actor: Any = None, scope_org: str | None = None) -> NewToken:
    """Create an API token for an active user (only its hash is stored)."""
    with refusals(services, actor, "token_create", scope_org,
                  {"user": str(ref), "expires_days": expires_days}) as where:
        if not 1 <= int(expires_days) <= 3650:
            raise AccountError("a token expires after 1 to 3650 days")
        with services.sessions() as s:
            user = load_user(s, ref, scope_org)
            where["org_id"] = user.org_id
            if not user.is_active:
                raise AccountExists(f"{user.email} is deactivated; reactivate the account first")
            token = new_api_token()
            now = utcnow()
            row = ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10],
                           created_at=now, expires_at=now + timedelta(days=int(expires_days)))
            s.add(row)
            s.commit()
            new = NewToken(token, row.id, row.prefix, user.id, user.email, now,
                           now + timedelta(days=int(expires_days)))
            org_id = user.org_id
    record(services, actor, "token_create", org_id,
           {"user_id": new.user_id, "email": new.email, "token_id": new.id,
            "prefix": new.prefix, "after": {"expires_at": iso(new.expires_at)}})
    return new


def create_token(services: AccountServices, email: str, expires_days: int = 90, *,
                 actor: Any = None) -> str:
    """Create a token for the user and return it (the only time it exists in the clear)."""
    return issue_token(services, email, expires_days, actor=actor).token


def revoke_tokens(services: AccountServices, email: str, prefix: str | None = None, *,
                  actor: Any = None) -> int:
    """Revoke every live token of a user, or the ones starting with ``prefix``; how many."""
    with refusals(services, actor, "token_revoke", None,
                  {"user": email, "prefix": prefix}) as where:
        with services.sessions() as s:
            user = find_user(s, email)
            where["org_id"] = org_id = user.org_id
            rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                    ApiToken.revoked_at.is_(None))).all()
            rows = [t for t in rows if prefix is None or t.prefix.startswith(prefix[:10])]
            for t in rows:
                t.revoked_at = utcnow()
            revoked = [{"token_id": t.id, "prefix": t.prefix} for t in rows]
            target = {"user_id": user.id, "email": user.email}
            s.commit()
    if revoked:
        record(services, actor, "token_revoke", org_id,
               {**target, "tokens": revoked, "before": {"revoked": False},
                "after": {"revoked": True}})
    return len(revoked)
