"""The audit trail: ``gateway audit query | verify | archive | verify-archive``.

An operator on the server may read every organisation's events. Each command is itself
audited (as ``cli:<login name>``, role ``operator``) before it shows anything.
"""
from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click
from sqlalchemy import select

from ..accounts import find_org
from ..audit import (
    MAX_CURSOR,
    SYSTEM_CHAIN,
    Action,
    AuditArchiveError,
    AuditUnavailable,
    Outcome,
    archive_key,
    archive_month,
    bucket_claims,
    cursor_of,
    format_time,
    iter_query,
    parse_action,
    parse_month,
    parse_outcome,
    parse_time,
    to_csv,
    to_jsonl,
    user_condition,
    verify,
    verify_archive,
    write_anchors,
)
from ..principal import Actor
from ._common import CommandError, GatewayGroup, progress, with_services

TABLE_LIMIT = 100
UNAVAILABLE = "the audit log is unavailable; nothing was done"


@click.group(cls=GatewayGroup, help="The audit trail: query and export events, verify the chains, archive months.")
def audit() -> None:
    """Audit commands."""


def _org_chain(services: Any, ref: str | None) -> tuple[str | None, str | None]:
    """``(org_id for the query, label)``: an organisation, ``system``, or everything (None)."""
    if ref is None:
        return None, None
    if ref == SYSTEM_CHAIN:
        return SYSTEM_CHAIN, SYSTEM_CHAIN
    with services.sessions() as session:
        org = find_org(session, ref)
        return org.id, org.name


def _parse(option: str, parser: Any, value: str | None, **kwargs: Any) -> Any:
    if value is None or value == "":
        return None
    try:
        return parser(value, **kwargs)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _record(services: Any, **kwargs: Any) -> None:
    try:
        services.audit.record(**kwargs)
    except AuditUnavailable:
        raise CommandError(UNAVAILABLE) from None


@audit.command("query", help="Show or export events, oldest first.")
@click.option("--org", "org_ref", metavar="ORG",
              help="Organisation id or name, or 'system' (events without one). "
                   "Default: every organisation.")
@click.option("--user", metavar="U", help="User id or e-mail address.")
@click.option("--object", "object_id", metavar="O", help="Object id.")
@click.option("--path", "object_path", metavar="P",
              help="Object path; a trailing * matches every path with that prefix.")
@click.option("--action", metavar="A", help="Action, or several separated by commas.")
@click.option("--outcome", metavar="O", help="Outcome, or several separated by commas.")
@click.option("--since", metavar="DATE",
              help="From this time (inclusive): YYYY-MM-DD or ISO 8601; UTC unless an offset "
                   "is given.")
