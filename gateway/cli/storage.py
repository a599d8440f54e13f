"""Bucket setup and catalog/bucket reconciliation."""
from __future__ import annotations

import click
from sqlalchemy import select

from ..db.models import EncryptionMode, Organisation, StoredObject
from ..principal import Actor
from ._common import CommandError, GatewayGroup, progress, with_services


@click.group(cls=GatewayGroup, help="The S3 bucket.")
def storage() -> None:
    """Storage commands."""


@storage.command("setup", help="Create the bucket if missing; private, Block Public Access, "
                 "a deny policy, CORS for the gateway's own origin.")
@click.option("--origin", default="http://127.0.0.1:8000", show_default=True,
              help="The gateway's own origin, the only one CORS allows.")
@with_services()
def setup(services, origin: str) -> None:  # type: ignore[no-untyped-def]
    for line in services.store.setup_bucket(origin=origin):
        click.echo(line)
    with services.sessions() as s:
        ssec_orgs = list(s.scalars(select(Organisation.name).where(
            Organisation.encryption_mode == EncryptionMode.SSEC.value).order_by(Organisation.name)))
    problem = services.store.ssec_refusal(ssec_orgs)
    if problem is not None:
        raise CommandError(problem)
    if ssec_orgs:
        click.echo(f"SSE-C allowed for {len(ssec_orgs)} organisation(s) in ssec mode")


@storage.command("reconcile", help="List objects without a catalog row and rows without an object.")
@click.option("--fix", is_flag=True, help="Delete orphan objects and open multipart uploads; "
              "mark rows whose object is gone as deleted.")
@with_services()
def reconcile(services, fix: bool) -> None:  # type: ignore[no-untyped-def]
    from ..db.models import utcnow
    from .uploads import expire_uploads

    store = services.store
    if fix:
        click.echo(expire_uploads(services, dry_run=False))
    with services.sessions() as s:
        rows = {o.s3_key: o for o in s.scalars(select(StoredObject))}
        # what unfinished resumable uploads own is theirs until they finish or expire
        owned_keys, owned_uploads = services.uploads.open_keys(s)
        in_bucket: dict[str, int] = {}
        interim = 0
        for key, size in progress(store.list_keys(""), total=None, desc="listing bucket"):
            if key in owned_keys:
                interim += 1
                continue
            if key.startswith("audit-archive/"):
                continue
            in_bucket[key] = size
        orphans = sorted(set(in_bucket) - set(rows))
        missing = sorted(k for k, o in rows.items() if k not in in_bucket and o.deleted_at is None)
        uploads = [(k, u) for k, u in store.list_multipart_uploads("") if u not in owned_uploads]
        if owned_uploads or interim:
            click.echo(f"{len(owned_uploads)} multipart upload(s) and {interim} interim "
                       "object(s) belong to resumable uploads in progress (kept)")
        for key in orphans:
            click.echo(f"object without catalog row: {key} ({in_bucket[key]} bytes)")
        for key in missing:
            click.echo(f"catalog row without object: {rows[key].id} {key}")
        for key, upload_id in uploads:
            click.echo(f"open multipart upload: {key} {upload_id}")
        if fix:
            for key in orphans:
                store.delete(key)
            for key, upload_id in uploads:
                store._call("abort_multipart_upload", key=key, Key=key, UploadId=upload_id)
            for key in missing:
                rows[key].deleted_at = utcnow()
            s.commit()
        click.echo(f"{len(orphans)} orphan object(s), {len(missing)} missing object(s), "
                   f"{len(uploads)} open upload(s){' fixed' if fix else ''}")
        org_ids = list(s.scalars(select(Organisation.id)))
    _record_reconcile(services, org_ids, orphans, missing, [k for k, _ in uploads], fix)
    if (orphans or missing or uploads) and not fix:
        raise SystemExit(1)


def _record_reconcile(services, org_ids: list[str], orphans: list[str],  # type: ignore[no-untyped-def]
                      missing: list[str], uploads: list[str], fixed: bool) -> None:
    """One ``storage_reconcile`` row in each organisation's chain, with that organisation's
    own counts (its S3 keys start with its id): what the admin console shows."""
    def mine(keys: list[str], org_id: str) -> int:
        return sum(1 for k in keys if k.startswith(org_id + "/"))

    for org_id in org_ids:
        counts = {"orphans": mine(orphans, org_id), "missing": mine(missing, org_id),
                  "open_uploads": mine(uploads, org_id)}
        services.audit.record(
            action="storage_reconcile", outcome="success",
            actor=Actor.cli(org_id, "storage reconcile"),
            detail={**counts, "fixed": fixed, "clean": not any(counts.values()) or fixed})


COMMANDS = [storage]
