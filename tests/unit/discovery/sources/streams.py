"""Inputs made on the fly for the sources' streaming tests: a file of any size, never held."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")


class _Generated(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self.size += len(chunk)
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def generated(parts: Iterable[bytes], batch: int = 200) -> tuple[IO[bytes], _Generated]:
    """A buffered binary stream of ``parts`` joined, made as it is read, and its raw end
    (whose ``size`` is how many bytes were made)."""
    def chunks() -> Iterator[bytes]:
        pending: list[bytes] = []
        for part in parts:
            pending.append(part)
            if len(pending) >= batch:
                yield b"".join(pending)
                pending.clear()
        if pending:
            yield b"".join(pending)
    raw = _Generated(chunks())
    return io.BufferedReader(raw), raw


def peak_memory(run: Callable[[], T]) -> tuple[T, int]:
    """What ``run`` returns and the peak of memory it allocated, in bytes."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def memory_is_flat(read: Callable[[IO[bytes]], int], make: Callable[[int], Iterable[bytes]],
                   small: int, big: int) -> tuple[int, int]:
    """Read ``make(small)`` and ``make(big)`` records with ``read`` (which returns how many
    it took) and check the peak of the bigger did not grow with it: ``(peak, bytes)``."""
    peaks = []
    for count in (small, big):
        stream, raw = generated(make(count))
        taken, peak = peak_memory(lambda: read(stream))  # noqa: B023 (called at once)
        assert taken >= count * 0.9
        peaks.append(peak)
    assert peaks[1] < peaks[0] * 1.25 + 64 * 1024, f"the peak grew: {peaks}"
    return peaks[1], raw.size