@click.option("--until", metavar="DATE",
              help="Before this time (exclusive); a date alone includes that whole day.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help=f"At most N events (default {TABLE_LIMIT} for the table, all for csv/jsonl).")
@click.option("--after", type=click.IntRange(min=0, max=MAX_CURSOR), default=None, metavar="SEQ",
              help="Only events after SEQ, the organisation's own sequence number (the cursor "
                   "the table prints); with no --org, the row id across every chain.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "jsonl"]), default="table",
              show_default=True)
@with_services(require=())
def query_cmd(services: Any, org_ref: str | None, user: str | None, object_id: str | None,
              object_path: str | None, action: str | None, outcome: str | None,
              since: str | None, until: str | None, limit: int | None, after: int | None,
              fmt: str) -> None:
    filters: dict[str, Any] = {
        "user": user or None,
        "object_id": object_id or None,
        "object_path": object_path or None,
        "action": _parse("--action", parse_action, action),
        "outcome": _parse("--outcome", parse_outcome, outcome),
        "since": _parse("--since", parse_time, since),
        "until": _parse("--until", parse_time, until, end=True),
    }
    _parse("--user", user_condition, user)  # an id or an e-mail address
    if filters["since"] and filters["until"] and filters["since"] >= filters["until"]:
        raise click.BadParameter("--since must come before --until", param_hint="--since")
    org_id, label = _org_chain(services, org_ref)
    if limit is None and fmt == "table":
        limit = TABLE_LIMIT
    shown = {k: (format_time(v) if isinstance(v, datetime) else v)
             for k, v in filters.items() if v}
    _record(services, action=Action.AUDIT_QUERY if fmt == "table" else Action.AUDIT_EXPORT,
            outcome=Outcome.SUCCESS, actor=Actor.cli(org_id if org_id != SYSTEM_CHAIN else None,
                                                     f"audit query --format {fmt}"),
            detail={"org": label or "all", "filters": shown, "limit": limit, "after": after,
                    "format": fmt})
    events = iter_query(services.sessions, org_id=org_id, all_orgs=org_id is None,
                        limit=limit, after=after, **filters)
    if fmt == "csv":
        for line in to_csv(events):
            click.echo(line, nl=False)
    elif fmt == "jsonl":
        for line in to_jsonl(events):
            click.echo(line, nl=False)
    else:
        _print_table(list(events), limit, org_id)


def _print_table(events: list[Any], limit: int | None, org_id: str | None) -> None:
    """One line per event. Events are named by ``seq`` (their chain's own sequence number),
    and by chain too when the query spans every chain; the cursor follows the query."""
    header = f"{'seq':>8}  {'when (UTC)':<26} {'user':<28} {'action':<17} {'outcome':<17} " \
             f"{'status':>6} {'bytes':>10}  {'from':<15} object"
    click.echo(header)
    for e in events:
        who = e.user_email or (str(e.user_id) if e.user_id is not None else "-")
        click.echo(
            f"{e.seq:>8}  {format_time(e.occurred_at):<26} {who[:28]:<28} {e.action:<17} "
            f"{e.outcome:<17} {e.http_status if e.http_status is not None else '':>6} "
            f"{e.bytes if e.bytes is not None else '':>10}  {(e.client_addr or '')[:15]:<15} "
            f"{e.object_path or e.object_id or ''}"
            + ("" if org_id is not None else f"  [chain {e.chain}]")
        )
    click.echo(f"{len(events)} event(s)")
    if limit is not None and len(events) == limit:
        click.echo(f"more: add --after {cursor_of(events[-1], org_id)}")


@audit.command("verify", help="Check the audit chains, and compare them with the heads "
               "recorded earlier (in the database and in the bucket); exit status 1 names the "
               "first bad row. When intact, anchors the heads in the bucket.")
@click.option("--org", "org_ref", metavar="ORG",
              help="Organisation id or name, or 'system'. Default: every chain.")
@click.option("--no-bucket", is_flag=True,
              help="Leave the bucket alone: no anchors read or written (a copy of the database "
                   "older than the bucket's anchors would be reported as rewound).")
@with_services(require=())
def verify_cmd(services: Any, org_ref: str | None, no_bucket: bool) -> None:
    from ..storage import StorageError

    chain, label = _org_chain(services, org_ref)
    use_bucket = bool(services.settings.s3_bucket) and not no_bucket
    claims: list[Any] = []
    bucket_note = "bucket not read (no GATEWAY_S3_BUCKET)" if not no_bucket else \
        "bucket not read (--no-bucket)"
    if use_bucket:
        try:
            with services.sessions() as session:
                names = [chain] if chain is not None else _chain_names(session)
            claims = bucket_claims(services, names)
        except StorageError as exc:
            raise CommandError(f"the bucket's anchors cannot be read: {exc}") from None
    with services.sessions() as session:
        report = verify(session, services.keyring, chain, claims=claims)
    if report.ok:
        click.echo(f"audit chain intact: {report.rows} rows in {len(report.chains)} chains")
    else:
        for result in report.chains:
            if result.fault is not None:
                click.echo(f"audit chain altered: {result.fault.message} [{result.fault.reason}]")
    anchors = [c for c in report.claims if c.source.startswith("bucket anchor")]
    archives = [c for c in report.claims if c.source.startswith("archive ")]
    earlier = {c.source for c in report.claims if c.source.startswith("audit_verify")}
    click.echo(f"compared with: {len(anchors)} bucket anchor(s), {len(archives)} archive(s), "
               f"{len(earlier)} earlier verification(s)"
               + ("" if use_bucket else f"; {bucket_note}"))
    heads = {r.chain: [r.head_seq, _head_hash(services, r.chain)]
             for r in report.chains if r.ok and r.rows}
    written = 0
    if report.ok and use_bucket:
        try:
            results = write_anchors(services, list(heads))
        except StorageError as exc:
            click.echo(f"gateway: the heads could not be anchored in the bucket: {exc}", err=True)
            results = []
        written = sum(r.status == "written" for r in results)
        click.echo(f"anchored {written} chain head(s) in the bucket"
                   + (" under Object Lock" if written and services.store.object_lock_enabled()
                      else ""))
    fault = report.first_fault
    try:
        services.audit.record(
            action=Action.AUDIT_VERIFY,
            outcome=Outcome.SUCCESS if report.ok else Outcome.FAILURE,
            actor=Actor.cli(chain if chain not in (None, SYSTEM_CHAIN) else None, "audit verify"),
            detail={"chains": len(report.chains), "rows": report.rows, "org": label or "all",
                    "heads": heads if report.ok else {}, "anchors": len(anchors),
                    "anchored": written,
                    "fault": None if fault is None else {
                        "chain": fault.chain, "seq": fault.seq, "row_id": fault.row_id,
                        "reason": fault.reason}},
        )
    except AuditUnavailable:
        click.echo("gateway: this verification could not be recorded in the audit log", err=True)
        sys.exit(1)
    if not report.ok:
        sys.exit(1)


def _chain_names(session: Any) -> list[str]:
    from ..db.models import AuditChainHead

    return list(session.scalars(select(AuditChainHead.chain)))


def _head_hash(services: Any, chain: str) -> str | None:
    """The row_hash of the head the verification ended at (read again: a short query)."""
    from ..db.models import AuditChainHead

    with services.sessions() as session:
        return session.scalar(select(AuditChainHead.row_hash)
                              .where(AuditChainHead.chain == chain))


@audit.command("anchor", help="Write each chain's head, signed, to audit-anchors/ in the "
               "bucket (under Object Lock when the bucket has it). Run it periodically, e.g. "
               "every 15 minutes from cron; verify compares the chains with the newest anchors.")
@click.option("--org", "org_ref", metavar="ORG",
              help="Organisation id or name, or 'system'. Default: every chain.")
@with_services(require=("GATEWAY_S3_BUCKET",))
def anchor_cmd(services: Any, org_ref: str | None) -> None:
    from ..storage import StorageError

    chain, label = _org_chain(services, org_ref)
    try:
        results = write_anchors(services, [chain] if chain is not None else None)
    except StorageError as exc:
        raise CommandError(f"the heads could not be anchored: {exc}") from None
    behind = [r for r in results if r.status == "behind"]
    for r in behind:
        click.echo(f"audit chain altered: chain {r.chain} ends at seq {r.seq}, its newest "
                   f"anchor {r.key} holds seq {r.newest_seq} [rewound]")
    written = sum(r.status == "written" for r in results)
    click.echo(f"anchored {written} chain head(s), {len(results) - written - len(behind)} "
               f"unchanged" + (", under Object Lock" if written and
                               services.store.object_lock_enabled() else ""))
    _record(services, action=Action.AUDIT_ANCHOR,
            outcome=Outcome.FAILURE if behind else Outcome.SUCCESS,
            actor=Actor.cli(chain if chain not in (None, SYSTEM_CHAIN) else None, "audit anchor"),
            detail={"anchors": {r.chain: r.seq for r in results if r.status == "written"},
                    "org": label or "all",
                    "rewound": {r.chain: [r.seq, r.newest_seq] for r in behind}})
    if behind:
        sys.exit(1)


def _month(value: str) -> tuple[int, int]:
    return _parse("--month", parse_month, value)


@audit.command("archive", help="Write a month's events of each organisation, encrypted, to "
               "audit-archive/{org_id}/{yyyy}/{mm}.jsonl.gz in the bucket. Re-runnable.")
@click.option("--month", required=True, metavar="YYYY-MM")
@click.option("--org", "org_ref", metavar="ORG", help="Organisation id or name (default: all).")
@with_services(require=("GATEWAY_S3_BUCKET",))
def archive_cmd(services: Any, month: str, org_ref: str | None) -> None:
    from ..db.models import Organisation
    from ..storage import StorageError

    year, mon = _month(month)
    with services.sessions() as session:
        if org_ref is not None:
            orgs = [find_org(session, org_ref)]
        else:
            orgs = list(session.scalars(select(Organisation).order_by(Organisation.name)))
        targets = [(org.id, org.name) for org in orgs]
    failed = 0
    for org_id, name in progress(targets, total=len(targets), desc=f"archiving {month}",
                                 unit="org"):
        try:
            result = archive_month(services, org_id, year, mon,
                                   Actor.cli(org_id, f"audit archive --month {month}"))
        except AuditUnavailable:
            raise CommandError(UNAVAILABLE) from None
        except (AuditArchiveError, StorageError) as exc:
            failed += 1
            click.echo(f"{name}: failed: {exc}", err=True)
            continue
        if result.status == "empty":
            click.echo(f"{name}: no events in {month}")
        else:
            click.echo(f"{name}: {result.status} {result.key} ({result.rows} events, "
                       f"seq {result.first_seq}-{result.last_seq})")
    if failed:
        raise CommandError(f"{failed} of {len(targets)} archive(s) failed")


@audit.command("verify-archive", help="Decrypt a month's archive and check every row against "
               "its hash and the database.")
@click.option("--month", required=True, metavar="YYYY-MM")
@click.option("--org", "org_ref", required=True, metavar="ORG", help="Organisation id or name.")
@with_services(require=("GATEWAY_S3_BUCKET",))
def verify_archive_cmd(services: Any, month: str, org_ref: str) -> None:
    from ..storage import StorageError, StorageNotFound

    year, mon = _month(month)
    org_id, _label = _org_chain(services, org_ref)
    if org_id == SYSTEM_CHAIN or org_id is None:
        raise CommandError("archives belong to an organisation: name one with --org")
    try:
        report = verify_archive(services, org_id, year, mon,
                                actor=Actor.cli(org_id, f"audit verify-archive --month {month}"))
    except AuditUnavailable:
        raise CommandError(UNAVAILABLE) from None
    except StorageNotFound:
        raise CommandError(f"no archive at {archive_key(org_id, year, mon)}") from None
    except StorageError as exc:
        raise CommandError(f"storage failure: {exc}") from None
    if report.ok:
        click.echo(f"audit archive intact: {report.key}, {report.rows} events, "
                   "each one still in the database")
        return
    for problem in report.problems:
        click.echo(f"audit archive altered: {report.key}: {problem}")
    sys.exit(1)


COMMANDS = [audit]
