"""The combiner: alone a request is its own batch; concurrent requests share one call;
a failed call reaches the callers of its batch and no one else."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from iotiam.fast.batching import LoopCombiner, StreamCombiner, ThreadCombiner


class Recorder:
    """A batch use case that doubles numbers, records its calls and fails on a negative one.

    The first call can be held until released, so that others queue up meanwhile.
    """

    def __init__(self, *, hold_first: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.threads: list[str] = []
        self.first_running = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, numbers: Sequence[int]) -> list[int]:
        self.calls.append(list(numbers))
        self.threads.append(threading.current_thread().name)
        self.first_running.set()
        self.release.wait(10)
        if any(n < 0 for n in numbers):
            raise RuntimeError("the whole call failed")
        return [2 * n for n in numbers]


def test_thread_ok_alone_a_call_is_its_own_batch() -> None:
    run = Recorder()
    combined = ThreadCombiner(run)
    assert combined([1, 2, 3]) == [2, 4, 6]
    assert combined([4]) == [8]
    assert run.calls == [[1, 2, 3], [4]]


def test_thread_ok_callers_arriving_meanwhile_share_the_next_batch() -> None:
    run = Recorder(hold_first=True)
    combined = ThreadCombiner(run)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(combined, [1])
        assert run.first_running.wait(10)
        later = [pool.submit(combined, [n, n + 1]) for n in (10, 20, 30)]
        while sum(len(w.requests) for w in combined._waiting) < 6:
            threading.Event().wait(0.01)
        run.release.set()
        assert first.result(10) == [2]
        assert sorted(f.result(10) for f in later) == [[20, 22], [40, 42], [60, 62]]
    assert run.calls[0] == [1]
    assert sorted(run.calls[1]) == [10, 11, 20, 21, 30, 31]
    assert len(run.calls) == 2


def test_thread_fail_a_failed_call_reaches_its_batch_only() -> None:
    run = Recorder(hold_first=True)
    combined = ThreadCombiner(run)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(combined, [1])
        assert run.first_running.wait(10)
        doomed = [pool.submit(combined, [-1]), pool.submit(combined, [5])]
        while len(combined._waiting) < 2:
            threading.Event().wait(0.01)
        run.release.set()
        assert first.result(10) == [2]
        for future in doomed:
            with pytest.raises(RuntimeError, match="the whole call failed"):
                future.result(10)
    # the next caller is not touched by it
    assert combined([7]) == [14]


@contextmanager
def here(answer: bool) -> Iterator[bool]:
    yield answer


def test_loop_ok_runs_on_the_loop_when_told_it_may() -> None:
    run = Recorder()
    combined = LoopCombiner(run, max_batch=4, thread_name="batch-test",
                            run_here_if=lambda: here(True))

    async def many() -> tuple[str, list[int]]:
        answers = await asyncio.gather(*(combined.submit(n) for n in range(10)))
        return threading.current_thread().name, list(answers)

    loop_thread, answers = asyncio.run(many())
    assert answers == [2 * n for n in range(10)]
    assert set(run.threads) == {loop_thread}
    assert [len(call) for call in run.calls] == [4, 4, 2]  # max_batch requests a call
    combined.close()


def test_loop_ok_runs_on_the_thread_otherwise() -> None:
    run = Recorder()
    combined = LoopCombiner(run, max_batch=64, thread_name="batch-test",
                            run_here_if=lambda: here(False))

    async def many() -> list[int]:
        return list(await asyncio.gather(*(combined.submit(n) for n in range(5))))

    assert asyncio.run(many()) == [0, 2, 4, 6, 8]
    assert set(run.threads) == {"batch-test_0"}
    assert sorted(n for call in run.calls for n in call) == [0, 1, 2, 3, 4]
    combined.close()


def test_loop_fail_a_failed_call_raises_in_each_of_its_requests() -> None:
    run = Recorder(hold_first=True)
    combined = LoopCombiner(run, max_batch=64, thread_name="batch-test")

    async def batches() -> list[int | BaseException]:
        first = asyncio.ensure_future(combined.submit(1))
        while not run.first_running.is_set():
            await asyncio.sleep(0.01)
        doomed = [asyncio.ensure_future(combined.submit(n)) for n in (-1, 3)]
        while len(combined._waiting) < 2:
            await asyncio.sleep(0.01)
        run.release.set()
        return list(await asyncio.gather(first, *doomed, return_exceptions=True))

    first, *doomed = asyncio.run(batches())
    assert first == 2
    assert all(isinstance(o, RuntimeError) for o in doomed)
    assert run.calls == [[1], [-1, 3]]

    async def alone() -> int:
        return await combined.submit(3)

    assert asyncio.run(alone()) == 6
    combined.close()


class Streamer:
    """A batch stream that doubles numbers: the first batch held until released, a
    batch with a negative number fails the whole stream before it is answered."""

    def __init__(self) -> None:
        self.streams: list[list[list[int]]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()

    def __call__(self, first: Sequence[int], following: Callable[[], Sequence[int]],
                 answer: Callable[[list[int] | Exception], None]) -> None:
        batches = [list(first)]
        self.streams.append(batches)
        self.first_running.set()
        self.release.wait(10)
        batch: Sequence[int] = first
        while batch:
            if any(n < 0 for n in batch):
                raise RuntimeError("the stream failed")
            answer([2 * n for n in batch])
            batch = following()
            if batch:
                batches.append(list(batch))


def test_stream_ok_waiting_batches_join_the_running_stream() -> None:
    stream = Streamer()
    combined = StreamCombiner(stream, max_batch=2, thread_name="stream-test")

    async def many() -> list[int]:
        first = asyncio.ensure_future(combined.submit(1))
        while not stream.first_running.is_set():
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(combined.submit(n)) for n in (2, 3, 4)]
        while len(combined._waiting) < 3:
            await asyncio.sleep(0.01)
        stream.release.set()
        return list(await asyncio.gather(first, *rest))

    assert asyncio.run(many()) == [2, 4, 6, 8]
    # one stream: the first batch, then what waited, max_batch requests a batch
    assert stream.streams == [[[1], [2, 3], [4]]]
    combined.close()


def test_stream_fail_reaches_only_the_batches_not_answered() -> None:
    stream = Streamer()
    combined = StreamCombiner(stream, max_batch=2, thread_name="stream-test")

    async def batches() -> list[int | BaseException]:
        first = asyncio.ensure_future(combined.submit(1))
        while not stream.first_running.is_set():
            await asyncio.sleep(0.01)
        doomed = [asyncio.ensure_future(combined.submit(n)) for n in (-1, 3)]
        while len(combined._waiting) < 2:
            await asyncio.sleep(0.01)
        stream.release.set()
        return list(await asyncio.gather(first, *doomed, return_exceptions=True))

    first, *doomed = asyncio.run(batches())
    assert first == 2
    assert all(isinstance(o, RuntimeError) for o in doomed)

    async def alone() -> int:
        return await combined.submit(5)

    assert asyncio.run(alone()) == 10  # the combiner goes on with a new stream
    combined.close()
