"""Database, organisations, users and API tokens."""
from __future__ import annotations

import sys
from datetime import timedelta

import click
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..config import REQUIRED
from ..models import ApiToken, EncryptionMode, Organisation, Role, User, utcnow
from ..security import generate_password, hash_password, hash_token, new_api_token
from ._common import CommandError, find_org, load_settings, with_services


@click.group(help="Database schema.")
def db() -> None:
    """Database commands."""


@db.command("upgrade", help="Apply the Alembic migrations up to the newest revision.")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    from ..migrate import upgrade

    settings = load_settings(require=())
    upgrade(settings.database_url, revision)
    click.echo(f"database at revision {revision}")


@click.group(help="Organisations.")
def orgs() -> None:
    """Organisation commands."""


@orgs.command("create", help="Create an organisation and its first key version; prints its id.")
@click.argument("name")
@click.option("--mode", type=click.Choice([m.value for m in EncryptionMode]), default="cse",
              show_default=True, help="Default encryption of the organisation's objects.")
@with_services(require=("GATEWAY_MASTER_KEY",))
def orgs_create(services, name: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    org_id = create_organisation(services, name, mode)
    click.echo(org_id)


def create_organisation(services, name: str, mode: str = "cse") -> str:  # type: ignore[no-untyped-def]
    """Create an organisation with key version 1 and return its id."""
    name = name.strip()
    if not name or len(name) > 200:
        raise CommandError("organisation name must be 1-200 characters")
    with services.sessions() as s:
        org = Organisation(name=name, encryption_mode=mode)
        s.add(org)
        try:
            s.flush()
        except IntegrityError:
            raise CommandError(f"an organisation named {name!r} already exists") from None
        services.keyring.create_org_key(s, org.id)
        s.commit()
        return org.id


@orgs.command("list", help="List organisations.")
@with_services(require=())  # the database alone
def orgs_list(services) -> None:  # type: ignore[no-untyped-def]
    with services.sessions() as s:
        for org in s.scalars(select(Organisation).order_by(Organisation.name)):
            click.echo(f"{org.id}  {org.encryption_mode:<4}  {org.name}")


@click.group(help="User accounts.")
def users() -> None:
    """User commands."""


@users.command("create", help="Create a user. Prints a generated password unless --password-stdin.")
@click.argument("email")
@click.option("--org", "org_ref", required=True, help="Organisation id or name.")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_services(require=())  # the database alone
def users_create(services, email: str, org_ref: str, role: str, password_stdin: bool) -> None:  # type: ignore[no-untyped-def]
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < 12:
            raise CommandError("password must be at least 12 characters")
    else:
        password = generate_password()
    create_user(services, email, org_ref, role, password)
    if not password_stdin:
        click.echo(f"password: {password}")
    click.echo(f"created {email.strip().lower()} ({role})")


def create_user(services, email: str, org_ref: str, role: str, password: str,  # type: ignore[no-untyped-def]
                *, password_hash: str | None = None) -> int:
    """Create a user and return its id (``password_hash`` spares hashing a known password)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise CommandError(f"not an e-mail address: {email!r}")
    with services.sessions() as s:
        org = find_org(s, org_ref)
        if s.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
            raise CommandError(f"a user {email} already exists")
        user = User(org_id=org.id, email=email, role=role,
                    password_hash=password_hash or hash_password(password))
        s.add(user)
        s.commit()
        return user.id


@click.group(help="API tokens for scripts.")
def tokens() -> None:
    """Token commands."""


@tokens.command("create", help="Create an API token for a user; prints it once (only its hash is stored).")
@click.argument("email")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=90, show_default=True)
@with_services(require=())  # the database alone
def tokens_create(services, email: str, expires_days: int) -> None:  # type: ignore[no-untyped-def]
    click.echo(create_token(services, email, expires_days))


def create_token(services, email: str, expires_days: int = 90) -> str:  # type: ignore[no-untyped-def]
    """Create a token for the user and return it (the only time it exists in the clear)."""
    email = email.strip().lower()
    with services.sessions() as s:
        user = s.scalar(select(User).where(func.lower(User.email) == email))
        if user is None:
            raise CommandError(f"no user {email}")
        token = new_api_token()
        s.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10],
                       expires_at=utcnow() + timedelta(days=expires_days)))
        s.commit()
        return token


@tokens.command("revoke", help="Revoke every token of a user, or the one starting with --prefix.")
@click.argument("email")
@click.option("--prefix", default=None, help="The first characters of the token to revoke.")
@with_services(require=())  # the database alone
def tokens_revoke(services, email: str, prefix: str | None) -> None:  # type: ignore[no-untyped-def]
    with services.sessions() as s:
        user = s.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))
        if user is None:
            raise CommandError(f"no user {email}")
        rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user.id,
                                                ApiToken.revoked_at.is_(None))).all()
        rows = [t for t in rows if prefix is None or t.prefix.startswith(prefix[:10])]
        for t in rows:
            t.revoked_at = utcnow()
        s.commit()
    click.echo(f"revoked {len(rows)} token(s)")


COMMANDS = [db, orgs, users, tokens]
__all__ = ["COMMANDS", "create_organisation", "create_user", "create_token", "REQUIRED"]
