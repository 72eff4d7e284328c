"""``kernel.pipelined``: a bulk step's producing and consuming on two threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from iotiam.kernel import pipelined


def test_pipelined_ok_in_order_on_another_thread() -> None:
    consumed: list[tuple[int, str]] = []
    pipelined(range(50), lambda n: consumed.append((n, threading.current_thread().name)))
    assert [n for n, _ in consumed] == list(range(50))
    assert {name for _, name in consumed} == {"pipelined-consumer"}


def test_pipelined_ok_at_most_one_item_waits() -> None:
    # the producer is at most two items ahead of the consumer: one waiting, one being
    # produced (memory holds a bounded number of batches whatever the input's size)
    produced: list[int] = []
    ahead: list[int] = []
    release = threading.Event()

    def items() -> Iterator[int]:
        for n in range(6):
            produced.append(n)
            yield n

    def consume(n: int) -> None:
        if n == 0:
            # the producer fills the queue, then blocks: give it the time to run ahead
            release.wait(0.2)
        ahead.append(len(produced) - n)

    pipelined(items(), consume)
    assert max(ahead) <= 3 and ahead[0] == 3


def test_pipelined_fail_consumer_error_stops_the_producer() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for n in range(1000):
            produced.append(n)
            yield n

    def consume(n: int) -> None:
        if n == 2:
            raise ValueError("bad batch")

    with pytest.raises(ValueError, match="bad batch"):
        pipelined(items(), consume)
    assert len(produced) < 10


def test_pipelined_fail_producer_error_after_what_it_produced_is_consumed() -> None:
    consumed: list[int] = []

    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise KeyError("broken input")

    with pytest.raises(KeyError, match="broken input"):
        pipelined(items(), consumed.append)
    assert consumed == [1, 2]
    assert [t for t in threading.enumerate() if t.name == "pipelined-consumer"] == []
