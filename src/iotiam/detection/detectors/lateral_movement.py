"""Lateral movement: a device reaching internal peers outside its normal set.

An IoT device talks to a handful of fixed internal peers. Fan-out to unknown internal
hosts or ports within a short window is scanning or pivoting; one unknown peer alone
is not enough (a new peer device joins now and then), two within the window is. A young
device is judged by the peers its type talks to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, Window, json_sets, sets_from_json
from iotiam.detection.detectors.new_destination import is_internal
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

WINDOW_SECONDS = 120.0
MIN_PEERS = 2
SCAN_PEERS = 10
MIN_FLOWS = 3


class LateralMovement:
    """Fan-out of unknown internal ``ip:port`` peers (Device Defender: listening ports,
    destination IPs) within two minutes."""

    name = "lateral_movement"
    kinds = frozenset({EventKind.FLOW})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, set[str]] = {}
        self._first: dict[str, float] = {}
        self._flows: dict[str, int] = {}
        self._allow: dict[str, int] = {}
        self._windows: dict[str, Window] = {}
        self._types: dict[str, set[str]] = {}
        self._type_first: dict[str, float] = {}
        self._scan_reported: set[str] = set()
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None

    def learn(self, event: Event) -> None:
        """Remember internal peers the device talks to normally."""
        device_id, dst = event.device_id, event.dst_ip
        if device_id is None or dst is None or event is self._outlier:
            return
        known = self._devices.get(device_id)
        if known is None:
            known = self._devices[device_id] = set()
            self._first[device_id] = event.at
            self._flows[device_id] = 0
            self._type_first.setdefault(event.device_type or "", event.at)
        self._flows[device_id] += 1
        peer = f"{dst}:{event.dst_port}"
        if peer not in known and is_internal(dst):
            known.add(peer)
            self._types.setdefault(event.device_type or "", set()).add(peer)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding once unknown internal peers in the window reach the threshold."""
        device_id, dst = event.device_id, event.dst_ip
        if device_id is None or dst is None:
            return []
        peer = f"{dst}:{event.dst_port}"
        known = self._devices.get(device_id)
        if (known is not None and peer in known) or not is_internal(dst):
            return []
        if known is None or self._flows[device_id] < MIN_FLOWS \
                or event.at - self._first[device_id] < self.learning_seconds:
            # a young device: judged by the peers of its type, once the type has some
            type_name = event.device_type or ""
            first = self._type_first.get(type_name)
            if first is None or event.at - first < self.learning_seconds \
                    or peer in self._types.get(type_name, ()):
                return []
            known = known or set()
        self._outlier = event
        window = self._windows.get(device_id)
        if window is None:
            window = self._windows[device_id] = Window(WINDOW_SECONDS)
        window.add(event.at, peer)
        peers = window.distinct()
        if len(peers) < MIN_PEERS + self._allow.get(device_id, 0):
            return []
        scan = len(peers) >= SCAN_PEERS
        new_episode = self._cooldown.ready(device_id, event.at)
        # a finding per episode, and one more if it grows into a scan
        if new_episode:
            self._scan_reported.discard(device_id)
        elif not scan or device_id in self._scan_reported:
            return []
        if scan:
            self._scan_reported.add(device_id)
        hosts = {str(p).rsplit(":", 1)[0] for p in peers}
        return [Finding(
            FindingType.LATERAL_MOVEMENT, Severity.HIGH if scan else Severity.MEDIUM,
            event.at, device_id,
            f"{device_id} reached {len(peers)} internal peers outside its normal set "
            f"({len(hosts)} hosts) within {WINDOW_SECONDS:.0f} s",
            self.name,
            {"metric": "aws:destination-ip-addresses", "unknown_peers": sorted(map(str, peers)),
             "hosts": len(hosts), "window_s": WINDOW_SECONDS, "known_peers": len(known),
             "threshold": MIN_PEERS + self._allow.get(device_id, 0)},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """The peers are normal for this device, and so is that much fan-out."""
        if finding.device_id is None:
            return
        peers = finding.evidence.get("unknown_peers", [])
        self._devices.setdefault(finding.device_id, set()).update(str(p) for p in peers)
        self._allow[finding.device_id] = max(self._allow.get(finding.device_id, 0),
                                             len(peers))

    def snapshot(self) -> dict[str, Any]:
        """Known internal peers per device and taught allowances."""
        return {"devices": json_sets(self._devices), "first": dict(self._first),
                "flows": dict(self._flows), "allow": dict(self._allow),
                "types": json_sets(self._types), "type_first": dict(self._type_first)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._devices = sets_from_json(state.get("devices", {}))
        self._first = {k: float(v) for k, v in state.get("first", {}).items()}
        self._flows = {k: int(v) for k, v in state.get("flows", {}).items()}
        self._allow = {k: int(v) for k, v in state.get("allow", {}).items()}
        self._types = sets_from_json(state.get("types", {}))
        self._type_first = {k: float(v) for k, v in state.get("type_first", {}).items()}
