"""Time as an injected dependency: production uses ``SystemClock``, tests a frozen one."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current time (always timezone-aware UTC)."""

    def now(self) -> datetime:
        """Return the current instant in UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        """Return the current instant in UTC."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; used by tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        """Return the frozen instant."""
        return self._now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta``."""
        self._now += delta

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (must be timezone-aware)."""
        if instant.tzinfo is None:
            raise ValueError("FrozenClock needs an aware datetime")
        self._now = instant


def idle(wake: threading.Event, stop: threading.Event, seconds: float, step: float) -> None:
    """Wait until ``wake`` or ``stop`` is set or ``seconds`` pass; ``stop`` (which nobody
    else sets ``wake`` for) is seen within ``step`` seconds."""
    deadline = time.monotonic() + seconds
    while not (stop.is_set() or wake.is_set()):
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wake.wait(min(step, left))
