"""Creating organisations, users and API tokens (the ``gateway orgs|users|tokens`` commands
and the dev stack use these)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ..db.models import ApiToken, Organisation, User, utcnow
from .credentials import hash_password, hash_token, new_api_token
from .errors import AccountError, AccountExists, AccountNotFound


class AccountServices(Protocol):
    """What these functions use (the application's services provide it)."""

    sessions: sessionmaker[Session]
    keyring: Any  # only :func:`create_organisation` uses it: ``create_org_key(session, org_id)``


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


def create_organisation(services: AccountServices, name: str, mode: str = "cse") -> str:
    """Create an organisation with key version 1 and return its id."""
    name = name.strip()
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
        return org.id


def create_user(services: AccountServices, email: str, org_ref: str, role: str, password: str,
                *, password_hash: str | None = None) -> int:
    """Create a user and return its id (``password_hash`` spares hashing a known password)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise AccountError(f"not an e-mail address: {email!r}")
    with services.sessions() as s:
        org = find_org(s, org_ref)
        if s.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
            raise AccountExists(f"a user {email} already exists")
        user = User(org_id=org.id, email=email, role=role,
                    password_hash=password_hash or hash_password(password))
        s.add(user)
        s.commit()
        return user.id


def find_user(session: Session, email: str) -> User:
    """A user by e-mail address (case-insensitive).

    :raises AccountNotFound: if there is none.
    """
    email = email.strip().lower()
    user = session.scalar(select(User).where(func.lower(User.email) == email))
    if user is None:
        raise AccountNotFound(f"no user {email}")
    return user


def create_token(services: AccountServices, email: str, expires_days: int = 90) -> str:
    """Create a token for the user and return it (the only time it exists in the clear)."""
    with services.sessions() as s:
        user = find_user(s, email)
        token = new_api_token()
        s.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10],
                       expires_at=utcnow() + timedelta(days=expires_days)))
        s.commit()
        return token


def revoke_tokens(services: AccountServices, email: str, prefix: str | None = None) -> int:
    """Revoke every live token of a user, or the ones starting with ``prefix``; how many."""
    with services.sessions() as s:
        user = find_user(s, email)
        rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                ApiToken.revoked_at.is_(None))).all()
        rows = [t for t in rows if prefix is None or t.prefix.startswith(prefix[:10])]
        for t in rows:
            t.revoked_at = utcnow()
        s.commit()
    return len(rows)
