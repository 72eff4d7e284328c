"""Each device's time zone, read from its site (``detection.ports.ZoneSource``).

The detection engine asks for the zone of every timed event, so the answer is a dict
lookup: device -> site is cached for every device with a site, site -> zone for every
site (the ``sites`` table that policy conditions read too; ``iotiam site set NAME
--timezone ZONE``, ``PUT /v1/sites/{name}``). The change feed keeps both current: a
``DeviceChanged`` re-reads those devices' sites, a ``PolicyChanged`` (a site was saved)
the sites. A device without a site, or at a site not known, is in the default zone.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from iotiam.changes import DeviceChanged, PolicyChanged, Published
from iotiam.detection.zones import zone_named
from iotiam.errors import InvalidInput
from iotiam.storage.rows import one_of
from iotiam.storage.tables import inventory
from iotiam.storage.tables.policy import sites

log = logging.getLogger(__name__)


class SqlSiteZones:
    """A ``ZoneSource`` over the inventory's device sites and the sites' time zones."""

    def __init__(self, engine: Engine, default: str = "UTC") -> None:
        self._engine = engine
        self.default = zone_named(default)
        self._site_of: dict[str, str] = {}
        self._zones: dict[str, ZoneInfo] = {}

    def load(self) -> SqlSiteZones:
        """Read every device's site and every site's zone."""
        site_of: dict[str, str] = {}
        with self._engine.connect() as conn:
            rows = conn.execute(select(inventory.devices.c.id, inventory.devices.c.site)
                                .where(inventory.devices.c.site.is_not(None)))
            for row in rows:
                site_of[row.id] = row.site
        self._site_of = site_of
        self._read_sites()
        return self

    def zone_of(self, device_id: str | None) -> ZoneInfo:
        """The zone of the device's site, or the default one."""
        site = self._site_of.get(device_id or "")
        return self.default if site is None else self._zones.get(site, self.default)

    def devices_changed(self, published: Published) -> None:
        """Registered or moved devices: read their sites again."""
        change = published.change
        if isinstance(change, DeviceChanged):
            self._read_devices(change.device_ids)

    def sites_changed(self, published: Published) -> None:
        """A site was saved (its zone may have changed): read the sites again."""
        if isinstance(published.change, PolicyChanged):
            self._read_sites()

    def _read_devices(self, device_ids: Sequence[str]) -> None:
        found: dict[str, str | None] = dict.fromkeys(device_ids)
        devices = inventory.devices.c
        with self._engine.connect() as conn:
            # the ids as one parameter: an expanded ``IN`` bound one per id, and an
            # import's change names 5,000 (as the other batch reads, ``rows.one_of``)
            rows = conn.execute(select(devices.id, devices.site)
                                .where(one_of(conn, devices.id, device_ids)))
            for device_id, site in rows:
                found[device_id] = site
        site_of = self._site_of  # one item at a time: a reader sees the old or the new
        for device_id, site in found.items():
            if site is None:
                site_of.pop(device_id, None)
            else:
                site_of[device_id] = site

    def _read_sites(self) -> None:
        zones: dict[str, ZoneInfo] = {}
        with self._engine.connect() as conn:
            for row in conn.execute(select(sites.c.name, sites.c.timezone)):
                try:
                    zones[row.name] = zone_named(row.timezone)
                except InvalidInput:  # saved by a host whose zone database knew it
                    log.warning("site %s: time zone %r unknown here; its devices are "
                                "judged in %s", row.name, row.timezone, self.default.key)
        self._zones = zones
