"""``gateway keys rewrap | reencrypt | migrate-ssec``: move objects onto other keys.

The commands join the ``keys`` group of :mod:`gateway.cli.keys`; the work is done by
:mod:`gateway.keys.rotation` (resumable jobs, audited there). Here: options, a progress bar on a
terminal (plain lines otherwise), a summary line, one-line errors, and a non-zero exit status
when any object failed.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import click

from ..accounts import find_org
from ..audit import AuditUnavailable
from ..keys import KeyringError, rotation
from ..keys.jobs import ACTIONS
from ..storage import StorageError
from ._common import CommandError, with_services
from .keys import keys

#: ``rewrap`` needs the catalog and the master key (and the bucket only for SSE-C objects,
#: which it checks itself); the commands that rewrite objects need the bucket too.
REWRAP_SETTINGS: tuple[str, ...] = ("GATEWAY_MASTER_KEY",)
ROTATION_SETTINGS: tuple[str, ...] = ("GATEWAY_MASTER_KEY", "GATEWAY_S3_BUCKET")

COMMANDS: list[click.Command] = []  # the commands join the ``keys`` group, already registered


class _Reporter:
    """The ``progress`` callback: a tqdm bar on a terminal, a line per tenth otherwise."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.next_line = 0

    def __call__(self, p: rotation.Progress) -> None:
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=p.total, desc=self.desc, unit="obj", file=sys.stderr)
            if self.bar.total != p.total:
                self.bar.total = p.total
            self.bar.update(p.done - self.bar.n)
            return
        step = max(1, -(-p.total // 10))
        if p.done == 0:
            click.echo(f"{self.desc}: {p.total} object(s) to do", err=True)
            self.next_line = step
        elif p.done >= self.next_line or p.done == p.total:
            failed = f", {p.failed} failed" if p.failed else ""
            click.echo(f"{self.desc}: {p.done}/{p.total}{failed}", err=True)
            while self.next_line <= p.done:
                self.next_line += step

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _command_name() -> str:
    """``keys rewrap`` (the command path without the program name), for the audit trail."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return "keys"
    return " ".join(ctx.command_path.split()[1:]) or "keys"


def _org_id(services: Any, ref: str) -> str:
    with services.sessions() as session:
        return find_org(session, ref).id


def _execute(job: Callable[..., rotation.JobResult], services: Any, org_id: str | None,
             dry_run: bool, verb: str, desc: str) -> None:
    reporter = _Reporter(desc)
    try:
        result = job(services, org_id, dry_run=dry_run, progress=reporter,
                     command=_command_name())
    except KeyringError as exc:
        raise CommandError(f"keyring unavailable: {exc}") from None
    except StorageError as exc:
        raise CommandError(f"storage failure: {exc}; run the command again to continue") \
            from None
    except AuditUnavailable:
        raise CommandError("the audit log is unavailable; stopped (run the command again "
                           "to continue)") from None
    except KeyboardInterrupt:
        raise CommandError("interrupted; run the same command again to continue") from None
    finally:
        reporter.close()
    _report(result, verb)


def _report(result: rotation.JobResult, verb: str) -> None:
    if result.dry_run:
        if result.copied:
            click.echo(f"{result.copied} of them SSE-C object(s), to be re-keyed by a copy",
                       err=True)
        if result.not_touched:
            click.echo(f"{result.not_touched} SSE-C object(s) are not re-encrypted by this "
                       "command (rotate and rewrap them, or use keys migrate-ssec)", err=True)
        click.echo(f"would touch {result.objects} objects, {result.bytes} bytes")
        return
    if result.resumed:
        click.echo(f"resumed job {result.job_id} ({result.previously_done} object(s) were done "
                   "before)", err=True)
    if result.skipped:
        click.echo(f"{result.skipped} object(s) changed meanwhile and were left as they are",
                   err=True)
    if result.streamed and result.kind == rotation.REWRAP:
        click.echo(f"{result.streamed} SSE-C object(s) re-keyed by streaming (the storage does "
                   "not implement SSE-C copies)", err=True)
    if result.not_touched:
        click.echo(f"{result.not_touched} SSE-C object(s) not re-encrypted (rotate and rewrap "
                   "them, or use keys migrate-ssec)", err=True)
    for key in result.leftovers:
        click.echo(f"warning: old object {key} could not be deleted; remove it with gateway "
                   "storage reconcile --fix", err=True)
    click.echo(f"{verb} {result.objects} objects ({result.bytes} bytes) in "
               f"{result.seconds:.1f} s")
    if result.failed:
        action = ACTIONS[result.kind]
        raise CommandError(
            f"{result.failed} object(s) failed and were left as they were; see gateway audit "
            f"query --action {action} --outcome failure,integrity_failure"
        )


@keys.command("rewrap", help="Move every object onto its organisation's current key version "
              "without re-encrypting data (SSE-C objects are re-keyed by a server-side copy). "
              "Resumable: re-run to continue.")
@click.option("--org", "org_ref", help="Organisation id or name (default: every organisation).")
@click.option("--dry-run", is_flag=True, help="Only count the objects and bytes it would touch.")
@with_services(require=REWRAP_SETTINGS)
def rewrap_command(services, org_ref: str | None, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    org_id = _org_id(services, org_ref) if org_ref else None
    _execute(rotation.rewrap, services, org_id, dry_run, "rewrapped", "rewrapping")


@keys.command("reencrypt", help="Re-encrypt an organisation's client-side objects under fresh "
              "data keys (after a suspected data-key leak). Resumable: re-run to continue.")
@click.option("--org", "org_ref", required=True, help="Organisation id or name.")
@click.option("--dry-run", is_flag=True, help="Only count the objects and bytes it would touch.")
@with_services(require=ROTATION_SETTINGS)
def reencrypt_command(services, org_ref: str, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    _execute(rotation.reencrypt, services, _org_id(services, org_ref), dry_run, "re-encrypted",
             "re-encrypting")


@keys.command("migrate-ssec", help="Move an organisation's SSE-C objects to client-side "
              "encryption; new uploads are client-side at once. Resumable: re-run to continue.")
@click.option("--org", "org_ref", required=True, help="Organisation id or name.")
@click.option("--dry-run", is_flag=True, help="Only count the objects and bytes it would touch.")
@with_services(require=ROTATION_SETTINGS)
def migrate_ssec_command(services, org_ref: str, dry_run: bool) -> None:  # type: ignore[no-untyped-def]
    _execute(rotation.migrate_ssec, services, _org_id(services, org_ref), dry_run, "migrated",
             "migrating")
