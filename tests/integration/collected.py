"""The ``deliver`` callback the broker event tests hand to an event source."""

from __future__ import annotations

import threading
from collections.abc import Callable

from iotiam.detection.models import Event


class Collected:
    """Keeps every delivered batch and wakes whoever waits for an event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0
        self._changed = threading.Condition()

    def __call__(self, events: list[Event]) -> None:
        with self._changed:
            self.events.extend(events)
            self.batches += 1
            self._changed.notify_all()

    def wait_for(self, ready: Callable[[list[Event]], bool], timeout: float = 5.0) -> bool:
        """Whether ``ready`` holds for the events within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: ready(self.events), timeout)
