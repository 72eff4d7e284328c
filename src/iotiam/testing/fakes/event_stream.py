"""An ``EventPublisher`` that keeps what it is given, or refuses as a stream that is down."""

from __future__ import annotations

from collections.abc import Sequence

from iotiam.detection.models import Event, Finding
from iotiam.errors import StreamUnavailable


class RecordingEventPublisher:
    """Keeps every published batch; ``down`` makes it refuse like an unreachable stream."""

    def __init__(self, *, down: bool = False) -> None:
        self.batches: list[list[Event]] = []
        self.forgiven: list[Finding] = []
        self.down = down
        self.closed = False

    def publish(self, events: Sequence[Event]) -> None:
        """Keep the batch, or refuse it."""
        if self.down:
            raise StreamUnavailable("the event stream is down (a test's fake)")
        self.batches.append(list(events))

    def forgive(self, finding: Finding) -> None:
        """Keep the false positive, or refuse it."""
        if self.down:
            raise StreamUnavailable("the event stream is down (a test's fake)")
        self.forgiven.append(finding)

    def close(self) -> None:
        """Remember it was closed."""
        self.closed = True
