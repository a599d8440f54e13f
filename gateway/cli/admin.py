"""Database, organisations, users and API tokens.

Every change (organisation, user, role, password, token) is recorded in the audit trail as
done by the operator (``cli:LOGIN``), so these commands need the master key (the audit chain's
key is wrapped by it); the listings need the database alone.
"""
from __future__ import annotations

import csv
import io
import json
import sys
from typing import Any

import click
from sqlalchemy import select

from ..accounts import (
    RESET_LINK_SECONDS,
    create_organisation,
    create_user,
    generate_password,
    issue_reset_link,
    issue_token,
    list_tokens,
    list_users,
    reset_password,
    revoke_tokens,
    set_active,
    set_role,
)
from ..db.models import EncryptionMode, Organisation, Role
from ..principal import Actor
from ._common import CommandError, GatewayGroup, load_settings, with_services

#: What a command that changes accounts needs: the database, and the master key for the audit.
AUDITED = ("GATEWAY_MASTER_KEY",)
FORMATS = click.Choice(["table", "csv", "json"])


def _actor() -> Actor:
    """The operator running this command, as the audit trail records them."""
    names: list[str] = []
    ctx: click.Context | None = click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return Actor.cli(None, " ".join(reversed(names)))


def _when(value: str | None) -> str:
    return value.replace("T", " ") if value else "-"


