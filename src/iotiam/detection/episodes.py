"""How long a device's quiet spell must last before a finding about it is a new episode.

A detector's cooldown ends an episode after a fixed calm (10 minutes for most). A device
that speaks every 15 minutes then raises one finding per message: every abnormal message
comes after a calm longer than the cooldown. The engine therefore learns each device's
own rhythm (the typical gap between its events) and stamps every finding with the
episode gap that fits the device (``Finding.episode_gap``); the response layer folds a
finding into a live one of the same subject and type only while their events are less
than that apart (``response/service.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from iotiam.detection.models import DEFAULT_EPISODE_GAP

#: an episode survives this many of the device's typical gaps without a finding
GAPS_PER_EPISODE = 4.0
#: and never more than this (a device that speaks twice a day still gets new episodes)
MAX_EPISODE_GAP = 6 * 3600.0
#: events closer than this are one burst (a connect and its first publish), not a gap
BURST_SECONDS = 0.5
#: the typical gap is an average of the last ~this many gaps (log scale: a night's
#: silence does not swamp a day of 5-minute readings)
MEMORY = 32
_FORGET_AT = 2_000_000


class DeviceRhythm:
    """The typical gap between each device's events, learned as they come (O(1))."""

    __slots__ = ("_last", "_log_gap")

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        #: device -> [mean of log(gap), gaps counted (up to MEMORY)]
        self._log_gap: dict[str, list[float]] = {}

    def beat(self, device_id: str, at: float) -> None:
        """The device did something at ``at``."""
        last = self._last.get(device_id)
        if last is None:
            if len(self._last) > _FORGET_AT:  # a flood of made-up ids must not grow forever
                self._last.clear()
            self._last[device_id] = at
            return
        gap = at - last
        if gap < BURST_SECONDS:
            return
        self._last[device_id] = at
        value = math.log(gap)
        state = self._log_gap.get(device_id)
        if state is None:
            self._log_gap[device_id] = [value, 1.0]
            return
        count = state[1] + 1.0 if state[1] < MEMORY else float(MEMORY)
        state[0] += (value - state[0]) / count
        state[1] = count

    def episode_gap(self, device_id: str | None) -> float:
        """The calm that ends an episode of this device (the default for none or a
        device not yet heard twice)."""
        state = self._log_gap.get(device_id) if device_id is not None else None
        if state is None:
            return DEFAULT_EPISODE_GAP
        gap = GAPS_PER_EPISODE * math.exp(state[0])
        return min(MAX_EPISODE_GAP, max(DEFAULT_EPISODE_GAP, gap))

    def snapshot(self) -> dict[str, Any]:
        """The learned gaps, JSON-safe (the last event times are in-flight state)."""
        return {d: [round(s[0], 6), s[1]] for d, s in self._log_gap.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._log_gap = {str(d): [float(s[0]), float(s[1])] for d, s in state.items()}
