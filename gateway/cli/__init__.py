"""The ``gateway`` command line: on top of everything, beside the web app.

Each module holds the commands of one area and lists them in ``COMMANDS``. Every
:class:`~gateway.errors.GatewayError` that a command lets through is reported by one handler,
as one line (``gateway: ...``, exit status 1), never a traceback. The same commands are
offered to ``flask`` as plugins (``flask.commands`` entry points in ``setup.cfg``).

May import anything of the gateway: it stands on top (``gateway dev`` builds the web app).
Rooms: one module per area (``admin``, ``keys``, ``rotation``, ``audit``, ``storage``,
``files``, ``decrypt``, ``dev``), :mod:`.root` (the root group), :mod:`._common`.
"""
from .root import GROUPS, cli, main

__all__ = ["GROUPS", "cli", "main"]
