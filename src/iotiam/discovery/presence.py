"""A registered device's presence as an import changes it (``models.DevicePresence``)."""

from __future__ import annotations

from iotiam.discovery.models import IP_BINDING_SECONDS, DevicePresence

#: places kept per device (the most recent)
MAX_PLACES = 16


class PresenceRow:
    """A device's presence being changed by the batch (mutable: a batch touches it many
    times)."""

    __slots__ = ("device_id", "first_seen", "last_seen", "org_path", "places", "sightings",
                 "sources")

    def __init__(self, row: DevicePresence) -> None:
        self.device_id, self.org_path = row.device_id, row.org_path
        self.first_seen, self.last_seen = row.first_seen, row.last_seen
        self.sources = set(row.sources)
        self.sightings = row.sightings
        self.places = dict(row.places)

    def value(self) -> DevicePresence:
        """As stored (the places pruned to the binding window, at most ``MAX_PLACES``)."""
        recent = sorted(self.places.items(), key=lambda item: -item[1])[:MAX_PLACES]
        return DevicePresence(self.device_id, self.org_path, self.first_seen, self.last_seen,
                              frozenset(self.sources), self.sightings,
                              {p: t for p, t in recent
                               if t >= self.last_seen - IP_BINDING_SECONDS})
