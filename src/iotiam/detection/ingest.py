"""Event ingestion: parse, attribute, score, and hand what is found to the response layer.

Every source ends here: the REST bulk endpoint, the managed broker's event source and
``iotiam detect replay``. The engine is single-threaded by design (its baselines are
plain dicts), so ingestion serialises on one lock; a batch is scored as a whole and its
findings are reported once, after the lock is released, so a slow database never stalls
the scoring of the next batch for longer than one write.

With an ``EventPublisher`` (an event stream is configured) ingestion still parses,
attributes and checks tenancy here, but scores nothing: the admitted events, their device
type filled in, are published, and the stream's detection workers score them and report
their findings (``detection/partitions.py``, ``docs/event-stream.md``). The report then
counts no findings: they are raised moments later, elsewhere.

What the events show of identities iotiam does not manage (refused connections, a
connection as an identity the inventory does not know, flows to peers on the site's
network) goes on to discovery as sightings (``discovery.sources.own_traffic``), for
root-scoped input only: a tenant's upload must not add to the root's discovered assets
(G9).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from iotiam.changes import DeviceChanged, Published
from iotiam.detection.models import Event, Finding
from iotiam.detection.ports import EventPublisher, FindingSink
from iotiam.discovery.ports import SightingSink
from iotiam.discovery.sources.own_traffic import (
    BROKER,
    EVENTS,
    NO_SIGHTINGS,
    RecentSightings,
    sightings_of_events,
)
from iotiam.errors import InvalidInput, StreamUnavailable, contained
from iotiam.kernel import ROOT_PATH
from iotiam.untrusted import load_json

log = logging.getLogger("iotiam.detection")

#: a bulk upload reports at most this many bad rows in detail (all are counted)
MAX_REPORTED_ERRORS = 100
#: device -> type answers are kept this long (a device rarely changes type)
TYPE_CACHE_SECONDS = 60.0


class ScoringEngine(Protocol):
    """What ingestion needs of the detection engine."""

    def process(self, event: Event) -> list[Finding]:
        """Findings this event raises."""
        ...

    def false_positive(self, finding: Finding) -> None:
        """Learn that ``finding`` was normal behaviour."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The learned state, JSON-safe (saved between runs)."""
        ...


