"""Impossible time: a device active in an hour its type is quiet in, in its site's time.

Time is the device's local time (its site's zone, ``ZoneSource``), by hour of the
week: a shift worker's 06:00 is 06:00 wherever the site is, and Sunday's 10:00 is not
Monday's. Per type and zone, events per second of each local hour of the week; the
seconds ("exposure") are counted on the fleet's clock, so an hour in which the type
sent nothing is known to be quiet rather than unseen. An hour not watched yet (the
first week) is judged by the same hour of the other days, and one watched in one week
only is quiet only if those are quiet too (one day's sample of an hour is not a habit).

An hour is quiet for a type when its own history holds (almost) nothing: a rate under
1% of the type's busiest hour. A type that works a little around the clock (a few
percent of its peak at night) is not quiet at night. Early in an hour, this hour and
the one before are taken together, so the first minutes of a quiet hour are judged
too. A device is judged only in hours it was never active in itself, so a type that
works around the clock never raises this.

Shifts do not start on the hour: a worker at 05:52 for a 06:00 shift, or one who stays
till 22:05, is at the edge of the type's working hours, not in its night. So within
``EDGE_SECONDS`` of an hour's end (or start) an hour next to a busy one is not quiet.
And a type's quiet hours are known once it was watched for ``TYPE_KNOWN_SECONDS``,
however long the learning period: a type that works by day shows its first event hours
after the fleet's, and would stay young past the end of a learning period as long as
the fleet's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from iotiam.detection.baselines import Cooldown
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity
from iotiam.detection.ports import ZoneSource
from iotiam.detection.zones import (
    HOURS_OF_WEEK,
    LocalHours,
    ZoneTable,
    utc_hour_of_week,
    zone_name,
)

QUIET_SHARE = 0.01
#: seconds of an hour the type must have been watched in before it can be called quiet
MIN_EXPOSURE = 900.0
MIN_EVENTS = 30
HOUR = 3600.0
#: an hour of the week watched this long was watched in more than one week: its own
#: history alone can call it quiet. Before, one day's sample of it (a late-shift worker
#: away today) must agree with the same hour of the other days
WEEKS_EXPOSURE = HOUR + MIN_EXPOSURE
DAY_HOURS = 24
MAX_GAP = 900.0
#: the edge of an hour (seconds) in which its busy neighbour still counts
EDGE_SECONDS = 1200.0
#: a type's quiet hours are known after this long, whatever the learning period
TYPE_KNOWN_SECONDS = 3 * 86400.0
#: a device's own hours are its hours of the week once it has been seen this long
WEEK = 7 * 86400.0
#: a type's hours at one site zone are its habit there once this many devices (other
#: than the one judged) made them: a single late-shift worker's quiet mornings do not
#: make the next early-shift worker's first mornings unusual. With fewer, a device
#: known for less than the learning period is judged by its type's local hours in
#: every zone
MIN_DEVICES = 2
#: the zone part of a type's key that counts its devices in every zone, by local hour
EVERY_ZONE = "*"
_WEEKDAYS = range(0, HOURS_OF_WEEK, DAY_HOURS)
_DAYS = {"Mon": 0, "Tue": 1, "Wed": 2, "Thu": 3, "Fri": 4, "Sat": 5, "Sun": 6}
_DAY_NAMES = list(_DAYS)


class _Activity:
    __slots__ = ("counts", "devices", "first_at", "key", "offset", "total", "type_name",
                 "zone")

    def __init__(self, first_at: float, offset: list[float] | None = None) -> None:
        self.first_at = first_at
        #: events per local hour of the week
        self.counts = [0] * HOURS_OF_WEEK
        self.total = 0
        #: (types) the fleet exposure per UTC hour of the week when the type appeared
        self.offset = offset
        #: (devices) the zone last seen and the type|zone key it gives
        self.zone: ZoneInfo | str | None = None
        self.type_name: str | None = None
        self.key = ""
        #: (types) how many devices the counts are of
        self.devices = 0


def _pack(counts: list[int]) -> dict[str, int]:
    """The non-zero hours only: most devices use a few hours of the week."""
    return {str(h): c for h, c in enumerate(counts) if c}


def _unpack(data: Any) -> list[int]:
    counts = [0] * HOURS_OF_WEEK
    if isinstance(data, Mapping):
        for hour, count in data.items():
            counts[int(hour) % HOURS_OF_WEEK] = int(count)
    else:  # version 1: a list of 24 UTC hours of the day, every day alike
        for hour, count in enumerate(data):
            for day in _WEEKDAYS:
                counts[day + hour] = int(count)
    return counts


def _day_total(values: list[Any], hour: int) -> Any:
    """The sum of ``values`` at the same hour of every day of the week."""
    hour %= DAY_HOURS
    return sum(values[day + hour] for day in _WEEKDAYS)


class UnusualTime:
    """Activity (connects, messages) in a local hour outside the device's and its type's
    pattern."""

    name = "unusual_time"
    kinds = frozenset({EventKind.CONNECT, EventKind.PUBLISH, EventKind.SUBSCRIBE})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0,
                 zones: ZoneSource | None = None) -> None:
        self.learning_seconds = learning_seconds
        self._zones: ZoneSource = ZoneTable({}) if zones is None else zones
        self._hours = LocalHours()
        self._clock: float | None = None
        #: seconds watched per UTC hour of the week
        self._exposure = [0.0] * HOURS_OF_WEEK
        self._devices: dict[str, _Activity] = {}
        #: per "type|zone"
        self._types: dict[str, _Activity] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None
        #: the last event's (zone, local hour of the week): judged, then learned
        self._placed: tuple[Event | None, ZoneInfo | str, int] = (None, "UTC", 0)
        self._keys: dict[tuple[str | None, ZoneInfo | str], str] = {}

    def use_zones(self, zones: ZoneSource) -> None:
        """Read device zones from ``zones``."""
        self._zones = zones

    def _type_key(self, device_type: str | None, zone: ZoneInfo | str) -> str:
        """``type|zone``: a type's hours are counted per zone (its sites' local time)."""
        key = self._keys.get((device_type, zone))
        if key is None:
            key = self._keys[(device_type, zone)] = f"{device_type or ''}|{zone_name(zone)}"
        return key

    def _place(self, event: Event) -> tuple[ZoneInfo | str, int]:
        placed = self._placed
        if placed[0] is event:
            return placed[1], placed[2]
        zone = self._zones.zone_of(event.device_id)
        hour = self._hours.hour_of_week(zone, event.at)
        self._placed = (event, zone, hour)
        return zone, hour

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
                exposure[utc_hour_of_week(clock)] += at - clock
                break
            exposure[utc_hour_of_week(clock)] += hour_end - clock
            clock = hour_end
        self._clock = at

    def learn(self, event: Event) -> None:
        """Count the event in its local hour for the device and its type; advance the
        fleet clock."""
        at = event.at
        self._advance(at)
        device_id = event.device_id
        if device_id is None or event is self._outlier:
            return
        zone, hour = self._place(event)
        device = self._devices.get(device_id)
        if device is None:
            device = self._devices[device_id] = _Activity(at)
        device.counts[hour] += 1
        device.total += 1
        if device.zone is not zone or device.type_name != event.device_type:
            # the device's type|zone key, kept while its zone and type are
            device.zone, device.type_name = zone, event.device_type
            key = self._type_key(event.device_type, zone)
            if key != device.key:
                left = self._types.get(device.key)  # none on the device's first event
                if left is not None:
                    left.devices -= 1
                self._kind(key, at).devices += 1
                device.key = key
        for key in (device.key, self._type_key(event.device_type, EVERY_ZONE)):
            kind = self._kind(key, at)
            kind.counts[hour] += 1
            kind.total += 1

    def _kind(self, key: str, at: float) -> _Activity:
        kind = self._types.get(key)
        if kind is None:
            kind = self._types[key] = _Activity(at, list(self._exposure))
        return kind

    def _seen(self, kind: _Activity, zone: ZoneInfo | str, at: float) -> list[float]:
        """Seconds the type was watched in each local hour of the week."""
        shift = round(self._hours.offset(zone, at) / HOUR)
        exposure, offset = self._exposure, kind.offset or [0.0] * HOURS_OF_WEEK
        return [exposure[(h - shift) % HOURS_OF_WEEK] - offset[(h - shift) % HOURS_OF_WEEK]
                for h in range(HOURS_OF_WEEK)]

    def __call__(self, event: Event) -> list[Finding]:
        """A finding for activity in an hour the device never used and its type is quiet in."""
        device_id = event.device_id
        if device_id is None:
            return []
        at = event.at
        zone, hour = self._place(event)
        device = self._devices.get(device_id)
        if device is not None and device.counts[hour]:
            return []  # the common case: an hour the device is active in
        if device is not None and at - device.first_at < WEEK \
                and _day_total(device.counts, hour):
            return []  # less than a week known: the same hour of another day
        own_pattern = device is not None and device.total >= MIN_EVENTS
        key = self._type_key(event.device_type, zone)
        kind = self._types.get(key)
        if kind is not None and (device is None or at - device.first_at < self.learning_seconds) \
                and kind.devices - (device is not None and device.key == key) < MIN_DEVICES:
            kind = self._types.get(self._type_key(event.device_type, EVERY_ZONE))
        if kind is None or at - kind.first_at < min(self.learning_seconds, TYPE_KNOWN_SECONDS):
            return []
        self._advance(at)
        into = (at + self._hours.offset(zone, at)) % HOUR
        edge = 1 if into > HOUR - EDGE_SECONDS else -1 if into < EDGE_SECONDS else 0
        quiet = self._quiet(kind, self._seen(kind, zone, at), hour, edge)
        if quiet is None:
            return []
        rate, peak, busy = quiet
        if not own_pattern and device is not None \
                and at - device.first_at >= self.learning_seconds:
            return []  # an old but rarely active device: too little to call any hour odd
        self._outlier = event
        if not self._cooldown.ready(device_id, at):
            return []
        day, clock = _DAY_NAMES[hour // DAY_HOURS], hour % DAY_HOURS
        name = zone_name(zone)
        return [Finding(
            FindingType.UNUSUAL_TIME, Severity.MEDIUM, at, device_id,
            f"{device_id} is active on {day} {clock:02d}:00-{clock:02d}:59 {name}, an hour "
            f"it never was active in and its type is quiet in",
            self.name,
            {"hour_of_week": hour, "hour_local": clock, "zone": name,
             "type_rate_per_hour": round(rate * HOUR, 2),
             "type_peak_rate_per_hour": round(peak * HOUR, 2), "type_active_hours": busy,
             "device_events_this_hour": device.counts[hour] if device else 0},
            event.device_type)]

    def _quiet(self, kind: _Activity, seen: list[float], hour: int,
               edge: int = 0) -> tuple[float, float, list[int]] | None:
        """(rate, peak rate, busy hours) when ``hour`` is quiet for the type, else None.

        By hour of the week where that hour was watched in more than one week; by hour
        of the day (the same hour of every day watched) where it was not watched yet;
        in between by both (one day's sample of an hour of the week is not its habit).
        ``edge`` (+1 near the hour's end, -1 near its start) names the neighbour that,
        busy, makes the hour not quiet."""
        if seen[hour] >= WEEKS_EXPOSURE:
            return self._quiet_in(kind.counts, seen, hour, edge)
        by_day = self._quiet_in([_day_total(kind.counts, h) for h in range(DAY_HOURS)],
                                [_day_total(seen, h) for h in range(DAY_HOURS)],
                                hour % DAY_HOURS, edge)
        if by_day is None or seen[hour] < MIN_EXPOSURE:
            return by_day
        return self._quiet_in(kind.counts, seen, hour, edge)

    def _quiet_in(self, counts: list[int], seen: list[float], hour: int,
                  edge: int) -> tuple[float, float, list[int]] | None:
        """``_quiet`` over one history: by hour of the week or of the day."""
        hours = len(counts)
        rates = [counts[h] / seen[h] if seen[h] >= MIN_EXPOSURE else 0.0
                 for h in range(hours)]
        peak = max(rates)
        if seen[hour] >= MIN_EXPOSURE:
            rate = rates[hour]
        else:
            # early in the hour: the hour before, if that was watched, and this one
            before = (hour - 1) % hours
            if seen[before] < MIN_EXPOSURE:
                return None
            rate = (counts[hour] + counts[before]) / (seen[hour] + seen[before])
        if peak <= 0 or rate >= QUIET_SHARE * peak:
            return None
        if edge and self._neighbour_rate(counts, seen, (hour + edge) % hours) \
                >= QUIET_SHARE * peak:
            return None  # the edge of a shift, not the middle of the night
        busy = [h for h in range(hours) if rates[h] >= QUIET_SHARE * peak]
        return rate, peak, busy

    @staticmethod
    def _neighbour_rate(counts: list[int], seen: list[float], hour: int) -> float:
        """The type's rate in ``hour``; an hour of the week not watched yet (later today)
        by the same hour of the other days."""
        if seen[hour] < MIN_EXPOSURE and len(counts) == HOURS_OF_WEEK:
            counts, seen = [_day_total(counts, hour)], [_day_total(seen, hour)]
            hour = 0
        return counts[hour] / seen[hour] if seen[hour] >= MIN_EXPOSURE else 0.0

    def forgive(self, finding: Finding) -> None:
        """The hour is one of the device's from now on."""
        hour = finding.evidence.get("hour_of_week")
        if finding.device_id is None or not isinstance(hour, int):
            return
        device = self._devices.get(finding.device_id)
        if device is None:
            device = self._devices[finding.device_id] = _Activity(finding.at)
        device.counts[hour % HOURS_OF_WEEK] += 1

    def snapshot(self) -> dict[str, Any]:
        """Activity per local hour of the week (non-zero hours only) per device and
        type, and the fleet clock's exposure."""
        return {"version": 2, "clock": self._clock, "exposure": list(self._exposure),
                "devices": {k: [a.first_at, a.total, _pack(a.counts), a.key]
                            for k, a in self._devices.items()},
                "types": {k: [a.first_at, a.total, _pack(a.counts), a.offset, a.devices]
                          for k, a in self._types.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``; a version 1 one (UTC hours of the day) is read as
        every day alike, in UTC."""
        old = state.get("version") != 2
        clock = state.get("clock")
        self._clock = float(clock) if clock is not None else None
        exposure = [float(x) for x in state.get("exposure", [])]
        if old:
            exposure = [_spread_day(exposure, h) for h in range(HOURS_OF_WEEK)]
        self._exposure = exposure if len(exposure) == HOURS_OF_WEEK \
            else [0.0] * HOURS_OF_WEEK
        self._devices = {}
        for key, (first_at, total, counts, *rest) in state.get("devices", {}).items():
            device = self._devices[key] = _Activity(float(first_at))
            device.total, device.counts = int(total), _unpack(counts)
            device.key = str(rest[0]) if rest and not old else ""
        self._types = {}
        offsets = state.get("type_offset", {})
        for key, (first_at, total, counts, *rest) in state.get("types", {}).items():
            offset = rest[0] if rest else offsets.get(key)
            if old:
                key = f"{key}|UTC"
                offset = None if offset is None else [_spread_day(offset, h)
                                                      for h in range(HOURS_OF_WEEK)]
            kind = self._types[key] = _Activity(
                float(first_at), None if offset is None else [float(x) for x in offset])
            kind.total, kind.counts = int(total), _unpack(counts)
            # an older snapshot did not count devices: its type's hours stay the habit
            kind.devices = int(rest[1]) if len(rest) > 1 else MIN_DEVICES + 1


def _spread_day(day: list[float], hour: int) -> float:
    """A version 1 UTC hour-of-day value shared out over the days of the week."""
    return float(day[hour % DAY_HOURS]) / 7.0 if len(day) == DAY_HOURS else 0.0