def _emit(rows: list[dict[str, Any]], columns: list[tuple[str, str]], fmt: str) -> None:
    """Print ``rows`` as an aligned table, CSV (with a header) or a JSON array."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow([key for key, _ in columns])
        for row in rows:
            writer.writerow(["" if row[key] is None else row[key] for key, _ in columns])
        click.echo(buf.getvalue(), nl=False)
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[title for _, title in columns]]
    for row in rows:
        cells.append([_when(row[k]) if k.endswith("_at") else
                      ("yes" if row[k] is True else "no" if row[k] is False else
                       "-" if row[k] is None else str(row[k])) for k, _ in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


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
@with_services(require=AUDITED)
def orgs_create(services, name: str, mode: str) -> None:  # type: ignore[no-untyped-def]
    org_id = create_organisation(services, name, mode, actor=_actor())
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
@with_services(require=AUDITED)
def users_create(services, email: str, org_ref: str, role: str, password_stdin: bool) -> None:  # type: ignore[no-untyped-def]
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if len(password) < 12:
            raise CommandError("password must be at least 12 characters")
    else:
        password = generate_password()
    create_user(services, email, org_ref, role, password, actor=_actor())
    if not password_stdin:
        click.echo(f"password: {password}")
    click.echo(f"created {email.strip().lower()} ({role})")


@users.command("list", short_help="List users with role, organisation, status, last sign-in.", help="List users: e-mail, role, organisation, active, created, last "
               "sign-in.")
@click.option("--org", "org_ref", default=None, help="Only this organisation (id or name).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@with_services(require=())  # the database alone
def users_list(services, org_ref: str | None, fmt: str) -> None:  # type: ignore[no-untyped-def]
    rows = [u.as_json() for u in list_users(services, org_ref=org_ref)]
    _emit(rows, [("email", "E-MAIL"), ("role", "ROLE"), ("organisation", "ORGANISATION"),
                 ("active", "ACTIVE"), ("created_at", "CREATED (UTC)"),
                 ("last_login_at", "LAST SIGN-IN (UTC)")], fmt)


@users.command("deactivate", short_help="Deactivate a user: sessions, tokens and links stop at once.", help="Deactivate a user at once: their browser sessions end, "
               "their API tokens are revoked, their signed links stop working and sign-in is "
               "refused. Their files and audit history stay.")
@click.argument("email")
@with_services(require=AUDITED)
def users_deactivate(services, email: str) -> None:  # type: ignore[no-untyped-def]
    info, changed = set_active(services, email, False, actor=_actor())
    click.echo(f"deactivated {info.email}" if changed else f"{info.email} is already deactivated")


@users.command("reactivate", short_help="Let a deactivated user sign in again.", help="Let a deactivated user sign in again (create new API "
               "tokens for them: the old ones stay revoked).")
@click.argument("email")
@with_services(require=AUDITED)
def users_reactivate(services, email: str) -> None:  # type: ignore[no-untyped-def]
    info, changed = set_active(services, email, True, actor=_actor())
    click.echo(f"reactivated {info.email}" if changed else f"{info.email} is already active")


@users.command("set-role", short_help="Change a user's role.", help="Change a user's role (staff, auditor or admin). An "
               "organisation's last active admin cannot be demoted.")
@click.argument("email")
@click.argument("role", type=click.Choice([r.value for r in Role]))
@with_services(require=AUDITED)
def users_set_role(services, email: str, role: str) -> None:  # type: ignore[no-untyped-def]
    info, changed = set_role(services, email, role, actor=_actor())
    click.echo(f"{info.email} is now {info.role}" if changed
               else f"{info.email} is already {info.role}")


@users.command("reset-password", short_help="Print a new password, or a one-time reset link.", help="Reset a user's password: --print sets a random one and "
               "prints it (their browser sessions end); --link prints a one-time link, valid "
               f"{RESET_LINK_SECONDS // 60} minutes, where they choose a new one.")
@click.argument("email")
@click.option("--print", "method", flag_value="print", default=True,
              help="Set and print a random password (the default).")
@click.option("--link", "method", flag_value="link", help="Print a one-time reset link instead.")
@click.option("--base-url", default="", metavar="URL",
              help="The gateway's address as users reach it, e.g. https://files.example.org, "
                   "to print the link in full.")
@with_services(require=AUDITED)
def users_reset_password(services, email: str, method: str, base_url: str) -> None:  # type: ignore[no-untyped-def]
    if method == "link":
        link = issue_reset_link(services, email, actor=_actor())
        click.echo(f"{base_url.rstrip('/')}/reset/{link.token}")
        click.echo(f"one-time link for {link.email}, valid until "
                   f"{_when(link.expires_at.isoformat(timespec='seconds'))}", err=True)
        return
    password = reset_password(services, email, actor=_actor())
    click.echo(f"password: {password}")


@click.group(cls=GatewayGroup, help="API tokens for scripts.")
def tokens() -> None:
    """Token commands."""


@tokens.command("create", help="Create an API token for a user; prints it once (only its hash is stored).")
@click.argument("email")
@click.option("--expires-days", type=click.IntRange(1, 3650), default=90, show_default=True)
@with_services(require=AUDITED)
def tokens_create(services, email: str, expires_days: int) -> None:  # type: ignore[no-untyped-def]
    click.echo(issue_token(services, email, expires_days, actor=_actor()).token)


@tokens.command("list", short_help="List API tokens (prefix, dates, status).", help="List API tokens (never the tokens themselves): prefix, user, "
                "created, expires, last used, revoked.")
@click.option("--user", "user_ref", default=None, metavar="EMAIL", help="Only this user's.")
@click.option("--org", "org_ref", default=None, help="Only this organisation's (id or name).")
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True)
@with_services(require=())  # the database alone
def tokens_list(services, user_ref: str | None, org_ref: str | None, fmt: str) -> None:  # type: ignore[no-untyped-def]
    rows = [t.as_json() for t in list_tokens(services, user_ref=user_ref, org_ref=org_ref)]
    _emit(rows, [("id", "ID"), ("prefix", "PREFIX"), ("email", "USER"),
                 ("created_at", "CREATED (UTC)"), ("expires_at", "EXPIRES (UTC)"),
                 ("last_used_at", "LAST USED (UTC)"), ("revoked_at", "REVOKED (UTC)"),
                 ("status", "STATUS")], fmt)


@tokens.command("revoke", help="Revoke every token of a user, or the one starting with --prefix.")
@click.argument("email")
@click.option("--prefix", default=None, help="The first characters of the token to revoke.")
@with_services(require=AUDITED)
def tokens_revoke(services, email: str, prefix: str | None) -> None:  # type: ignore[no-untyped-def]
    click.echo(f"revoked {revoke_tokens(services, email, prefix, actor=_actor())} token(s)")


COMMANDS = [db, orgs, users, tokens]
__all__ = ["COMMANDS"]