class DeviceLookup(Protocol):
    """Inventory facts ingestion needs: each device's type and org path."""

    def types_and_paths(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(type name, org path) of each known device."""
        ...


@dataclass
class IngestReport:
    """What became of an upload."""

    accepted: int = 0
    rejected: int = 0
    findings: int = 0
    #: (1-based line or item number, message), at most ``MAX_REPORTED_ERRORS``
    errors: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, number: int, message: str) -> None:
        """Count a bad row and keep its message if there is room."""
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append((number, message))

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {"accepted": self.accepted, "rejected": self.rejected,
                "findings": self.findings,
                "errors": [{"item": n, "error": m} for n, m in self.errors]}


class EventIngest:
    """The ingestion pipeline: thread-safe, one engine, one finding sink."""

    def __init__(self, engine: ScoringEngine, sink: FindingSink, devices: DeviceLookup,
                 *, clock: Callable[[], float] = time.time,
                 sightings: SightingSink = NO_SIGHTINGS,
                 publisher: EventPublisher | None = None) -> None:
        self._engine = engine
        self._publisher = publisher
        self._sink = sink
        self._devices = devices
        self._clock = clock
        self._sightings = sightings
        self._recent = RecentSightings()
        self._lock = threading.Lock()
        self._types: dict[str, tuple[str | None, str | None, float]] = {}
        self.events_seen = 0
        self.events_rejected = 0

    @property
    def engine(self) -> ScoringEngine:
        """The engine (for snapshots and stats)."""
        return self._engine

    def close(self) -> None:
        """Let go of the event stream, if events are published to one."""
        if self._publisher is not None:
            self._publisher.close()

    def devices_changed(self, published: Published) -> None:
        """Registered, moved or re-typed devices: look their type and org path up again."""
        change = published.change
        if isinstance(change, DeviceChanged):
            for device_id in change.device_ids:
                self._types.pop(device_id, None)

    def false_positive(self, finding: Finding) -> None:
        """Tell the engine an admin marked a finding a false positive (with a stream: the
        partition's owner, through the stream)."""
        if self._publisher is not None:
            try:
                self._publisher.forgive(finding)
            except StreamUnavailable as e:  # the finding is marked; only the lesson is lost
                log.warning("the false positive %s of %s could not reach its detector: %s",
                            finding.type, finding.device_id, e.detail)
            return
        # a finding no detector of the engine raised (attestation, say) has no baseline
        # to widen
        with self._lock, contextlib.suppress(InvalidInput):
            self._engine.false_positive(finding)

    def _attribute(self, events: Sequence[Event]) -> dict[str, tuple[str | None, str | None]]:
        now = self._clock()
        wanted = {e.device_id for e in events if e.device_id is not None}
        # ``devices_changed`` may drop entries meanwhile (the change feed's thread)
        stale = [d for d in wanted
                 if (known := self._types.get(d)) is None or now - known[2] > TYPE_CACHE_SECONDS]
        if stale:
            found = self._devices.types_and_paths(stale)
            for device_id in stale:
                type_name, path = found.get(device_id, (None, None))
                self._types[device_id] = (type_name, path, now)
            if len(self._types) > 1_000_000:  # a flood of made-up ids must not grow forever
                self._types.clear()
        attributed: dict[str, tuple[str | None, str | None]] = {}
        for device_id in wanted:
            entry = self._types.get(device_id)
            if entry is not None:
                attributed[device_id] = (entry[0], entry[1])
        return attributed

    def ingest(self, events: Sequence[Event], *, org_path: str | None = None,
               report: IngestReport | None = None,
               numbers: Sequence[int] | None = None,
               via: str = EVENTS, batch: str | None = None) -> IngestReport:
        """Score events (time order within the batch is the caller's) and report findings.

        With ``org_path`` (a tenant's upload) events about devices outside that subtree,
        or unknown to the inventory, are rejected, as if the device did not exist (G9).
        ``via`` names the source of the sightings they show (``broker``, ``events``);
        ``batch`` the upload they came in (the findings they raise are linked to it).
        """
        report = report or IngestReport()
        findings: list[Finding] = []
        admitted: list[Event] = []
        with self._lock:
            known = self._attribute(events)
            for index, event in enumerate(events):
                number = numbers[index] if numbers else index + 1
                type_name: str | None = None
                if event.device_id is not None:
                    type_name, path = known.get(event.device_id, (None, None))
                    if org_path is not None and (path is None or not path.startswith(org_path)):
                        report.reject(number, f"device {event.device_id!r} not found")
                        continue
                if type_name is not None and event.device_type != type_name:
                    event = replace(event, device_type=type_name, batch=batch)
                elif batch is not None:
                    event = replace(event, batch=batch)
                if self._publisher is not None:
                    admitted.append(event)
                    continue
                try:
                    findings.extend(self._engine.process(event))
                except Exception as e:  # a detector's bug on one event fails it alone (G12)
                    report.reject(number, contained(e, "an event").detail)
                    continue
                report.accepted += 1
            if not admitted:
                self.events_seen += report.accepted
            self.events_rejected += report.rejected
        if admitted and self._publisher is not None:
            # the stream's workers score them; their findings reach the sink from there
            self._publisher.publish(admitted)
            report.accepted += len(admitted)
            with self._lock:
                self.events_seen += len(admitted)
        if self._sightings is not NO_SIGHTINGS and (org_path is None or org_path == ROOT_PATH):
            self._sighted(events, known, via)
        if findings:
            self._sink.report(findings)
            report.findings += len(findings)
        return report

    def deliver(self, events: list[Event]) -> None:
        """``ingest`` for sources that only hand events over (the broker's log)."""
        self.ingest(events, via=BROKER)

    def _sighted(self, events: Sequence[Event],
                 known: Mapping[str, tuple[str | None, str | None]], via: str) -> None:
        """Hand discovery what the events show of unmanaged identities (it queues)."""
        unknown = frozenset(d for d, (_, path) in known.items() if path is None)
        try:
            seen = self._recent.fresh(sightings_of_events(
                events, source=via, unknown_devices=unknown))
            if seen:
                self._sightings.observe(seen)
        except Exception:  # discovery's trouble must not cost detection its findings
            log.exception("handing %d events' sightings to discovery failed", len(events))

    def ingest_records(self, records: Iterable[tuple[int, object]], *,
                       org_path: str | None = None, batch: str | None = None
                       ) -> IngestReport:
        """Parse numbered JSON values into events (bad ones reported), then ingest
        (``batch``: the upload they came in)."""
        report = IngestReport()
        events: list[Event] = []
        numbers: list[int] = []
        for number, record in records:
            try:
                if isinstance(record, InvalidInput):
                    raise record
                if not isinstance(record, Mapping):
                    raise InvalidInput("an event must be a JSON object")
                events.append(Event.from_json(record))
                numbers.append(number)
            except Exception as e:  # a bad event is reported alone, even on a bug (G12)
                report.reject(number, contained(e, "an event").detail)
        events_sorted = sorted(zip(events, numbers, strict=True), key=lambda p: p[0].at)
        return self.ingest([e for e, _ in events_sorted], org_path=org_path, report=report,
                           numbers=[n for _, n in events_sorted], batch=batch)


def json_lines(data: bytes) -> Iterable[tuple[int, object]]:
    """Numbered values of a JSON-lines body; an unparsable line yields an ``InvalidInput``."""
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, load_json(line, what="the line")
        except InvalidInput as e:  # a bad line is reported as that line (G12)
            yield number, e
