"""The detection pipeline: events in, findings out, in the mode of each event's device type.

Synchronous and in-process: ``process`` returns the findings the event raised, so the
event -> finding latency is the time of that call. The engine decides nothing about
responses and holds no modes: it asks its ``ModeSource`` (``detection/ports.py``; in a
running installation the response settings, which admins set) for the mode of each
event's type, its ``ZoneSource`` for each device's time zone (time of day is judged in
the device's site's zone), learns only in ``learn``, and raises the same findings in ``monitor`` and
``enforce`` (the response layer reads the mode again to decide whether to act).

Threading: built for one ingest thread calling ``process`` / ``process_many``, with
admin calls (``false_positive``, ``snapshot``, ``stats``) from other threads. One lock
serialises them all; ``process_many`` takes it once per batch, so feed batches from the
ingest thread to keep the lock out of the per-event cost. Asking for a mode adds no
lock: the source answers with one dict lookup.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from iotiam.detection.detectors import default_detectors
from iotiam.detection.episodes import DeviceRhythm
from iotiam.detection.models import UNKNOWN_TYPE, DetectionMode, Event, EventKind, Finding
from iotiam.detection.ports import Detector, ModeSource, ZoneSource
from iotiam.detection.zones import ZoneTable
from iotiam.errors import InvalidInput

#: a device is judged by its own baseline after this long (before, by its type's)
DEFAULT_LEARNING_SECONDS = 3600.0
#: 3: sizes per topic, rate extremes, activity per local hour of the week; 2: no modes
#: (they are the response settings'); 1 also kept them. Both are still read (each
#: detector reads its older shape)
SNAPSHOT_VERSION = 3
READABLE_VERSIONS = (1, 2, SNAPSHOT_VERSION)


def parse_mode(mode: DetectionMode | str) -> DetectionMode:
    """``mode`` as a ``DetectionMode`` (``InvalidInput`` naming the choices if it is none)."""
    try:
        return DetectionMode(mode)
    except ValueError:
        modes = ", ".join(m.value for m in DetectionMode)
        raise InvalidInput(f"unknown detection mode {mode!r}; one of {modes}") from None


class ModeTable:
    """A ``ModeSource`` given in code: ``default`` for every type but those in ``by_type``
    (events with no type: ``by_type[UNKNOWN_TYPE]``, else ``default`` too).

    An engine built without a source reads ``ModeTable()``: every type learns. The tests
    and the benchmarks give others; a running installation's engine reads the response
    settings instead (``detection_wiring.detection_engine``).
    """

    def __init__(self, default: DetectionMode | str = DetectionMode.LEARN,
                 by_type: Mapping[str, DetectionMode | str] | None = None) -> None:
        self.default = parse_mode(default)
        self._by_type = {t: parse_mode(m) for t, m in (by_type or {}).items()}

    def set(self, device_type: str, mode: DetectionMode | str) -> None:
        """Put a device type in another mode (the engine follows from its next event)."""
        self._by_type[device_type] = parse_mode(mode)

    def mode_of(self, device_type: str | None) -> DetectionMode:
        """The type's mode."""
        return self._by_type.get(device_type or UNKNOWN_TYPE, self.default)


@dataclass(frozen=True)
class DetectionStats:
    """What the engine has seen since it started (or was restored)."""

    events: int
    events_by_kind: Mapping[str, int] = field(default_factory=dict)
    findings_by_type: Mapping[str, int] = field(default_factory=dict)

    @property
    def findings(self) -> int:
        """All findings raised."""
        return sum(self.findings_by_type.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"events": self.events, "findings": self.findings,
                "events_by_kind": dict(self.events_by_kind),
                "findings_by_type": dict(self.findings_by_type)}


