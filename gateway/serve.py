"""Serving the app with gunicorn.

Also usable as a gunicorn configuration module: ``gunicorn -c python:gateway.serve wsgi:app``.
Threaded workers (``gthread``) give each connection its own thread, so a slow client reading
a large download holds one thread, not a worker: many slow clients do not starve the others.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable

from gunicorn.app.base import BaseApplication

worker_class = "gthread"
workers = int(os.environ.get("GATEWAY_WORKERS", min(4, multiprocessing.cpu_count())))
threads = int(os.environ.get("GATEWAY_THREADS", "32"))
timeout = 300  # a worker is only killed if its main loop stalls, not for a long download
graceful_timeout = 30
keepalive = 5
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms'


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
