"""Serving the app with gunicorn.

Also usable as a gunicorn configuration module: ``gunicorn -c python:gateway.serve wsgi:app``.

The workers are asynchronous (gevent, :class:`GatewayWorker`): every connection is a greenlet,
not a thread, so a thousand idle, half-sent or slowly read connections cost memory only and
never hold up ``/healthz`` or anyone else's transfer (``bench/slow_clients.py`` measures it).
psycopg 3, SQLAlchemy's pool, boto3 and the download read-ahead cooperate with gevent once it
has patched the standard library, which the worker does before the app is loaded.

Every connection has deadlines, so that the idle and the trickling are closed:

* ``GATEWAY_HEADER_TIMEOUT`` (10 s): from the connection's start (or the end of the previous
  response on a kept-alive one) to the end of the request's headers;
* ``GATEWAY_BODY_TIMEOUT`` (30 s) and ``GATEWAY_BODY_MIN_RATE`` (4096 bytes/s): a request body
  must arrive within the timeout plus one second per ``MIN_RATE`` bytes received (the rule of
  Apache's mod_reqtimeout), so a client trickling a few bytes a second is cut off; the upload
  is then aborted and audited like any other interrupted upload;
* ``GATEWAY_SEND_TIMEOUT`` (60 s): a response write that makes no progress for this long (a
  client that stopped reading) ends the connection; the download is audited ``aborted``.

``GATEWAY_WORKER_CLASS=sync`` or ``gthread`` selects gunicorn's synchronous workers instead
(for comparison only: a few stalled clients then block every worker).
"""
from __future__ import annotations

import multiprocessing
import os
import re
import resource
import socket
import sys
import time
from typing import Any, Callable

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

WORKER_CLASSES = {"gevent": "gateway.serve.GatewayWorker", "gthread": "gthread", "sync": "sync"}

worker_class = WORKER_CLASSES[os.environ.get("GATEWAY_WORKER_CLASS", "gevent")]
workers = int(os.environ.get("GATEWAY_WORKERS", min(4, multiprocessing.cpu_count())))
threads = int(os.environ.get("GATEWAY_THREADS", "32"))  # gthread only
worker_connections = int(os.environ.get("GATEWAY_WORKER_CONNECTIONS", "4096"))  # gevent only
timeout = 300  # a worker is only killed if its main loop stalls, not for a long download
graceful_timeout = 30
keepalive = 5
header_timeout = float(os.environ.get("GATEWAY_HEADER_TIMEOUT", "10"))
body_timeout = float(os.environ.get("GATEWAY_BODY_TIMEOUT", "30"))
body_min_rate = float(os.environ.get("GATEWAY_BODY_MIN_RATE", "4096"))
send_timeout = float(os.environ.get("GATEWAY_SEND_TIMEOUT", "60"))
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
        "worker_connections": worker_connections,
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
        if self.opts.get("worker_class") == WORKER_CLASSES["gevent"] and "ssl" in sys.modules:
            # gevent must patch the standard library before ssl is imported; this process has
            # loaded the gateway (boto3, ssl) before forking, so its workers use threads
            self.opts = {**self.opts, "worker_class": "gthread"}
        for key, value in self.opts.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Any:
        return self.factory()


# -- connections without threads -------------------------------------------------------------


def on_starting(server: Any) -> None:
    """Raise the open-file limit to its ceiling: each connection is a descriptor."""
    raise_fd_limit()


def raise_fd_limit(wanted: int = 65536) -> int:
    """Set the soft ``RLIMIT_NOFILE`` to ``wanted`` (at most the hard limit); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class _Deadlines:
    """A client socket whose reads and writes have deadlines (see the module's docstring).

    Reads outside a request body have no deadline of their own: the worker bounds the whole
    header phase with one timer. Within a body the deadline moves on with the bytes received,
    so a client must keep up :data:`body_min_rate` on average; writes must make progress
    within :data:`send_timeout`. A missed deadline raises :class:`TimeoutError`.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._body_deadline: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def start_body(self) -> None:
        self._body_deadline = time.monotonic() + body_timeout

    def end_body(self) -> None:
        self._body_deadline = None
        self._sock.settimeout(None)

    def _before_read(self) -> None:
        if self._body_deadline is None:
            return
        left = self._body_deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request body arrived too slowly")
        self._sock.settimeout(left)

    def _after_read(self, n: int) -> None:
        if self._body_deadline is not None and body_min_rate > 0:
            self._body_deadline += n / body_min_rate

    def recv(self, size: int, *args: Any) -> bytes:
        self._before_read()
        try:
            data = self._sock.recv(size, *args)
        except TimeoutError:
            raise TimeoutError("the request body arrived too slowly") from None
        self._after_read(len(data))
        return data

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._before_read()
        try:
            n = self._sock.recv_into(buffer, *args)
        except TimeoutError:
            raise TimeoutError("the request body arrived too slowly") from None
        self._after_read(n)
        return n

    def sendall(self, data: Any, *args: Any) -> None:
        view = memoryview(data).cast("B")
        self._sock.settimeout(send_timeout)
        try:
            while view:  # each send waits at most send_timeout for the client to take bytes
                view = view[self._sock.send(view, *args):]
        finally:
            self._sock.settimeout(None)

    def send(self, data: Any, *args: Any) -> int:
        self._sock.settimeout(send_timeout)
        try:
            return self._sock.send(data, *args)
        finally:
            self._sock.settimeout(None)


def _gevent_worker() -> type:
    from gunicorn.workers.ggevent import GeventWorker

    class Worker(GeventWorker):  # type: ignore[misc,valid-type]
        """gunicorn's gevent worker with the header, body and send deadlines above."""

        def timeout_ctx(self) -> Any:
            import gevent

            return gevent.Timeout(header_timeout, False)  # silent: the connection just ends

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            client.setblocking(1)
            super().handle(listener, _Deadlines(client), addr)

        def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
            sock.start_body()
            try:
                super().handle_request(listener_name, req, sock, addr)
            finally:
                sock.end_body()

    Worker.__name__ = Worker.__qualname__ = "GatewayWorker"
    return Worker


def __getattr__(name: str) -> Any:
    # gunicorn loads ``gateway.serve.GatewayWorker`` in the master; gevent is imported only then
    if name == "GatewayWorker":
        worker = _gevent_worker()
        globals()["GatewayWorker"] = worker
        return worker
    raise AttributeError(name)
