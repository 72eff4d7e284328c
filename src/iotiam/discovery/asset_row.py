"""A discovered asset as an import changes it (``models.DiscoveredAsset``)."""

from __future__ import annotations

from iotiam.discovery.models import AssetStatus, DiscoveredAsset


class AssetRow:
    """An asset being changed by the batch (mutable: a batch touches it many times)."""

    __slots__ = ("device_id", "first_seen", "hostname", "id", "ip", "last_seen", "mac",
                 "model", "network", "open_ports", "org_path", "sightings", "site", "sources",
                 "status", "vendor")
    id: str
    org_path: str
    status: AssetStatus
    first_seen: float
    last_seen: float
    sources: set[str]
    sightings: int
    site: str | None
    network: str | None
    ip: str | None
    mac: str | None
    hostname: str | None
    vendor: str | None
    model: str | None
    open_ports: tuple[int, ...]
    device_id: str | None

    def __init__(self, a: DiscoveredAsset) -> None:
        self.id, self.org_path, self.status, self.device_id = (a.id, a.org_path, a.status,
                                                                a.device_id)
        self.first_seen, self.last_seen, self.sightings = a.first_seen, a.last_seen, a.sightings
        self.sources = set(a.sources)
        self.site, self.network, self.ip, self.mac = a.site, a.network, a.ip, a.mac
        self.hostname, self.vendor, self.model = a.hostname, a.vendor, a.model
        self.open_ports = a.open_ports

    def value(self) -> DiscoveredAsset:
        """As stored."""
        return DiscoveredAsset(
            id=self.id, org_path=self.org_path, status=self.status,
            first_seen=self.first_seen, last_seen=self.last_seen,
            sources=tuple(sorted(self.sources)), identifiers=(), sightings=self.sightings,
            site=self.site, network=self.network, ip=self.ip, mac=self.mac,
            hostname=self.hostname, vendor=self.vendor, model=self.model,
            open_ports=self.open_ports, device_id=self.device_id)
