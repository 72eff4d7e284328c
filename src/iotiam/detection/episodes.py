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

from collections.abc import Mapping
from typing import Any

from iotiam.detection.models import DEFAULT_EPISODE_GAP

#: an episode survives this many of the device's typical gaps without a finding
GAPS_PER_EPISODE = 3.0
#: and never more than this (a device that speaks twice a day still gets new episodes)
MAX_EPISODE_GAP = 6 * 3600.0
#: events closer than this are one burst (a connect and its first publish), not a gap
BURST_SECONDS = 0.5
#: a gap counts for at most this long: a night's silence is not the device's rhythm
LONGEST_GAP = 2 * 3600.0
#: the averages remember about this many gaps
MEMORY = 64
_FORGET_AT = 2_000_000


class DeviceRhythm:
    """The typical gap between each device's events, learned as they come (O(1)).

    "Typical" is time-weighted: the mean length of the gap an instant picked at random
    falls in (sum of squared gaps over sum of gaps). Replies that follow a message within
    seconds (an ack after a command, a flow after a publish) barely move it, while a
    plain mean or a geometric one would take a heartbeat device for a chatty one.
    """

    __slots__ = ("_gaps", "_last")

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        #: device -> [mean of gap**2, mean of gap, gaps counted (up to MEMORY)]
        self._gaps: dict[str, list[float]] = {}

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
        if gap > LONGEST_GAP:
            gap = LONGEST_GAP
        state = self._gaps.get(device_id)
        if state is None:
            self._gaps[device_id] = [gap * gap, gap, 1.0]
            return
        count = state[2] + 1.0 if state[2] < MEMORY else float(MEMORY)
        state[0] += (gap * gap - state[0]) / count
        state[1] += (gap - state[1]) / count
        state[2] = count

    def episode_gap(self, device_id: str | None) -> float:
        """The calm that ends an episode of this device (the default for none or a
        device not yet heard twice)."""
        state = self._gaps.get(device_id) if device_id is not None else None
        if state is None or state[1] <= 0:
            return DEFAULT_EPISODE_GAP
        gap = GAPS_PER_EPISODE * state[0] / state[1]
        return min(MAX_EPISODE_GAP, max(DEFAULT_EPISODE_GAP, gap))

    def snapshot(self) -> dict[str, Any]:
        """The learned gaps, JSON-safe (the last event times are in-flight state)."""
        return {d: [round(s[0], 3), round(s[1], 3), s[2]] for d, s in self._gaps.items()}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._gaps = {str(d): [float(s[0]), float(s[1]), float(s[2])]
                      for d, s in state.items()}
