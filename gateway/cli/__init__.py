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
    """Console-script entry point."""
    cli(prog_name="gateway")


__all__ = ["cli", "main", "GROUPS"]
