"""Lateral movement: a device reaching internal peers outside its normal set.

An IoT device talks to a handful of fixed internal peers. Fan-out to unknown internal
hosts or ports within a short window is scanning or pivoting; one unknown peer alone
is not enough (a new peer device joins now and then), two within the window is. A young
device is judged by what its type does: the peers its type talks to, and the services
(internal ports) it talks to them on. A gateway commissioned at a new plant polls PLCs
no other gateway knows, on the Modbus or S7 port every gateway polls on: that is what a
gateway does, while SSH, SMB or a sweep is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, PeerMemory, Window
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
        self._peers = PeerMemory()
        #: type -> the internal ports its devices talk to
        self._type_ports: dict[str, set[int]] = {}
        self._allow: dict[str, int] = {}
        self._windows: dict[str, Window] = {}
        self._scan_reported: set[str] = set()
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None

    def learn(self, event: Event) -> None:
        """Remember internal peers the device talks to normally."""
        device_id, dst = event.device_id, event.dst_ip
        if device_id is None or dst is None or event is self._outlier:
            return
        internal = is_internal(dst)
        self._peers.learn(device_id, event.device_type, event.at,
                          f"{dst}:{event.dst_port}" if internal else None)
        if internal and event.dst_port is not None:
            ports = self._type_ports.get(event.device_type or "")
            if ports is None:
                ports = self._type_ports[event.device_type or ""] = set()
            if event.dst_port not in ports:
                ports.add(event.dst_port)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding once unknown internal peers in the window reach the threshold."""
        device_id, dst = event.device_id, event.dst_ip
        if device_id is None or dst is None:
            return []
        peer = f"{dst}:{event.dst_port}"
        peers_of = self._peers
        known = peers_of.devices.get(device_id)
        if (known is not None and peer in known) or not is_internal(dst):
            return []
        if known is None or peers_of.flows[device_id] < MIN_FLOWS \
                or event.at - peers_of.first[device_id] < self.learning_seconds:
            # a young device: judged by the peers of its type, once the type has some
            type_name = event.device_type or ""
            first = peers_of.type_first.get(type_name)
            if first is None or event.at - first < self.learning_seconds \
                    or peer in peers_of.types.get(type_name, ()) \
                    or event.dst_port in self._type_ports.get(type_name, ()):
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
        self._peers.devices.setdefault(finding.device_id, set()).update(str(p) for p in peers)
        self._allow[finding.device_id] = max(self._allow.get(finding.device_id, 0),
                                             len(peers))

    def snapshot(self) -> dict[str, Any]:
        """Known internal peers per device and taught allowances."""
        return {**self._peers.snapshot(), "allow": dict(self._allow),
                "type_ports": {t: sorted(p) for t, p in self._type_ports.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._peers.restore(state)
        self._allow = {k: int(v) for k, v in state.get("allow", {}).items()}
        self._type_ports = {str(t): {int(p) for p in ports}
                            for t, ports in state.get("type_ports", {}).items()}
