"""Rate change: a device publishing much faster than it (or its type) normally does.

The statistic is the time the last *n* inter-arrivals took (``now - t[-n]``), on a log
scale, against the EWMA/MAD baseline of the same span. Three spans, because devices
differ: a periodic sensor's interval barely moves (60 s ± jitter), so a 3x speed-up
shows in the first fast interval; a gateway's Poisson traffic needs ~32 messages before a
3x change stands out of the noise (the log of a Gamma(32) sum has sigma ~0.18, of a
Gamma(4) ~0.53).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, RobustLog, time_weight
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

SHORT, LONG = 4, 32
#: z-scores above which the span is abnormal; the short one is stricter because the log
#: of a short Gamma sum has a heavy left tail
Z_ONE, Z_SHORT, Z_LONG = 8.0, 7.0, 5.0
#: and the speed-up must be at least this much, whatever the spread says
MIN_RATIO_SHORT, MIN_RATIO_LONG = math.log(2.5), math.log(2.0)
SIGMA_FLOOR = 0.05
MIN_SAMPLES = 20
TYPE_MIN_SAMPLES = 200


class _DeviceRate:
    __slots__ = ("allow", "first_at", "long", "one", "recent", "short")

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.recent: deque[float] = deque(maxlen=LONG)
        self.one = RobustLog()
        self.short = RobustLog()
        self.long = RobustLog()
        #: extra log-ratio tolerated, taught by false positives
        self.allow = 0.0


class RateChange:
    """Messages sent (Device Defender ``aws:num-messages-sent``) far above baseline."""

    name = "rate_change"
    kinds = frozenset({EventKind.PUBLISH})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, _DeviceRate] = {}
        self._types: dict[str, tuple[RobustLog, RobustLog]] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None

    def learn(self, event: Event) -> None:
        """Fold the spans ending at this message into the device's and its type's baseline."""
        device_id = event.device_id
        if device_id is None:
            return
        state = self._devices.get(device_id)
        if state is None:
            state = self._devices[device_id] = _DeviceRate(event.at)
        recent = state.recent
        if event is not self._outlier and recent:
            at = event.at
            kinds = self._types.get(event.device_type or "")
            if kinds is None:
                kinds = self._types[event.device_type or ""] = (RobustLog(), RobustLog())
            n = len(recent)
            weight = time_weight(at - recent[-1])
            value = math.log(max(at - recent[-1], 1e-3))
            state.one.add(value, weight)
            if n >= SHORT:
                value = math.log(max(at - recent[-SHORT], 1e-3))
                state.short.add(value, weight)
                kinds[0].add(value)
            if n >= LONG:
                value = math.log(max(at - recent[0], 1e-3))
                state.long.add(value, weight)
                kinds[1].add(value)
        recent.append(event.at)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding when the last 4 or 32 messages came far faster than usual."""
        device_id = event.device_id
        if device_id is None:
            return []
        state = self._devices.get(device_id)
        if state is None or len(state.recent) < SHORT:
            return []
        at = event.at
        recent = state.recent
        hit = False
        if at - state.first_at >= self.learning_seconds and state.short.count >= MIN_SAMPLES:
            short, long = state.short, state.long
            # one interval: shows a periodic device speeding up within a message or two
            span, n = max(at - recent[-1], 1e-3), 1
            drop = state.one.mean - math.log(span)
            sigma = state.one.sigma(SIGMA_FLOOR)
            hit = drop > MIN_RATIO_SHORT + state.allow and drop > Z_ONE * sigma
        else:
            prior = self._types.get(event.device_type or "")
            if prior is None or prior[0].count < TYPE_MIN_SAMPLES:
                return []
            short, long = prior
        if not hit:
            span = max(at - recent[-SHORT], 1e-3)
            drop = short.mean - math.log(span)
            sigma = short.sigma(SIGMA_FLOOR)
            hit = drop > MIN_RATIO_SHORT + state.allow and drop > Z_SHORT * sigma
            n = SHORT
        if not hit and len(recent) == LONG and long.count >= MIN_SAMPLES:
            span = max(at - recent[0], 1e-3)
            drop = long.mean - math.log(span)
            sigma = long.sigma(SIGMA_FLOOR)
            hit = drop > MIN_RATIO_LONG + state.allow and drop > Z_LONG * sigma
            n = LONG
        if not hit:
            return []
        self._outlier = event
        if not self._cooldown.ready(device_id, at):
            return []
        factor = math.exp(drop)
        baseline_interval = math.exp(drop) * span / n
        severity = Severity.HIGH if factor >= 10 else Severity.MEDIUM
        return [Finding(
            FindingType.RATE_CHANGE, severity, at, device_id,
            f"{device_id} sends messages {factor:.1f}x faster than its baseline "
            f"(every {span / n:.1f} s instead of every {baseline_interval:.1f} s)",
            self.name,
            {"metric": "aws:num-messages-sent", "observed_interval_s": round(span / n, 3),
             "baseline_interval_s": round(baseline_interval, 3),
             "factor": round(factor, 2), "z": round(drop / sigma, 1), "messages": n},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """Tolerate this speed-up (and a margin) from now on."""
        state = self._devices.get(finding.device_id or "")
        if state is not None:
            factor = float(finding.evidence.get("factor", 2.0))
            state.allow = max(state.allow, math.log(max(factor, 1.0)) * 1.5)

    def snapshot(self) -> dict[str, Any]:
        """Per-device and per-type span baselines."""
        return {
            "devices": {d: [s.first_at, s.one.to_json(), s.short.to_json(), s.long.to_json(),
                            s.allow]
                        for d, s in self._devices.items()},
            "types": {t: [a.to_json(), b.to_json()] for t, (a, b) in self._types.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._devices.clear()
        for device_id, (first_at, one, short, long, allow) in state.get("devices", {}).items():
            entry = _DeviceRate(float(first_at))
            entry.one = RobustLog.from_json(one)
            entry.short, entry.long = RobustLog.from_json(short), RobustLog.from_json(long)
            entry.allow = float(allow)
            self._devices[device_id] = entry
        self._types = {t: (RobustLog.from_json(a), RobustLog.from_json(b))
                       for t, (a, b) in state.get("types", {}).items()}
