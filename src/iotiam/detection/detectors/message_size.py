"""Message size: payloads far larger than the device's (or its type's) usual ones.

Exfiltration and tunnelling show up as bigger messages at an unchanged rate. One
message is judged alone (a sensor's sizes barely vary) and as the mean of the last 8
(a gateway relays sizes spread over an order of magnitude; averaging 8 cuts the noise
by ~2.8 so a 3x growth still stands out).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, RobustLog, time_weight
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

RECENT = 8
Z_ONE, Z_MEAN = 8.0, 5.0
#: a firmware update adding fields grows messages up to ~2x (with jitter): not news
MIN_RATIO = math.log(2.3)
SIGMA_FLOOR = 0.05
#: a device's learning period ends after ``learning_seconds`` or this many messages,
#: whichever comes first; until then it is judged by its type's sizes. Devices of a
#: type differ in size, so the type's spread is the between-device one and a busy
#: device is better off with its own baseline soon
LEARNED_SAMPLES = 100
TYPE_MIN_SAMPLES = 200


class _DeviceSize:
    __slots__ = ("allow", "first_at", "last_at", "recent", "stat")

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.last_at = first_at
        self.stat = RobustLog()
        self.recent: deque[float] = deque(maxlen=RECENT)
        self.allow = 0.0


class MessageSize:
    """Message size (Device Defender ``aws:message-byte-size``) far above baseline."""

    name = "message_size"
    kinds = frozenset({EventKind.PUBLISH})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, _DeviceSize] = {}
        self._types: dict[str, RobustLog] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None

    def learn(self, event: Event) -> None:
        """Fold the size into the device's and its type's baseline."""
        device_id, size = event.device_id, event.size
        if device_id is None or size is None:
            return
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _DeviceSize(event.at)
        value = math.log(size + 1.0)
        state.recent.append(value)
        elapsed = event.at - state.last_at  # before last_at moves: the weight needs it
        state.last_at = event.at
        if event is not self._outlier:
            state.stat.add(value, time_weight(elapsed))
            prior = self._types.get(event.device_type or "")
            if prior is None:
                prior = self._types[event.device_type or ""] = RobustLog()
            prior.add(value)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding when this message, or the last 8 on average, is far too big."""
        device_id, size = event.device_id, event.size
        if device_id is None or size is None:
            return []
        state = self._devices.get(device_id)
        if state is None:
            return []
        at = event.at
        stat = state.stat
        spread_of_mean = 1.0 / math.sqrt(RECENT)
        if stat.count < LEARNED_SAMPLES and at - state.first_at < self.learning_seconds:
            prior = self._types.get(event.device_type or "")
            if prior is None or prior.count < TYPE_MIN_SAMPLES:
                return []
            stat = prior
            # the type's spread is mostly between devices, which averaging one
            # device's messages does not shrink
            spread_of_mean = 1.0
        value = math.log(size + 1.0)
        sigma = stat.sigma(SIGMA_FLOOR)
        growth = value - stat.mean
        hit = growth > MIN_RATIO + state.allow and growth > Z_ONE * sigma
        n = 1
        recent = state.recent
        if not hit and len(recent) == RECENT:
            growth = (sum(recent) - recent[0] + value) / RECENT - stat.mean
            hit = growth > MIN_RATIO + state.allow and growth > Z_MEAN * sigma * spread_of_mean
            n = RECENT
        if not hit:
            return []
        self._outlier = event
        if not self._cooldown.ready(device_id, at):
            return []
        factor = math.exp(growth)
        usual = math.exp(stat.mean) - 1.0
        return [Finding(
            FindingType.MESSAGE_SIZE,
            Severity.HIGH if factor >= 10 else Severity.MEDIUM, at, device_id,
            f"{device_id} sends messages {factor:.1f}x larger than usual "
            f"({size} bytes, usually ~{usual:.0f})",
            self.name,
            {"metric": "aws:message-byte-size", "observed_bytes": size,
             "baseline_bytes": round(usual, 1), "factor": round(factor, 2),
             "messages": n},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """Tolerate messages this much larger (and a margin) from now on."""
        state = self._devices.get(finding.device_id or "")
        if state is not None:
            factor = float(finding.evidence.get("factor", 2.0))
            state.allow = max(state.allow, math.log(max(factor, 1.0)) * 1.5)

    def snapshot(self) -> dict[str, Any]:
        """Per-device and per-type size baselines."""
        return {"devices": {d: [s.first_at, s.stat.to_json(), s.allow]
                            for d, s in self._devices.items()},
                "types": {t: s.to_json() for t, s in self._types.items()}}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._devices.clear()
        for device_id, (first_at, stat, allow) in state.get("devices", {}).items():
            entry = _DeviceSize(float(first_at))
            entry.stat, entry.allow = RobustLog.from_json(stat), float(allow)
            self._devices[device_id] = entry
        self._types = {t: RobustLog.from_json(s) for t, s in state.get("types", {}).items()}
