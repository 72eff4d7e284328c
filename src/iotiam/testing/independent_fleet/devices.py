"""One planned device: who it is, where, and what changes about it over time.

A device's plan is made before any event is written: its addresses (DHCP leases), its
firmware images (rollouts), its reboots and the times it is offline. The archetype then
turns the plan into traffic; the record builders here write the JSON objects exactly
as ``docs/events.md`` lays them out, with the device type filled in as ingestion does.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iotiam.testing.independent_fleet.sites import Site

if TYPE_CHECKING:
    from iotiam.testing.independent_fleet.archetypes import Archetype

Record = dict[str, Any]


def image_hash(device_type: str, version: str) -> str:
    """The genuine hash of a type's firmware image."""
    return hashlib.sha256(f"{device_type}/{version}".encode()).hexdigest()


@dataclass
class Device:
    """A device's plan over the fleet's time span."""

    device_id: str
    archetype: Archetype
    site: Site
    #: when it first appears (enrolled before the span: the span's start)
    joined: float
    #: when it is taken out of service, if it is
    left: float | None = None
    #: (from, address), time-ordered
    leases: list[tuple[float, str]] = field(default_factory=list)
    #: (from, version, hash), time-ordered
    images: list[tuple[float, str, str]] = field(default_factory=list)
    #: spans it is down although it should run: (from, to, why) — an outage of its
    #: site, a reboot for an update, a keepalive timeout
    offline: list[tuple[float, float, str]] = field(default_factory=list)
    #: handhelds: 0 early shift, 1 late shift
    shift: int = 0
    #: gateways: the PLCs it polls, (address, port), and when each was commissioned
    peers: list[tuple[float, str, int]] = field(default_factory=list)
    #: when it is connected: (from, to), filled by the generator
    sessions: list[tuple[float, float]] = field(default_factory=list)
    #: a per-device size scale (fields configured on the device)
    scale: float = 1.0
    #: a per-device phase for its timers
    phase: float = 0.0

    @property
    def device_type(self) -> str:
        """The inventory's device type."""
        return self.archetype.name

    def address_at(self, at: float) -> str:
        """The address its lease gives it at ``at``."""
        index = bisect.bisect_right(self.leases, (at, "\uffff")) - 1
        return self.leases[max(index, 0)][1]

    def image_at(self, at: float) -> tuple[str, str]:
        """(version, hash) it runs at ``at``."""
        index = bisect.bisect_right([start for start, _, _ in self.images], at) - 1
        _, version, digest = self.images[max(index, 0)]
        return version, digest

    def generation_at(self, at: float) -> int:
        """How many firmware updates it has taken by ``at`` (sizes grow with them)."""
        return max(bisect.bisect_right([start for start, _, _ in self.images], at) - 1, 0)

    def is_offline(self, at: float) -> bool:
        """Whether a planned outage holds it down at ``at``."""
        return any(a <= at < b for a, b, _ in self.offline)

    # -- records, per docs/events.md ----------------------------------------------------

    def base(self, kind: str, at: float) -> Record:
        """The fields every record of this device carries."""
        return {"kind": kind, "ts": round(at, 3), "device_id": self.device_id,
                "device_type": self.device_type}

    def connect(self, at: float, *, source_ip: str | None = None,
                image: tuple[str, str] | None = None) -> Record:
        """A CONNECT the broker accepted."""
        version, digest = image or self.image_at(at)
        record = self.base("connect", at)
        record.update(source_ip=source_ip or self.address_at(at), client_id=self.device_id,
                      firmware_version=version, firmware_hash=digest)
        return record

    def disconnect(self, at: float, reason: str) -> Record:
        """The session ended."""
        record = self.base("disconnect", at)
        record["reason"] = reason
        return record

    def publish(self, at: float, topic: str, size: int, qos: int = 1) -> Record:
        """A message it sent (the payload's size, never the payload)."""
        record = self.base("publish", at)
        record.update(topic=f"devices/{self.device_id}/{topic}", size=max(int(size), 0),
                      qos=qos)
        return record

    def subscribe(self, at: float, topic: str, qos: int = 1) -> Record:
        """A subscription it made (the filter as given)."""
        record = self.base("subscribe", at)
        record.update(topic=topic, qos=qos)
        return record

    def refused(self, at: float, topic: str, action: str) -> Record:
        """A publish or subscribe the broker's ACL refused."""
        record = self.base("authz_failure", at)
        record.update(topic=topic, action=action, reason="not authorized")
        return record

    def flow(self, at: float, dst_ip: str, dst_port: int, *, protocol: str = "tcp",
             size: int = 600, packets: int = 6, src_port: int = 40000) -> Record:
        """A flow record; the exporter writes local time with the site's UTC offset."""
        record = self.base("flow", at)
        record["ts"] = self.site.local(round(at, 3)).isoformat(timespec="milliseconds")
        record.update(source_ip=self.address_at(at), src_port=src_port, dst_ip=dst_ip,
                      dst_port=dst_port, protocol=protocol, bytes=max(int(size), 0),
                      packets=max(packets, 1))
        return record

    def enroll(self, at: float, reason: str, source_ip: str | None = None) -> Record:
        """An enrollment (new, renewal or re-enrollment)."""
        record = self.base("enroll", at)
        record.update(source_ip=source_ip or self.address_at(at), reason=reason)
        return record

    def attestation(self, at: float, image: tuple[str, str] | None = None) -> Record:
        """Evidence the device sent about its firmware."""
        version, digest = image or self.image_at(at)
        record = self.base("attestation", at)
        record.update(firmware_version=version, firmware_hash=digest)
        return record


def auth_failure(at: float, client_id: str, source_ip: str, reason: str) -> Record:
    """A refused connection attempt: the broker knows a client id, not a device."""
    return {"kind": "auth_failure", "ts": round(at, 3), "client_id": client_id,
            "source_ip": source_ip, "reason": reason}
