"""The ``gateway`` command line (also available as ``flask --app gateway ...``)."""
from __future__ import annotations

import click

GROUPS: list[click.Command] = []


@click.group(help="Encrypting upload gateway for patient files.")
def cli() -> None:
    """Root command group."""


def _register() -> None:
    import importlib

    for name in ("admin", "dev", "keys", "rotation", "audit", "storage", "decrypt", "files"):
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # an area whose commands are not built yet
            raise
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)
            GROUPS.append(command)


_register()


def main() -> None:
    """Console-script entry point.

    A database that cannot be reached, or has no tables yet, stops a command with one line
    that says so, never a traceback.
    """
    from sqlalchemy.exc import OperationalError, ProgrammingError

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
    except (OperationalError, ProgrammingError) as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else type(exc).__name__
        hint = " (run `gateway db upgrade`)" if "no such table" in reason or \
            "does not exist" in reason else ""
        click.echo(f"gateway: database error: {reason}{hint}", err=True)
        raise SystemExit(1) from None


__all__ = ["cli", "main", "GROUPS"]