class DetectionEngine:
    """Runs every event through the detectors, in the mode of the event's device type."""

    def __init__(self, detectors: Sequence[Detector] | None = None, *,
                 learning_seconds: float = DEFAULT_LEARNING_SECONDS,
                 modes: ModeSource | None = None, zones: ZoneSource | None = None) -> None:
        if learning_seconds < 0:
            raise InvalidInput("learning_seconds must not be negative")
        self.learning_seconds = learning_seconds
        #: where each type's mode is read (asked for every event, never copied)
        self.modes: ModeSource = ModeTable() if modes is None else modes
        self._mode_of = self.modes.mode_of
        self.detectors: list[Detector] = list(
            default_detectors(learning_seconds) if detectors is None else detectors)
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise InvalidInput(f"detector names must be unique: {', '.join(names)}")
        self._by_name = {d.name: d for d in self.detectors}
        #: where each device's time zone is read (its site's; UTC without a source)
        self.zones: ZoneSource = ZoneTable({}) if zones is None else zones
        for detector in self.detectors:
            use_zones = getattr(detector, "use_zones", None)
            if use_zones is not None:
                use_zones(self.zones)
        # routing by kind: an event costs only the detectors that look at its kind
        self._routes: dict[EventKind, tuple[Detector, ...]] = {
            kind: tuple(d for d in self.detectors
                        if kind in getattr(d, "kinds", frozenset(EventKind)))
            for kind in EventKind}
        self._rhythm = DeviceRhythm()
        self._lock = threading.Lock()
        self._events = 0
        self._by_kind: Counter[EventKind] = Counter()
        self._by_type: Counter[str] = Counter()

    # -- the pipeline -------------------------------------------------------------------

    def process(self, event: Event) -> list[Finding]:
        """Learn from one event and return the findings it raises (none in learn mode)."""
        with self._lock:
            return self._process(event)

    def process_many(self, events: Iterable[Event]) -> list[Finding]:
        """``process`` for a batch in time order, under one lock acquisition."""
        findings: list[Finding] = []
        with self._lock:
            process = self._process
            for event in events:
                found = process(event)
                if found:
                    findings.extend(found)
        return findings

    def _process(self, event: Event) -> list[Finding]:
        self._events += 1
        self._by_kind[event.kind] += 1
        detectors = self._routes[event.kind]
        if event.device_id is not None:
            self._rhythm.beat(event.device_id, event.at)
        if self._mode_of(event.device_type) is DetectionMode.LEARN:
            for detector in detectors:
                detector.learn(event)
            return []
        findings: list[Finding] = []
        for detector in detectors:
            found = detector(event)
            if found:
                findings.extend(found)
            detector.learn(event)
        if findings:
            gap = self._rhythm.episode_gap(event.device_id)
            for index, finding in enumerate(findings):
                self._by_type[finding.type.value] += 1
                # a device's finding ends its episode after the device's own calm; a
                # deviceless one (a source address, the fleet) after the default
                findings[index] = replace(
                    finding, batch=event.batch,
                    episode_gap=gap if finding.device_id == event.device_id else None)
        return findings

    def false_positive(self, finding: Finding) -> None:
        """An admin says ``finding`` was wrong: its detector widens its baseline."""
        with self._lock:
            detector = self._by_name.get(finding.detector)
            if detector is None:
                raise InvalidInput(f"no detector {finding.detector!r} in this engine")
            detector.forgive(finding)

    @property
    def stats(self) -> DetectionStats:
        """Events seen and findings raised, by type."""
        with self._lock:
            return DetectionStats(self._events, {k.value: n for k, n in self._by_kind.items()},
                                  dict(self._by_type))

    # -- persistence --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every detector's learned baselines, JSON-safe (the modes are not the engine's)."""
        with self._lock:
            states = {}
            for detector in self.detectors:
                save = getattr(detector, "snapshot", None)
                if save is not None:
                    states[detector.name] = save()
            return {
                "version": SNAPSHOT_VERSION,
                "learning_seconds": self.learning_seconds,
                "stats": {"events": self._events, "findings_by_type": dict(self._by_type)},
                "detectors": states,
                "rhythm": self._rhythm.snapshot(),
            }

    @classmethod
    def restore(cls, state: Mapping[str, Any], detectors: Sequence[Detector] | None = None,
                *, modes: ModeSource | None = None,
                zones: ZoneSource | None = None) -> DetectionEngine:
        """An engine that carries on from ``snapshot``'s state (default detectors unless
        given; a detector missing from the state starts from scratch), reading ``modes``
        and ``zones``.

        A version 1 state (saved when the engine kept modes too) is read as well: its
        ``default_mode`` must be a mode, as that engine wrote it, and is then read past,
        like its ``modes``: the modes in force are the source's.
        """
        if not isinstance(state, Mapping) or state.get("version") not in READABLE_VERSIONS:
            raise InvalidInput(f"not a detection snapshot of version {SNAPSHOT_VERSION}")
        try:
            if state["version"] == 1:
                DetectionMode(state["default_mode"])
            engine = cls(detectors, learning_seconds=float(state["learning_seconds"]),
                         modes=modes, zones=zones)
            stats = state.get("stats", {})
            engine._events = int(stats.get("events", 0))
            engine._by_type.update({str(k): int(v)
                                    for k, v in stats.get("findings_by_type", {}).items()})
            for detector in engine.detectors:
                saved = state.get("detectors", {}).get(detector.name)
                load = getattr(detector, "restore", None)
                if saved is not None and load is not None:
                    load(saved)
            engine._rhythm.restore(state.get("rhythm", {}))
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise InvalidInput(f"detection snapshot is damaged: {error!r}") from error
        return engine
