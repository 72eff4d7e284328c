"""Impossible location: a device connecting from a network it never connected from.

Networks, not addresses: DHCP hands a device a new address in the same /24 (IPv6:
/64) every so often, and that is not news. A network its type knows (another site of
the fleet) is suspicious but explainable (a device moved); one no device of the type
ever used is worse. A young device is at home at the sites (/16) of its own networks;
one with none yet is judged by the sites (/16) the fleet connects from, since it may
well sit in a subnet of a known site that no device of its type used before (the first
gateway at a plant).

A device's DHCP scope can be wider than a /24: a handheld roaming a Wi-Fi /22 takes a
lease anywhere in it. A new /24 at the device's own site (/16) is therefore not news
when its type already connects from it (the scope its type shares), or when it lies in
the /22 that the device's own /24s there already span (two or more of them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, json_sets, sets_from_json
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity


def network_of(address: str) -> str:
    """``10.1.2.3`` -> ``10.1.2.0/24``; IPv6 -> its /64."""
    if ":" not in address:
        return address.rsplit(".", 1)[0] + ".0/24"
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


#: the widest DHCP scope a device's own networks can span (third-octet bits: a /22)
SCOPE_BITS = 2


def roams_within(network: str, known: set[str], type_known: set[str]) -> bool:
    """Whether ``network`` (a /24) is in the scope a device at that site moves in: its
    type's networks at one of the device's own sites, or the /22 its own /24s span."""
    if ":" in network:
        return False
    site = ".".join(network.split(".", 2)[:2]) + "."
    own = [n for n in known if n.startswith(site)]
    if not own:
        return False
    if network in type_known:
        return True
    if len(own) < 2:
        return False
    scope = int(network.split(".")[2]) >> SCOPE_BITS
    return all(int(n.split(".")[2]) >> SCOPE_BITS == scope for n in own)


def site_of(address: str) -> str:
    """``10.1.2.3`` -> ``10.1.0.0/16``; IPv6 -> its /48: where a new device is judged."""
    if ":" not in address:
        return ".".join(address.split(".", 2)[:2]) + ".0.0/16"
    return str(ipaddress.ip_network(f"{address}/48", strict=False))


class UnusualSource:
    """Source IP (Device Defender ``aws:source-ip-address``) outside the device's networks."""

    name = "unusual_source"
    kinds = frozenset({EventKind.CONNECT})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, set[str]] = {}
        self._first: dict[str, float] = {}
        self._types: dict[str, set[str]] = {}
        self._type_first: dict[str, float] = {}
        self._sites: dict[str, set[str]] = {}
        #: the sites (/16) any device of the fleet connects from
        self._fleet_sites: set[str] = set()
        #: device -> networks already reported: one finding per network, not per connect
        self._reported: dict[str, set[str]] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None

    def learn(self, event: Event) -> None:
        """Remember the network for the device and its type."""
        device_id, source = event.device_id, event.source_ip
        if device_id is None or source is None or event is self._outlier:
            return
        network = network_of(source)
        known = self._devices.get(device_id)
        if known is None:
            known = self._devices[device_id] = set()
            self._first[device_id] = event.at
            self._type_first.setdefault(event.device_type or "", event.at)
        known.add(network)
        self._types.setdefault(event.device_type or "", set()).add(network)
        site = site_of(source)
        self._sites.setdefault(event.device_type or "", set()).add(site)
        self._fleet_sites.add(site)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding for a connection from a network outside the device's pattern."""
        device_id, source = event.device_id, event.source_ip
        if device_id is None or source is None:
            return []
        network = network_of(source)
        known = self._devices.get(device_id)
        if known is not None and network in known:
            return []
        type_known = self._types.get(event.device_type or "", set())
        at = event.at
        mature = known is not None and at - self._first[device_id] >= self.learning_seconds
        if not mature:
            # a new device is judged by its type's networks, once the type has any
            type_young = at - self._type_first.get(event.device_type or "", at) \
                < self.learning_seconds
            sites = self._sites.get(event.device_type or "", set())
            # no site of the type known at all (the first device of its type, or no
            # learning period): there is no pattern to be outside of
            site = site_of(source)
            if known:
                # it has networks, too few to tell its scope: its own sites are home
                if any(site_of(n.split("/", 1)[0]) == site for n in known):
                    return []
            elif type_young or not sites or site in self._fleet_sites:
                return []
        elif roams_within(network, known or set(), type_known):
            return []
        self._outlier = event
        reported = self._reported.setdefault(device_id, set())
        if network in reported or not self._cooldown.ready(device_id, at):
            return []
        reported.add(network)
        foreign = network not in type_known
        return [Finding(
            FindingType.UNUSUAL_SOURCE, Severity.HIGH if foreign else Severity.MEDIUM,
            at, device_id,
            f"{device_id} connected from {source} ({network}), outside its usual networks"
            + ("; no device of its type ever connected from there" if foreign else ""),
            self.name,
            {"metric": "aws:source-ip-address", "source_ip": source, "network": network,
             "known_networks": sorted(known or ()), "type_knows_network": not foreign},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """The network is one of the device's from now on."""
        network = finding.evidence.get("network")
        if finding.device_id is not None and isinstance(network, str):
            self._devices.setdefault(finding.device_id, set()).add(network)

    def snapshot(self) -> dict[str, Any]:
        """Known networks per device and type."""
        return {"devices": json_sets(self._devices), "first": dict(self._first),
                "types": json_sets(self._types), "type_first": dict(self._type_first),
                "sites": json_sets(self._sites), "reported": json_sets(self._reported)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._devices = sets_from_json(state.get("devices", {}))
        self._first = {k: float(v) for k, v in state.get("first", {}).items()}
        self._types = sets_from_json(state.get("types", {}))
        self._type_first = {k: float(v) for k, v in state.get("type_first", {}).items()}
        self._sites = sets_from_json(state.get("sites", {}))
        self._fleet_sites = {site for sites in self._sites.values() for site in sites}
        self._reported = sets_from_json(state.get("reported", {}))
