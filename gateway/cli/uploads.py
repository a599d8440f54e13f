"""Resumable uploads left unfinished: expire them, so that nothing stays behind."""
from __future__ import annotations

import click

from ..principal import Actor
from ._common import GatewayGroup, progress, with_services


@click.group(cls=GatewayGroup, help="Resumable (tus) uploads.")
def uploads() -> None:
    """Resumable-upload commands."""


@uploads.command("expire", help="Expire the unfinished uploads past their expiry: abort their "
                 "S3 multipart uploads and delete their interim objects (each expiry audited).")
@click.option("--dry-run", is_flag=True, help="List what would be expired; change nothing.")
@with_services()
def expire(services, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    click.echo(expire_uploads(services, dry_run=dry_run))


def expire_uploads(services, *, dry_run: bool) -> str:  # type: ignore[no-untyped-def]
    """Expire what is due; the summary line (shared with ``storage reconcile --fix``)."""
    resumable = services.uploads
    with services.sessions() as s:
        due = resumable.expired(s)
        for row in due:
            s.expunge(row)
    if dry_run:
        for row in due:
            click.echo(f"would expire upload {row.id} ({row.offset} of {row.length} bytes, "
                       f"expired {row.expires_at:%Y-%m-%d %H:%M} UTC)")
        return f"{len(due)} unfinished upload(s) past their expiry (dry run: nothing changed)"
    for row in progress(due, total=len(due), desc="expiring uploads", unit="upload"):
        resumable.expire(Actor.cli(row.org_id, "uploads expire"), row)
    return f"{len(due)} unfinished upload(s) expired; their parts and interim objects are deleted"


COMMANDS = [uploads]
