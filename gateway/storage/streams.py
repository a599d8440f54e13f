"""Stream helpers with no I/O of their own: read-ahead, and work handed to a native thread."""
from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Protocol, TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.1


def read_ahead(source: Iterator[T], depth: int) -> Iterator[T]:
    """Yield ``source``'s items, produced by a thread up to ``depth`` items ahead.

    What the source does to make an item (read a socket, decrypt, hash) then overlaps with
    what the consumer does with the previous ones. An exception in the source is raised in the
    consumer where the item would have come, after the items made before it. The thread starts
    at the first ``next``; closing the returned generator (or leaving it to the garbage
    collector) stops the thread at its next item and closes the source in that thread.
    """
    items: queue.Queue[tuple[bool, object]] = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                items.put(entry, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((True, item)):
                    return
                time.sleep(0)  # let the others run: under gevent a greenlet yields only here
        except BaseException as exc:  # noqa: BLE001  (handed to the consumer)
            put((False, exc))
            return
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # the consumer must still hear the end
                    close()
        put((False, None))

    def consume() -> Iterator[T]:
        worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
        worker.start()
        try:
            while True:
                ok, value = items.get()
                if ok:
                    yield value  # type: ignore[misc]
                elif value is None:
                    return
                else:
                    raise value  # type: ignore[misc]
        finally:
            stop.set()

    return consume()


# -- work that releases the GIL, on a native thread -------------------------------------------

class _Waitable(Protocol):
    def result(self) -> Any: ...


class _Gevent:
    """A gevent ``AsyncResult`` with the ``Future.result`` a caller waits on."""

    __slots__ = ("_async",)

    def __init__(self, async_result: Any) -> None:
        self._async = async_result

    def result(self) -> Any:
        return self._async.get()


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_gevent_pool: Any = None
#: native threads for offloaded work: more than the cores would only queue in the kernel
OFFLOAD_THREADS = max(2, os.cpu_count() or 2)


def offload(fn: Callable[..., Any], *args: Any) -> _Waitable:
    """Run ``fn(*args)`` on a native thread; wait for it with ``.result()``.

    For work that releases the GIL (hashing, checksums) while the caller goes on with what
    holds it (encryption, parsing). Under gevent's monkey patching ``threading`` makes
    greenlets, all on one OS thread, so a gevent pool of :data:`OFFLOAD_THREADS` native
    threads is used, and the caller's wait lets the other greenlets run; otherwise a shared
    pool of as many ordinary threads.
    """
    global _gevent_pool, _pool
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        # a pool of its own, not the hub's, which also resolves host names: hashing queued
        # behind a burst of uploads must not hold up a DNS lookup
        if _gevent_pool is None:
            from gevent.threadpool import ThreadPool

            _gevent_pool = ThreadPool(OFFLOAD_THREADS)
        return _Gevent(_gevent_pool.spawn(fn, *args))
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=OFFLOAD_THREADS,
                                           thread_name_prefix="offload")
    return _pool.submit(fn, *args)


class OffloadedHash:
    """A ``hashlib`` object fed on a native thread, one update behind the caller.

    :meth:`update` waits for the previous update, then hands this one over and returns, so
    hashing a piece overlaps with what the caller does next (encrypting it, reading the next).
    The caller must not change a piece after handing it over.
    """

    def __init__(self, hasher: Any) -> None:
        self._hasher = hasher
        self._pending: _Waitable | None = None

    def _settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._settle()
        self._pending = offload(self._hasher.update, data)

    def hexdigest(self) -> str:
        self._settle()
        return str(self._hasher.hexdigest())
