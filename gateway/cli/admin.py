"""Database, organisations, users and API tokens."""
from __future__ import annotations

import sys

import click
from sqlalchemy import select

from ..accounts import (
    create_organisation,
    create_token,
    create_user,
    generate_password,
    revoke_tokens,
)
from ..db.models import EncryptionMode, Organisation, Role
from ._common import CommandError, GatewayGroup, load_settings, with_services


@click.group(cls=GatewayGroup, help="Database schema.")
def db() -> None:
    """Database commands."""


@db.command("upgrade", help="Apply the Alembic migrations up to the newest revision.")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def db_upgrade(revision: str) -> None:
    # Alembic is loaded by the commands that migrate only
    from ..db.migrate import upgrade

    settings = load_settings(require=())
    upgrade(settings.database_url, revision)
    click.echo(f"database at revision {revision}")


@click.group(cls=GatewayGroup, help="Organisations.")
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


@orgs.command("list", help="List organisations.")
@with_services(require=())  # the database alone
def orgs_list(services) -> None:  # type: ignore[no-untyped-def]
    with services.sessions() as s:
        for org in s.scalars(select(Organisation).order_by(Organisation.name)):
            click.echo(f"{org.id}  {org.encryption_mode:<4}  {org.name}")


@click.group(cls=GatewayGroup, help="User accounts.")
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


@click.group(cls=GatewayGroup, help="API tokens for scripts.")
def tokens() -> None:
    """Token commands."""


@tokens.command("create", help="Create an API token for a user; prints it once (only its hash is stored).")
@click.argument("email")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=90, show_default=True)
@with_services(require=())  # the database alone
def tokens_create(services, email: str, expires_days: int) -> None:  # type: ignore[no-untyped-def]
    click.echo(create_token(services, email, expires_days))


@tokens.command("revoke", help="Revoke every token of a user, or the one starting with --prefix.")
@click.argument("email")
@click.option("--prefix", default=None, help="The first characters of the token to revoke.")
@with_services(require=())  # the database alone
def tokens_revoke(services, email: str, prefix: str | None) -> None:  # type: ignore[no-untyped-def]
    click.echo(f"revoked {revoke_tokens(services, email, prefix)} token(s)")


COMMANDS = [db, orgs, users, tokens]
__all__ = ["COMMANDS"]
