"""Impossible time: a device active in an hour of the day its type is quiet in.

Per type, events per second of each UTC hour of the day; the seconds ("exposure") are
counted on the fleet's clock, so an hour in which the type sent nothing is known to
be quiet rather than unseen. An hour is abnormal for a type when its rate is under
5% of the type's busiest hour (early in an hour, this hour and the one before are
taken together, so the first minutes of a quiet hour are judged too). A device is
judged only in hours it was never active in itself, so a type that works around the
clock never raises this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, hour_of_day
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

QUIET_SHARE = 0.05
#: seconds of an hour the type must have been watched in before it can be called quiet
MIN_EXPOSURE = 900.0
MIN_EVENTS = 30
HOUR = 3600.0
MAX_GAP = 900.0


class _Activity:
    __slots__ = ("counts", "first_at", "total")

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.counts = [0] * 24
        self.total = 0


class UnusualTime:
    """Activity (connects, messages) in an hour outside the device's and its type's pattern."""

    name = "unusual_time"
    kinds = frozenset({EventKind.CONNECT, EventKind.PUBLISH, EventKind.SUBSCRIBE})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 3600.0) -> None:
        self.learning_seconds = learning_seconds
        self._clock: float | None = None
        self._exposure = [0.0] * 24
        self._devices: dict[str, _Activity] = {}
        self._types: dict[str, _Activity] = {}
        #: the fleet exposure when the type appeared, subtracted from the fleet's
        self._type_offset: dict[str, list[float]] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None

    def _advance(self, at: float) -> None:
        clock = self._clock
        if clock is None:
            self._clock = at
            return
        if at <= clock:
            return
        if at - clock > MAX_GAP:
            # nothing from the whole fleet for this long is an ingestion outage (or a
            # replay with holes), not a quiet hour: it counts as unwatched
            self._clock = at
            return
        exposure = self._exposure
        while True:
            hour_end = (clock // HOUR + 1.0) * HOUR
            if at <= hour_end:
                exposure[hour_of_day(clock)] += at - clock
                break
            exposure[hour_of_day(clock)] += hour_end - clock
            clock = hour_end
        self._clock = at

    def learn(self, event: Event) -> None:
        """Count the event in its hour for the device and its type; advance the clock."""
        at = event.at
        self._advance(at)
        device_id = event.device_id
        if device_id is None or event is self._outlier:
            return
        hour = hour_of_day(at)
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Activity(at)
        device.counts[hour] += 1
        device.total += 1
        type_name = event.device_type or ""
        kind = self._types.get(type_name)
        if kind is None:
            kind = self._types[type_name] = _Activity(at)
            self._type_offset[type_name] = list(self._exposure)
        kind.counts[hour] += 1
        kind.total += 1

    def __call__(self, event: Event) -> list[Finding]:
        """A finding for activity in an hour the device never used and its type is quiet in."""
        device_id = event.device_id
        if device_id is None:
            return []
        at = event.at
        hour = hour_of_day(at)
        device = self._devices.get(device_id)
        if device is not None and device.counts[hour]:
            return []  # the common case: an hour the device is active in
        type_name = event.device_type or ""
        kind = self._types.get(type_name)
        if kind is None or at - kind.first_at < self.learning_seconds:
            return []
        self._advance(at)
        offset = self._type_offset[type_name]
        seen = [self._exposure[h] - offset[h] for h in range(24)]
        rates = [kind.counts[h] / seen[h] if seen[h] >= MIN_EXPOSURE else 0.0
                 for h in range(24)]
        peak = max(rates)
        if seen[hour] >= MIN_EXPOSURE:
            rate = rates[hour]
        else:
            # early in the hour: the hour before, if that was watched, and this one
            before = (hour - 1) % 24
            watched = seen[hour] + seen[before]
            if seen[before] < MIN_EXPOSURE:
                return []
            rate = (kind.counts[hour] + kind.counts[before]) / watched
        if peak <= 0 or rate >= QUIET_SHARE * peak:
            return []
        own_pattern = device is not None and device.total >= MIN_EVENTS
        if not own_pattern and device is not None \
                and at - device.first_at >= self.learning_seconds:
            return []  # an old but rarely active device: too little to call any hour odd
        self._outlier = event
        if not self._cooldown.ready(device_id, at):
            return []
        busy = [h for h in range(24) if rates[h] >= QUIET_SHARE * peak]
        return [Finding(
            FindingType.UNUSUAL_TIME, Severity.MEDIUM, at, device_id,
            f"{device_id} is active at {hour:02d}:00-{hour:02d}:59 UTC, an hour it never was "
            f"active in and its type is quiet in",
            self.name,
            {"hour_utc": hour, "type_rate_per_hour": round(rate * HOUR, 2),
             "type_peak_rate_per_hour": round(peak * HOUR, 2), "type_active_hours": busy,
             "device_events_this_hour": device.counts[hour] if device else 0},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """The hour is one of the device's from now on."""
        hour = finding.evidence.get("hour_utc")
        if finding.device_id is None or not isinstance(hour, int):
            return
        device = self._devices.get(finding.device_id)
        if device is None:
            device = self._devices[finding.device_id] = _Activity(finding.at)
        device.counts[hour] += 1

    def snapshot(self) -> dict[str, Any]:
        """Hourly activity per device and type, and the fleet clock's exposure."""
        def pack(items: dict[str, _Activity]) -> dict[str, Any]:
            return {k: [a.first_at, a.total, a.counts] for k, a in items.items()}
        return {"clock": self._clock, "exposure": list(self._exposure),
                "devices": pack(self._devices), "types": pack(self._types),
                "type_offset": {k: list(v) for k, v in self._type_offset.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        def unpack(items: Mapping[str, Any]) -> dict[str, _Activity]:
            out = {}
            for key, (first_at, total, counts) in items.items():
                activity = _Activity(float(first_at))
                activity.total, activity.counts = int(total), [int(c) for c in counts]
                out[key] = activity
            return out
        clock = state.get("clock")
        self._clock = float(clock) if clock is not None else None
        self._exposure = [float(x) for x in state.get("exposure", [0.0] * 24)]
        self._devices = unpack(state.get("devices", {}))
        self._types = unpack(state.get("types", {}))
        self._type_offset = {k: [float(x) for x in v]
                             for k, v in state.get("type_offset", {}).items()}
