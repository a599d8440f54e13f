"""``gateway keys ...``: the master key file, organisation key versions and their rotation.

Every command is a subcommand of the :data:`keys` group; commands that move objects
(``rewrap``, ``reencrypt``, ``migrate-ssec``) join the same group from their own code with
``@keys.command(...)``. A keyring failure ends a command with one line, like any
:class:`~gateway.errors.GatewayError` (:class:`~gateway.cli._common.GatewayGroup`). Commands that change keys record an audit event
(:func:`_audit`). ``keys/README.md`` describes every procedure.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import click
from sqlalchemy.exc import IntegrityError

from ..accounts import find_org
from ..config import parse_master_key
from ..keys import (
    FileMasterKey,
    KeyInUse,
    KeyringError,
    add_master_key_version,
    init_master_key_file,
    retire_master_key_version,
)
from ._common import CommandError, GatewayGroup, load_settings, progress, with_services

#: Key commands need the database and the master key, never the bucket or the session secret.
#: GATEWAY_MASTER_KEY must be set explicitly: a default could silently name another key file.
KEY_SETTINGS: tuple[str, ...] = ("GATEWAY_MASTER_KEY",)


@click.group(cls=GatewayGroup, help="Key management.")
def keys() -> None:
    """The ``gateway keys`` command group."""


def _command_name() -> str:
    """The running command without the program name, e.g. ``keys rotate``."""
    names: list[str] = []
    ctx: click.Context | None = click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


def _audit(
    services: Any,
    action: str,
    outcome: str,
    org_id: str | None,
    detail: dict[str, Any] | None,
    **fields: Any,
) -> None:
    """Record a key event in the audit log, when the audit log exists.

    The operation it describes has already happened (or been refused), so a failure to record
    is reported on stderr as a warning rather than turned into a failure of the command.

    :param fields: further keyword arguments of ``AuditLog.record`` (``object_id``, ...).
    """
    try:
        from ..principal import Actor

        audit = services.audit
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("gateway.audit"):
            return  # no audit log in this build
        raise
    try:
        audit.record(
            action=action,
            outcome=outcome,
            actor=Actor.cli(org_id, _command_name()),
            detail=detail,
            **fields,
        )
    except Exception as exc:  # noqa: BLE001  (reported, never fatal after the fact)
        click.echo(
            f"gateway: warning: the audit event {action}/{outcome} was not recorded "
            f"({type(exc).__name__})",
            err=True,
        )


def _format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(headers: list[str], rows: list[list[str]], numeric: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    return [line(headers), *(line(r) for r in rows)]


# --------------------------------------------------------------------------------------------
# Master key


@keys.command("init", help="Write a new master key file (mode 0600) at the path "
              "GATEWAY_MASTER_KEY names (default keys/master.key); never overwrites.")
def init() -> None:
    settings = load_settings(require=())
    scheme, location = parse_master_key(settings.master_key)
    if scheme != "file":
        raise CommandError(
            "GATEWAY_MASTER_KEY names an AWS KMS key: there is no key file to write "
            "(create and manage the key in KMS; see keys/README.md)"
        )
    try:
        init_master_key_file(location)
    except FileExistsError:
        raise CommandError(
            f"{location} already exists; refusing to overwrite a master key (every key it "
            "wraps would become unreadable)"
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot write {location}: {exc.strerror}") from None
    click.echo(f"wrote a new master key file {location} (mode 0600)")
    click.echo("back it up now, apart from the database backups: see keys/README.md", err=True)


@keys.command("rotate-master", help="Make a new master key version current and rewrap every "
              "organisation and audit key under it (resumable; re-run after an interruption).")
@with_services(require=KEY_SETTINGS)
def rotate_master(services) -> None:  # type: ignore[no-untyped-def]
    keyring = services.keyring
    master = keyring.master
    added: int | None = None
    done = 0
    with services.sessions() as session:
        pending = keyring.master_rewrap_pending(session)
        session.rollback()
        if pending:
            click.echo(
                f"resuming: {pending} key(s) are not yet wrapped by master key {master.key_id}",
                err=True,
            )
        elif isinstance(master, FileMasterKey):
            added = add_master_key_version(master.path)
            click.echo(f"added master key version {added} to {master.path}; it is now current",
                       err=True)
            pending = keyring.master_rewrap_pending(session)
            session.rollback()
        else:
            click.echo(
                f"every key is already wrapped by {master.key_id}. To rotate an AWS KMS master "
                "key, rely on KMS automatic key rotation, or create a new key, keep the old one "
                "enabled, set GATEWAY_MASTER_KEY=aws-kms:NEW_KEY and run this command again."
            )
            return
        target = master.key_id
        try:
            for _label in progress(
                keyring.iter_rotate_master(session), total=pending, desc="rewrapping", unit="key"
            ):
                done += 1
        except KeyringError as exc:
            session.rollback()
            _audit(services, "key_rotate_master", "failure", None,
                   {"master_key_id": target, "rewrapped": done, "error": str(exc)})
            raise
        except KeyboardInterrupt:
            session.rollback()
            _audit(services, "key_rotate_master", "aborted", None,
                   {"master_key_id": target, "rewrapped": done})
            raise
        usage = keyring.master_key_usage(session)
        session.rollback()
    detail: dict[str, Any] = {"master_key_id": target, "rewrapped": done}
    if added is not None:
        detail["added_version"] = added
    _audit(services, "key_rotate_master", "success", None, detail)
    click.echo(f"{done} key(s) rewrapped; every key is now wrapped by master key {target}")
    if isinstance(master, FileMasterKey):
        unused = [v for v in master.versions if f"file:{v}" != target
                  and not usage.get(f"file:{v}")]
        for version in unused:
            click.echo(
                f"master key version {version} no longer wraps anything. Keep it while database "
                "backups from before this rotation may be restored; then remove it with: "
                f"gateway keys retire-master --version {version}"
            )
    else:
        click.echo("the previous KMS key can be disabled once no database backup made before "
                   "this rotation will ever be restored")


@keys.command("retire-master", help="Remove an old version from the master key file, refusing "
              "while any key is still wrapped by it.")
@click.option("--version", "version", type=click.IntRange(min=1), required=True,
              help="The master key version to remove.")
@with_services(require=KEY_SETTINGS)
def retire_master(services, version: int) -> None:  # type: ignore[no-untyped-def]
    keyring = services.keyring
    master = keyring.master
    if not isinstance(master, FileMasterKey):
        raise CommandError(
            "retire-master applies to a master key file; with AWS KMS, disable the old key (or "
            "schedule its deletion) in KMS once no key is wrapped by it"
        )
    key_id = f"file:{version}"
    is_current = key_id == master.key_id
    if is_current:
        _audit(services, "key_retire", "denied", None, {"master_key_id": key_id, "current": True})
        raise CommandError(
            f"master key version {version} is the current one; run gateway keys rotate-master "
            "first"
        )
    with services.sessions() as session:
        in_use = keyring.master_key_usage(session).get(key_id, 0)
        session.rollback()  # audit only outside a transaction
        if in_use:
            _audit(services, "key_retire", "denied", None,
                   {"master_key_id": key_id, "keys_wrapped": in_use})
            raise CommandError(
                f"master key version {version} still wraps {in_use} key(s); run "
                "gateway keys rotate-master first"
            )
        retire_master_key_version(master.path, version)
    _audit(services, "key_retire", "success", None, {"master_key_id": key_id})
    click.echo(f"removed master key version {version} from {master.path}")


# --------------------------------------------------------------------------------------------
# Organisation keys


@keys.command("status", help="Key versions per organisation, and how many objects each protects "
              "(deleted objects included until purged).")
@click.option("--org", "org_ref", help="Organisation id or name (default: every organisation).")
@with_services(require=KEY_SETTINGS)
def status(services, org_ref: str | None) -> None:  # type: ignore[no-untyped-def]
    keyring = services.keyring
    with services.sessions() as session:
        org_id = find_org(session, org_ref).id if org_ref else None
        usage = keyring.usage(session, org_id)
    rows = [
        [u.org_name, str(u.version), u.state, str(u.objects), str(u.bytes),
         _format_time(u.created_at), u.master_key_id]
        for u in usage
    ]
    headers = ["org", "version", "state", "objects", "bytes", "created", "master"]
    for text in _table(headers, rows, numeric={1, 3, 4}):
        click.echo(text)
    try:
        current = keyring.master.key_id
    except KeyringError as exc:
        raise CommandError(f"master key unavailable: {exc}") from None
    click.echo(f"current master key: {current}")


@keys.command("rotate", help="Add a new key version to an organisation; new uploads use it at "
              "once. Prints the new version.")
@click.option("--org", "org_ref", required=True, help="Organisation id or name.")
@with_services(require=KEY_SETTINGS)
def rotate(services, org_ref: str) -> None:  # type: ignore[no-untyped-def]
    keyring = services.keyring
    failure: str | None = None
    with services.sessions() as session:
        org = find_org(session, org_ref)
        org_id, org_name = org.id, org.name
        try:
            version = keyring.create_org_key(session, org_id).version
            session.commit()
        except IntegrityError:
            failure = ("another rotation of this organisation committed first; check with "
                       "gateway keys status and run again if needed")
        except KeyringError as exc:
            failure = str(exc)
    # Audit only once the session's transaction is over (SQLite: it holds the write lock).
    if failure is not None:
        _audit(services, "key_rotate", "failure", org_id, {"error": failure})
        raise CommandError(failure)
    _audit(services, "key_rotate", "success", org_id, {"version": version})
    click.echo(version)
    click.echo(
        f"{org_name}: key version {version} is current; objects under older versions stay "
        f"readable. Move them with: gateway keys rewrap --org {org_id}",
        err=True,
    )


@keys.command("retire", help="Retire an organisation key version that no object uses any more.")
@click.option("--org", "org_ref", required=True, help="Organisation id or name.")
@click.option("--version", "version", type=click.IntRange(min=1), required=True,
              help="The key version to retire.")
@with_services(require=KEY_SETTINGS)
def retire(services, org_ref: str, version: int) -> None:  # type: ignore[no-untyped-def]
    keyring = services.keyring
    refusal: KeyInUse | None = None
    with services.sessions() as session:
        org = find_org(session, org_ref)
        org_id, org_name = org.id, org.name
        try:
            keyring.retire_version(session, org_id, version)
            session.commit()
        except KeyInUse as exc:
            refusal = exc
        except KeyringError as exc:
            raise CommandError(f"{org_name}: {exc}") from None
    # Audit only once the session's transaction is over (SQLite: it holds the write lock).
    if refusal is not None:
        _audit(services, "key_retire", "denied", org_id,
               {"version": version, "objects": refusal.count})
        raise CommandError(f"{org_name}: {refusal}")
    _audit(services, "key_retire", "success", org_id, {"version": version})
    click.echo(f"{org_name}: key version {version} retired")


COMMANDS = [keys]
