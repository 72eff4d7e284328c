"""The streaming statistics detectors build their baselines from.

Pure Python and O(1) per event: the pipeline scores tens of thousands of events a
second on one core, so there is no history kept beyond a few short windows and no
numpy. Every baseline is JSON-safe through ``to_json`` / ``from_json`` so the engine
can persist it across restarts.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

#: weight of one new sample in the exponentially weighted statistics, at most
EWMA_ALPHA = 0.01
#: memory in time: a sample weighs (seconds since the previous one) / this. A gateway
#: sending twice a second and a sensor once a minute both remember ~hours, so an
#: attack lasting minutes cannot teach itself into the baseline before it is judged
MEMORY_SECONDS = 4 * 3600.0


def time_weight(elapsed: float) -> float:
    """The EWMA weight of a sample that came ``elapsed`` seconds after the previous."""
    weight = elapsed / MEMORY_SECONDS
    return weight if weight < EWMA_ALPHA else EWMA_ALPHA
#: mean absolute deviation of a normal variable is ~0.8 sigma
MAD_TO_SIGMA = 1.25


class RobustLog:
    """EWMA of a log-scaled quantity and of its absolute deviation (a streaming MAD).

    Log scale because rates and sizes are multiplicative: a 3x change is the same
    distance whatever the device's normal level. Deviations fed in are clipped to a few
    MADs, so one outlier cannot blow the spread open (what makes it robust).
    """

    __slots__ = ("count", "dev", "mean")

    def __init__(self, mean: float = 0.0, dev: float = 0.0, count: int = 0) -> None:
        self.mean = mean
        self.dev = dev
        self.count = count

    def add(self, value: float, weight: float = EWMA_ALPHA) -> None:
        """Fold one log-scaled sample in (``weight``: see ``time_weight``)."""
        # the hottest function of the pipeline (several calls per message): written
        # without builtins calls
        count = self.count + 1
        self.count = count
        if count == 1:
            self.mean = value
            return
        # while young, a plain running average; then exponential forgetting
        alpha = 1.0 / count
        if alpha < weight:
            alpha = weight
        dev = self.dev
        delta = value - self.mean
        spread = delta if delta >= 0 else -delta
        if count > 20 and dev > 0:
            limit = 4.0 * dev
            if spread > limit:
                spread = limit
                delta = limit if delta > 0 else -limit
        self.mean += alpha * delta
        self.dev = dev + alpha * (spread - dev)

    def sigma(self, floor: float) -> float:
        """The spread as a standard deviation, never below ``floor``."""
        s = self.dev * MAD_TO_SIGMA
        return s if s > floor else floor

    def to_json(self) -> list[float]:
        """``[mean, dev, count]``."""
        return [self.mean, self.dev, self.count]

    @staticmethod
    def from_json(data: list[float]) -> RobustLog:
        """Inverse of ``to_json``."""
        return RobustLog(float(data[0]), float(data[1]), int(data[2]))


#: how long an observed extreme (``Ceiling``) takes to fade back to the mean: a week,
#: so what a device does once a day or once a week stays allowed
EXTREME_MEMORY = 7 * 86400.0


class Ceiling:
    """The largest of a log-scaled quantity a baseline has seen, fading slowly to its mean.

    What a device does now and then (a sync upload, a burst of acknowledgements) sets the
    ceiling at once; it then sinks towards the mean over ``EXTREME_MEMORY``, so a one-off
    from long ago does not open the baseline for good.
    """

    __slots__ = ("value",)

    def __init__(self, value: float = -math.inf) -> None:
        self.value = value

    def add(self, value: float, mean: float, elapsed: float) -> None:
        """Fold in one sample; ``mean`` is what the ceiling fades to, ``elapsed`` the
        seconds since the previous sample."""
        top = self.value
        if value >= top:
            self.value = value
        elif top > mean:
            fade = elapsed / EXTREME_MEMORY
            self.value = top - (top - mean) * (fade if fade < 1.0 else 1.0)

    def raise_to(self, value: float) -> None:
        """Allow at least ``value`` (an admin said it was normal)."""
        if value > self.value:
            self.value = value

    def to_json(self) -> float | None:
        """The value (None when nothing was seen)."""
        return None if self.value == -math.inf else self.value

    @staticmethod
    def from_json(data: float | None) -> Ceiling:
        """Inverse of ``to_json``."""
        return Ceiling(-math.inf if data is None else float(data))


class Cooldown:
    """One finding per episode: dedupe, so an attack is one finding, not 10,000.

    An episode lasts while abnormal events keep coming less than ``seconds`` apart
    (each one extends it), so a long attack, and the trailing windows that still hold
    its events, raise one finding; the same behaviour after ``seconds`` of calm is a
    new episode. An episode that gets worse (a higher ``severity`` than it was reported
    at: 6 failed logins became 40) is reported again, so the response can escalate.
    """

    __slots__ = ("_until", "_worst", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until: dict[object, float] = {}
        self._worst: dict[object, int] = {}

    def ready(self, key: object, at: float, severity: int = 0) -> bool:
        """Whether an abnormal event for ``key`` at ``at`` starts a new episode, or
        makes the current one worse than reported."""
        until = self._until.get(key)
        self._until[key] = at + self.seconds
        if until is not None and at < until:
            if severity > self._worst.get(key, severity):
                self._worst[key] = severity
                return True
            return False
        self._worst[key] = severity
        if len(self._until) > 100_000:  # forget the long-expired ones
            self._until = {k: u for k, u in self._until.items() if u > at}
            self._worst = {k: w for k, w in self._worst.items() if k in self._until}
        return True


class Window:
    """Timestamps (with a value each) seen in the last ``seconds``: counts and fan-out."""

    __slots__ = ("_items", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._items: deque[tuple[float, object]] = deque()

    def add(self, at: float, value: object = None) -> None:
        """Record one occurrence and drop what fell out of the window."""
        self._items.append((at, value))
        self.advance(at)

    def advance(self, at: float) -> None:
        """Drop what fell out of the window by ``at``."""
        items = self._items
        horizon = at - self.seconds
        while items and items[0][0] < horizon:
            items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def distinct(self) -> set[object]:
        """The distinct values in the window."""
        return {value for _at, value in self._items}


def hour_of_day(at: float) -> int:
    """UTC hour 0-23 of an epoch time."""
    return int(at // 3600.0) % 24


def log_ratio(observed: float, baseline: float) -> float:
    """``log(observed / baseline)``, safe for zeros."""
    return math.log(max(observed, 1e-9) / max(baseline, 1e-9))


def json_sets(sets: dict[str, set[str]]) -> dict[str, list[str]]:
    """A dict of sets as a dict of sorted lists."""
    return {key: sorted(values) for key, values in sets.items()}


def sets_from_json(data: Any) -> dict[str, set[str]]:
    """Inverse of ``json_sets``."""
    return {str(key): {str(v) for v in values} for key, values in dict(data).items()}


class PeerMemory:
    """The peers each device and each device type talks to, and since when.

    ``learn`` counts every flow of a device; ``keep`` says which peers are worth
    remembering (public ones for new destinations, internal ``ip:port`` ones for
    lateral movement). A device's first flow starts its clock, and its type's.
    ``spread`` counts the devices, of any type, that know each peer: what many devices
    of the fleet talk to (a public NTP or DNS server, a shared cloud) is the fleet's.
    """

    __slots__ = ("devices", "first", "flows", "spread", "type_first", "types")

    def __init__(self) -> None:
        self.devices: dict[str, set[str]] = {}
        self.first: dict[str, float] = {}
        self.flows: dict[str, int] = {}
        self.types: dict[str, set[str]] = {}
        self.type_first: dict[str, float] = {}
        self.spread: dict[str, int] = {}

    def learn(self, device_id: str, device_type: str | None, at: float,
              peer: str | None) -> None:
        """Count a flow of ``device_id``; remember ``peer`` (None: not worth keeping)."""
        known = self.devices.get(device_id)
        if known is None:
            known = self.devices[device_id] = set()
            self.first[device_id] = at
            self.flows[device_id] = 0
            self.type_first.setdefault(device_type or "", at)
        self.flows[device_id] += 1
        if peer is not None and peer not in known:
            known.add(peer)
            self.types.setdefault(device_type or "", set()).add(peer)
            self.spread[peer] = self.spread.get(peer, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state."""
        return {"devices": json_sets(self.devices), "first": dict(self.first),
                "flows": dict(self.flows), "types": json_sets(self.types),
                "type_first": dict(self.type_first)}

    def restore(self, state: Any) -> None:
        """Inverse of ``snapshot``."""
        self.devices = sets_from_json(state.get("devices", {}))
        self.first = {k: float(v) for k, v in state.get("first", {}).items()}
        self.flows = {k: int(v) for k, v in state.get("flows", {}).items()}
        self.types = sets_from_json(state.get("types", {}))
        self.type_first = {k: float(v) for k, v in state.get("type_first", {}).items()}
        self.spread = {}
        for peers in self.devices.values():
            for peer in peers:
                self.spread[peer] = self.spread.get(peer, 0) + 1
