"""Event builders and a monitoring engine for the detector tests."""

from __future__ import annotations

from typing import Any

from iotiam.detection.engine import DetectionEngine, ModeTable
from iotiam.detection.models import DetectionMode, Event, EventKind, Finding
from iotiam.detection.ports import Detector

#: Monday 2 March 2026, 12:00 UTC
T0 = 1_772_452_800.0
LEARN = 600.0


class SwitchedModes:
    """A mode source: every type (and unknown clients) learns until a test switches
    ``mode`` to monitor, as an admin does."""

    def __init__(self) -> None:
        self.mode = DetectionMode.LEARN

    def mode_of(self, device_type: str | None) -> DetectionMode:
        return self.mode


def event(kind: EventKind, at: float, device: str | None = "d1", device_type: str = "sensor",
          **fields: Any) -> Event:
    """One event of ``device`` (of ``device_type``)."""
    return Event(kind, at, device, device_type, **fields)


def publishes(device: str, start: float, count: int, every: float, size: int = 100,
              device_type: str = "sensor") -> list[Event]:
    """``count`` publishes every ``every`` seconds (±2 % wobble, so spreads are not 0)."""
    out, at = [], start
    for i in range(count):
        out.append(event(EventKind.PUBLISH, at, device, device_type,
                         topic=f"devices/{device}/telemetry", size=size + (i * 13) % 7))
        at += every * (1 + 0.01 * ((i * 7) % 5 - 2))
    return out


def monitor(*detectors: Detector, learning: float = LEARN) -> DetectionEngine:
    """An engine with these detectors, every type in monitor mode."""
    return DetectionEngine(list(detectors) or None, learning_seconds=learning,
                           modes=ModeTable(DetectionMode.MONITOR))


def run(engine: DetectionEngine, events: list[Event]) -> list[Finding]:
    """Every finding of the events, in time order."""
    return engine.process_many(sorted(events, key=lambda e: e.at))
