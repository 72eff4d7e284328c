"""Partitioned detection: which engine an event belongs to, and one engine per partition.

When events travel through a stream (``docs/event-stream.md``) they are split into a
fixed number of partitions by device, so that one device's events always reach the same
engine and its baseline lives in one place. A partition's engine is owned by one worker
at a time; another worker carries on from its snapshot, which records the last stream
position it applied, so a redelivered batch is recognised and skipped (at-least-once
delivery, each event counted once).

Pure: no stream, no clock; the adapter (``iotiam.eventstream``) feeds it positions.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import Event, Finding
from iotiam.detection.ports import ModeSource, ZoneSource
from iotiam.errors import InvalidInput

PARTITION_SNAPSHOT_VERSION = 1

log = logging.getLogger("iotiam.detection")


def partition_key(event: Event) -> str:
    """What an event is partitioned by: its device; for an unknown client (an
    ``auth_failure`` without a device) the address it came from, else its client id, so
    a burst from one address lands in one engine."""
    return event.device_id or event.source_ip or event.client_id or ""


def partition_of(event: Event, partitions: int) -> int:
    """The event's partition: a stable hash of its key (the same in every process and
    release: CRC-32, not Python's salted ``hash``)."""
    return zlib.crc32(partition_key(event).encode()) % partitions


class PartitionEngine:
    """One partition's engine and the stream position of the last batch it applied."""

    def __init__(self, partition: int, engine: DetectionEngine, applied: int = 0) -> None:
        self.partition = partition
        self.engine = engine
        #: stream sequence of the last batch applied (0: none)
        self.applied = applied
        #: batches applied since the last snapshot
        self.unsaved = 0
        #: events a detector failed on (logged, not retried: they would fail again)
        self.failed = 0
        #: released or lost: nothing more is applied (its next owner carries on)
        self.closed = False
        # a snapshot must hold the baselines and the position they include together
        self._lock = threading.Lock()

    @classmethod
    def fresh(cls, partition: int, *, learning_seconds: float, modes: ModeSource | None,
              zones: ZoneSource | None = None) -> PartitionEngine:
        """A partition nothing was learned for yet."""
        return cls(partition, DetectionEngine(learning_seconds=learning_seconds, modes=modes,
                                              zones=zones))

    @classmethod
    def restore(cls, state: Mapping[str, Any], *, modes: ModeSource | None,
                zones: ZoneSource | None = None) -> PartitionEngine:
        """Carry on from ``snapshot``'s state."""
        if not isinstance(state, Mapping) or state.get("version") != PARTITION_SNAPSHOT_VERSION:
            raise InvalidInput("not a partition snapshot of version "
                               f"{PARTITION_SNAPSHOT_VERSION}")
        try:
            partition, applied = int(state["partition"]), int(state["applied"])
            engine = DetectionEngine.restore(state["engine"], modes=modes, zones=zones)
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidInput(f"partition snapshot is damaged: {error!r}") from error
        return cls(partition, engine, applied)

    def apply(self, sequence: int, events: Sequence[Event]) -> list[Finding] | None:
        """Score a batch read at stream position ``sequence``; None (nothing done) when
        that position was applied already (a redelivery after a takeover) or the
        partition is closed."""
        with self._lock:
            if sequence <= self.applied or self.closed:
                return None
            return self._apply(sequence, events)

    def forgive(self, sequence: int, finding: Finding) -> bool:
        """Apply a false positive read at ``sequence`` (False: applied already, closed,
        or no detector of this engine raised it)."""
        with self._lock:
            if sequence <= self.applied or self.closed:
                return False
            self.applied = sequence
            self.unsaved += 1
            try:
                self.engine.false_positive(finding)
            except InvalidInput:
                return False
            return True

    def close(self) -> None:
        """Apply nothing more (waits for a batch being applied)."""
        with self._lock:
            self.closed = True

    def _apply(self, sequence: int, events: Sequence[Event]) -> list[Finding]:
        findings: list[Finding] = []
        process = self.engine.process
        for event in events:
            try:
                findings.extend(process(event))
            except Exception:  # a detector's bug on one event fails that event alone (G12)
                self.failed += 1
                log.exception("scoring a %s event of partition %d failed", event.kind,
                              self.partition)
        self.applied = sequence
        self.unsaved += 1
        return findings

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state: the baselines and the position they include (from now on
        ``unsaved`` counts the batches since this one)."""
        with self._lock:
            self.unsaved = 0
            return {"version": PARTITION_SNAPSHOT_VERSION, "partition": self.partition,
                    "applied": self.applied, "engine": self.engine.snapshot()}
