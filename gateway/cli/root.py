"""The root command group, every area's commands under it, and the console-script entry point."""
from __future__ import annotations

import click

from . import admin, audit, decrypt, dev, files, keys, rotation, storage, uploads
from ._common import GatewayGroup

#: ``rotation``'s commands join the ``keys`` group.
_AREAS = (admin, dev, keys, rotation, audit, storage, decrypt, files, uploads)


@click.group(cls=GatewayGroup, help="Encrypting upload gateway for patient files.")
def cli() -> None:
    """Root command group."""


GROUPS: list[click.Command] = [command for area in _AREAS for command in area.COMMANDS]
for _command in GROUPS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point (click's standalone mode, with the gateway's one-line errors)."""
    try:
        cli(prog_name="gateway", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        raise SystemExit(1) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None


__all__ = ["GROUPS", "cli", "main"]
