"""Serving the app with gunicorn.

Also usable as a gunicorn configuration module: ``gunicorn -c python:gateway.serve wsgi:app``.
Threaded workers (``gthread``) give each connection its own thread, so a slow client reading
a large download holds one thread, not a worker: many slow clients do not starve the others.
"""
from __future__ import annotations

import multiprocessing
import os
import re
from typing import Any, Callable

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

worker_class = "gthread"
workers = int(os.environ.get("GATEWAY_WORKERS", min(4, multiprocessing.cpu_count())))
threads = int(os.environ.get("GATEWAY_THREADS", "32"))
timeout = 300  # a worker is only killed if its main loop stalls, not for a long download
graceful_timeout = 30
keepalive = 5
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
# The route (the URL rule that matched), never the raw path or query string: paths name
# patients and a link's URL is its credential. ``%(r)s``, ``%(U)s``, ``%(q)s`` and ``%(f)s``
# say the same (see AccessLogger) should a deployment put them back in its own format.
access_log_format = '%(h)s "%(m)s %(route)s" %(s)s %(b)s %(M)sms rid=%(rid)s'

#: The WSGI environ keys the application fills in (gateway.web.context)
ENVIRON_ROUTE = "gateway.route"
ENVIRON_REQUEST_ID = "gateway.request_id"
_SECRET_ENVIRON = ("RAW_URI", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME",
                   "HTTP_REFERER", "HTTP_AUTHORIZATION", "HTTP_COOKIE")
_SECRET_HEADERS = ("referer", "authorization", "cookie", "x-csrftoken", "x-csrf-token")
_QUOTED = re.compile(r"""['"].*""", re.S)


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with nothing of a request's URL in the access or error log.

    Atoms: ``route`` (the URL rule that matched, ``-`` if none) and ``rid`` (the request id,
    as in ``X-Request-Id`` and the audit trail). The request line, path, query, referer,
    credentials and the raw-URI environ variables are replaced by the route or ``-``.
    """

    def atoms(self, resp, req, environ, request_time):  # type: ignore[no-untyped-def]
        atoms = super().atoms(resp, req, environ, request_time)
        route = str(environ.get(ENVIRON_ROUTE) or "-")
        method = environ.get("REQUEST_METHOD", "-")
        atoms.update({
            "route": route,
            "rid": str(environ.get(ENVIRON_REQUEST_ID) or "-"),
            "r": f"{method} {route} {environ.get('SERVER_PROTOCOL', '-')}",
            "U": route,
            "q": "-",
            "f": "-",
        })
        for name in _SECRET_ENVIRON:
            atoms.pop("{%s}e" % name.lower(), None)
        for name in _SECRET_HEADERS:
            atoms.pop("{%s}i" % name, None)
        return atoms

    def exception(self, msg, *args, **kwargs):  # type: ignore[no-untyped-def]
        # gunicorn names the request's URI when the application fails mid-response
        if isinstance(msg, str) and msg.startswith("Error handling request"):
            msg, args = "Error handling request (its path is not logged)", ()
        super().exception(msg, *args, **kwargs)

    def warning(self, msg, *args, **kwargs):  # type: ignore[no-untyped-def]
        # "Invalid request from ip=...: Invalid HTTP request line: '<the line>'"
        if isinstance(msg, str) and msg.startswith("Invalid request from"):
            msg = _QUOTED.sub("(request text not logged)", msg)
        super().warning(msg, *args, **kwargs)


logger_class = AccessLogger


def options(bind: str, **overrides: Any) -> dict[str, Any]:
    """The gunicorn settings above, for :class:`Server`."""
    opts: dict[str, Any] = {
        "bind": bind,
        "worker_class": worker_class,
        "workers": workers,
        "threads": threads,
        "timeout": timeout,
        "graceful_timeout": graceful_timeout,
        "keepalive": keepalive,
        "accesslog": accesslog,
        "access_log_format": access_log_format,
        "logger_class": logger_class,
    }
    if worker_tmp_dir:
        opts["worker_tmp_dir"] = worker_tmp_dir
    opts.update(overrides)
    return opts


class Server(BaseApplication):  # type: ignore[misc]
    """gunicorn running an app built by ``factory`` in each worker."""

    def __init__(self, factory: Callable[[], Any], opts: dict[str, Any]) -> None:
        self.factory = factory
        self.opts = opts
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.opts.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self.factory()
