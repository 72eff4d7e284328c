"""Device time zones: which zone a device lives in, and local hours of the week.

A site's devices keep its hours: a shift that starts at 06:00 starts at 05:00 UTC in
Berlin in winter, 04:00 in summer and 11:00 in Chicago. Detectors that judge time of
day ask a ``ZoneSource`` (``detection/ports.py``) for the device's zone and
``LocalHours`` for the local hour of the week, cached per zone and UTC hour so an event
costs two dict lookups.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from iotiam.errors import InvalidInput

HOUR = 3600.0
HOURS_OF_WEEK = 168
#: 1970-01-01 was a Thursday: hours to add to epoch hours for Monday-based weeks
_EPOCH_WEEKDAY_HOURS = 3 * 24


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name`` (``InvalidInput`` naming it if there is none)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r} (an IANA name such as "
                           f"'Europe/Berlin')") from None


def zone_name(zone: ZoneInfo | str) -> str:
    """The IANA name of ``zone``."""
    return zone if isinstance(zone, str) else zone.key


class ZoneTable:
    """A ``ZoneSource`` given in code: a zone per device, ``default`` for the others.

    An engine built without a source reads ``ZoneTable({})``: every device in UTC.
    ``iotiam serve`` reads the sites' zones instead (``inventory``, through the
    bootstrap), refreshed when the change feed says a site's zone changed.
    """

    def __init__(self, by_device: Mapping[str, str] | None = None,
                 default: str = "UTC") -> None:
        self.default = zone_named(default)
        self._by_device = {d: zone_named(z) for d, z in (by_device or {}).items()}

    def set(self, device_id: str, zone: str) -> None:
        """Put a device in ``zone`` (the engine follows from its next event)."""
        self._by_device[device_id] = zone_named(zone)

    def replace(self, by_device: Mapping[str, str]) -> None:
        """Every device's zone at once (a refresh from the inventory)."""
        zones = {d: zone_named(z) for d, z in by_device.items()}
        self._by_device = zones  # one assignment: readers see the old or the new table

    def zone_of(self, device_id: str | None) -> ZoneInfo:
        """The device's zone, or the default one."""
        return self._by_device.get(device_id or "", self.default)


class LocalHours:
    """Local hour of the week (0 = Monday 00:00-00:59) of epoch times in a zone.

    A zone's UTC offset changes only at its transitions, which fall on quarter hours;
    it is looked up once per zone and UTC hour and applied to the time itself, so a
    zone 5:30 ahead of UTC has its local hour change at :30 UTC.
    """

    __slots__ = ("_offsets",)

    def __init__(self) -> None:
        self._offsets: dict[ZoneInfo | str, tuple[int, float]] = {}

    def offset(self, zone: ZoneInfo | str, at: float) -> float:
        """The zone's UTC offset in seconds at ``at``."""
        hour = int(at // HOUR)
        cached = self._offsets.get(zone)
        if cached is not None and cached[0] == hour:
            return cached[1]
        tz = zone_named(zone) if isinstance(zone, str) else zone
        delta = datetime.fromtimestamp(hour * HOUR, UTC).astimezone(tz).utcoffset()
        seconds = delta.total_seconds() if delta is not None else 0.0
        if len(self._offsets) > 1024:  # zones come from a short list; never grow unbounded
            self._offsets.clear()
        self._offsets[zone] = (hour, seconds)
        return seconds

    def hour_of_week(self, zone: ZoneInfo | str, at: float) -> int:
        """The local hour of the week of ``at`` in ``zone``."""
        cached = self._offsets.get(zone)  # inlined ``offset``: once per timed event
        if cached is not None and cached[0] == int(at // HOUR):
            local = at + cached[1]
        else:
            local = at + self.offset(zone, at)
        return (int(local // HOUR) + _EPOCH_WEEKDAY_HOURS) % HOURS_OF_WEEK


def utc_hour_of_week(at: float) -> int:
    """The UTC hour of the week (0 = Monday 00:00 UTC) of an epoch time."""
    return (int(at // HOUR) + _EPOCH_WEEKDAY_HOURS) % HOURS_OF_WEEK
