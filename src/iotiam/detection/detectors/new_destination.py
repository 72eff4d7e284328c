"""New destination: a device opening flows to a public address nobody in its type uses.

Internal (private) peers are the lateral-movement detector's business; this one
watches the way out (command and control, exfiltration). A destination its type
already knows is not new for a device: cloud endpoints answer from pools of
addresses and a device meets another member of the pool now and then. Nor is one that
``FLEET_DEVICES`` devices of the fleet, of any type, talk to: a public NTP or DNS
server, a shared cloud. A device at a site whose NTP server is public while its
type's other devices sit at sites with their own is meeting the fleet's server, not a
command-and-control one.

A new destination is one finding per device, not one per flow: a device that keeps
talking to it (an hourly sync, or a beacon) was reported at its first flow, and the
admin decides (``forgive`` makes it the device's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, PeerMemory, json_sets, sets_from_json
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

MIN_FLOWS = 3
#: a public address this many devices of the fleet talk to is the fleet's
FLEET_DEVICES = 3
_PRIVATE_CACHE_LIMIT = 100_000
_private: dict[str, bool] = {}
_NONE: frozenset[str] = frozenset()


def is_internal(address: str) -> bool:
    """Private, loopback or link-local (cached: flows repeat the same few addresses)."""
    known = _private.get(address)
    if known is None:
        ip = ipaddress.ip_address(address)
        known = ip.is_private or ip.is_loopback or ip.is_link_local
        if len(_private) > _PRIVATE_CACHE_LIMIT:
            _private.clear()
        _private[address] = known
    return known


class NewDestination:
    """Destination IPs (Device Defender ``aws:destination-ip-addresses``) never seen."""

    name = "new_destination"
    kinds = frozenset({EventKind.FLOW})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._peers = PeerMemory()
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None
        #: device -> destinations already reported: one finding per destination
        self._reported: dict[str, set[str]] = {}

    def learn(self, event: Event) -> None:
        """Remember the destination for the device and its type."""
        device_id, dst = event.device_id, event.dst_ip
        if device_id is None or dst is None or event is self._outlier:
            return
        self._peers.learn(device_id, event.device_type, event.at,
                          None if is_internal(dst) else dst)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding for a public destination neither the device nor its type knows."""
        device_id, dst = event.device_id, event.dst_ip
        if device_id is None or dst is None:
            return []
        peers = self._peers
        known = peers.devices.get(device_id)
        if known is not None and dst in known:
            return []
        type_known = peers.types.get(event.device_type or "", _NONE)
        if dst in type_known or is_internal(dst) or peers.spread.get(dst, 0) >= FLEET_DEVICES:
            return []
        mature = (known is not None and peers.flows[device_id] >= MIN_FLOWS
                  and event.at - peers.first[device_id] >= self.learning_seconds)
        if not mature and (event.at - peers.type_first.get(event.device_type or "", event.at)
                           < self.learning_seconds):
            return []  # a young device of a young type: nothing to judge it by yet
        self._outlier = event
        reported = self._reported.setdefault(device_id, set())
        if dst in reported or not self._cooldown.ready(device_id, event.at):
            return []
        reported.add(dst)
        return [Finding(
            FindingType.NEW_DESTINATION, Severity.MEDIUM, event.at, device_id,
            f"{device_id} opened a flow to {dst}:{event.dst_port}, a destination "
            f"no {event.device_type or 'device'} has used",
            self.name,
            {"metric": "aws:destination-ip-addresses", "destination": dst,
             "port": event.dst_port, "known_destinations": len(known or ()),
             "type_destinations": len(type_known)},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """The destination is normal for this device from now on."""
        dst = finding.evidence.get("destination")
        if finding.device_id is not None and isinstance(dst, str):
            self._peers.devices.setdefault(finding.device_id, set()).add(dst)

    def snapshot(self) -> dict[str, Any]:
        """Known destinations per device and type, and those already reported."""
        return {**self._peers.snapshot(), "reported": json_sets(self._reported)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._peers.restore(state)
        self._reported = sets_from_json(state.get("reported", {}))
