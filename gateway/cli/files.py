"""Deleted files: restore, and purge for good."""
from __future__ import annotations

from datetime import timedelta

import click

from ..accounts import find_org
from ..db.models import utcnow
from ..principal import Actor
from ._common import GatewayGroup, with_services


@click.group(cls=GatewayGroup, help="Deleted files: restore them, or purge them for good.")
def files() -> None:
    """File maintenance commands."""


@files.command("purge", help="Remove files deleted more than --older-than-days ago from the "
               "bucket and the catalog. They cannot be restored afterwards.")
@click.option("--older-than-days", type=click.IntRange(0, 36500), default=30, show_default=True)
@click.option("--org", "org_ref", default=None, help="Only this organisation (id or name).")
@with_services()
def purge(services, older_than_days: int, org_ref: str | None) -> None:  # type: ignore[no-untyped-def]
    org_id = None
    if org_ref:
        with services.sessions() as s:
            org_id = find_org(s, org_ref).id
    actor = Actor.cli(org_id, "files purge")
    count = services.objects.purge(actor, older_than=utcnow() - timedelta(days=older_than_days))
    click.echo(f"purged {count} file(s)")


@files.command("restore", help="Restore a deleted file by its object id.")
@click.argument("object_id")
@click.option("--org", "org_ref", required=True, help="The file's organisation (id or name).")
@with_services()
def restore(services, object_id: str, org_ref: str) -> None:  # type: ignore[no-untyped-def]
    with services.sessions() as s:
        org_id = find_org(s, org_ref).id
    obj = services.objects.restore(Actor.cli(org_id, "files restore"), object_id)
    click.echo(f"restored {obj.path}")


COMMANDS = [files]
