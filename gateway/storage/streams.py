"""Stream helpers with no I/O of their own."""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Iterator, TypeVar

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
