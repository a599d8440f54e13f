"""read_ahead: order, errors in place, bounded look-ahead, and a clean stop when closed."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.storage import read_ahead


class Source:
    """An iterator that records how far it was driven and whether it was closed."""

    def __init__(self, n: int, *, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.made = 0
        self.closed = threading.Event()
        self.threads: set[str] = set()

    def __iter__(self) -> Iterator[int]:
        return self._gen()

    def _gen(self) -> Iterator[int]:
        try:
            for i in range(self.n):
                self.threads.add(threading.current_thread().name)
                if i == self.fail_at:
                    raise ValueError(f"broken at {i}")
                self.made += 1
                yield i
        finally:
            self.closed.set()


@settings(max_examples=50, deadline=None)
@given(n=st.integers(0, 50), depth=st.integers(1, 6))
def test_yields_every_item_in_order(n: int, depth: int) -> None:
    source = Source(n)
    assert list(read_ahead(iter(source), depth)) == list(range(n))
    assert source.closed.wait(2)


def test_the_source_runs_in_another_thread() -> None:
    source = Source(3)
    assert list(read_ahead(iter(source), 2)) == [0, 1, 2]
    assert source.threads == {"read-ahead"}


def test_an_error_arrives_after_the_items_made_before_it() -> None:
    got = []
    with pytest.raises(ValueError, match="broken at 3"):
        for item in read_ahead(iter(Source(10, fail_at=3)), 4):
            got.append(item)
    assert got == [0, 1, 2]


def test_look_ahead_is_bounded() -> None:
    source = Source(1000)
    ahead = read_ahead(iter(source), 3)
    assert next(ahead) == 0
    time.sleep(0.3)
    # one item taken, three queued, one made and waiting for room in the queue
    assert source.made <= 1 + 3 + 1
    ahead.close()  # type: ignore[attr-defined]


def test_closing_stops_the_thread_and_closes_the_source() -> None:
    source = Source(10**9)
    ahead = read_ahead(iter(source), 2)
    assert [next(ahead) for _ in range(5)] == [0, 1, 2, 3, 4]
    ahead.close()  # type: ignore[attr-defined]
    assert source.closed.wait(2)
    made = source.made
    time.sleep(0.3)
    assert source.made == made


def test_nothing_runs_until_the_first_item_is_asked_for() -> None:
    source = Source(10)
    ahead = read_ahead(iter(source), 2)
    time.sleep(0.2)
    assert source.made == 0
    del ahead


# -- OffloadedHash / offload ---------------------------------------------------------------


@given(st.lists(st.binary(max_size=70_000), max_size=12))
@settings(max_examples=40, deadline=None)
def test_offloaded_hash_equals_hashlib_in_order(pieces: list[bytes]) -> None:
    import hashlib

    from gateway.storage import OffloadedHash

    offloaded = OffloadedHash(hashlib.sha256())
    for piece in pieces:
        offloaded.update(piece)
    assert offloaded.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_offload_runs_on_another_thread_and_returns_or_raises() -> None:
    from gateway.storage import offload

    assert offload(threading.get_ident).result() != threading.get_ident()
    assert offload(sum, [1, 2, 3]).result() == 6
    with pytest.raises(ZeroDivisionError):
        offload(divmod, 1, 0).result()
