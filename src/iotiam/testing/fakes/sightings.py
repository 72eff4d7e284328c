"""A ``SightingSink`` that records what iotiam's own traffic hands to discovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from iotiam.discovery.models import Sighting


class RecordingSightingSink:
    """Keeps every sighting it is given, in order (thread-safe), and can wait for some."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._sightings: list[Sighting] = []
        #: how many ``observe`` calls there were
        self.calls = 0

    def observe(self, sightings: Sequence[Sighting]) -> None:
        """Record ``sightings``."""
        with self._lock:
            self._sightings.extend(sightings)
            self.calls += 1
            self._lock.notify_all()

    @property
    def sightings(self) -> list[Sighting]:
        """A copy of what was recorded so far."""
        with self._lock:
            return list(self._sightings)

    def wait_for(self, done: Callable[[list[Sighting]], bool], timeout: float = 10.0) -> bool:
        """Whether ``done(sightings)`` came true within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not done(list(self._sightings)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True
