"""Rate change: a device publishing much faster than it (or its type) normally does.

The statistic is the time the last *n* inter-arrivals took (``now - t[-n]``), on a log
scale, against the EWMA/MAD baseline of the same span. Several spans, because devices
differ: a periodic sensor's interval barely moves (60 s ± jitter), so a 3x speed-up
shows in its first fast interval; a gateway's Poisson traffic needs 32-64 messages
before a 3x change stands out of the noise (the log of a Gamma(n) sum has sigma
~0.53 for n=4, ~0.18 for 32, ~0.125 for 64), and its left tail is heavier than a
normal's: over a day of sliding windows a Poisson stream reaches z ~6 by chance, so
the long spans need 6.5.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, RobustLog, time_weight
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

#: inter-arrivals per span, and the z-score above which a span is too short
SPANS = (1, 4, 32, 64)
Z = (8.0, 7.0, 6.5, 6.5)
#: and the speed-up must be at least this much, whatever the spread says
MIN_RATIO = math.log(2.5)
SIGMA_FLOOR = 0.05
MIN_SAMPLES = 20
#: a device's learning period ends after ``learning_seconds`` or this many messages,
#: whichever comes first; until then it is judged by its type's spans
LEARNED_SAMPLES = 100
TYPE_MIN_SAMPLES = 50
#: the one- and four-interval spans only judge regular devices (log-interval sigma
#: below this): for Poisson traffic (sigma ~1.28) a few close messages mean nothing
REGULAR = 0.5
KEEP = SPANS[-1]
_log = math.log


class _DeviceRate:
    __slots__ = ("allow", "first_at", "recent", "spans")

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.recent: deque[float] = deque(maxlen=KEEP)
        self.spans = [RobustLog() for _ in SPANS]
        #: extra log-ratio tolerated, taught by false positives
        self.allow = 0.0


class RateChange:
    """Messages sent (Device Defender ``aws:num-messages-sent``) far above baseline."""

    name = "rate_change"
    kinds = frozenset({EventKind.PUBLISH})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, _DeviceRate] = {}
        #: per type, the spans of all its devices: the prior of young devices
        self._types: dict[str, list[RobustLog]] = {}
        self._cooldown = Cooldown(cooldown)
        self._outlier: Event | None = None
        self._tick = 0

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
            # the type's prior is a population statistic: a sample of 1 message in 8
            # describes it as well and halves the cost of learning
            self._tick += 1
            prior = None
            if not self._tick & 7:
                prior = self._types.get(event.device_type or "")
                if prior is None:
                    prior = self._types[event.device_type or ""] = [RobustLog() for _ in SPANS]
            weight = time_weight(at - recent[-1])
            n = len(recent)
            spans = state.spans
            for i, span in enumerate(SPANS):
                if n < span:
                    break
                elapsed = at - recent[-span]
                value = _log(elapsed if elapsed > 1e-3 else 1e-3)
                spans[i].add(value, weight)
                if prior is not None:
                    prior[i].add(value)
        recent.append(event.at)

    def __call__(self, event: Event) -> list[Finding]:
        """A finding when the last 1, 4, 32 or 64 intervals were far shorter than usual."""
        device_id = event.device_id
        if device_id is None:
            return []
        state = self._devices.get(device_id)
        if state is None or not state.recent:
            return []
        at = event.at
        recent = state.recent
        baseline = state.spans
        if baseline[1].count < LEARNED_SAMPLES and at - state.first_at < self.learning_seconds:
            prior = self._types.get(event.device_type or "")
            if prior is None or prior[1].count < TYPE_MIN_SAMPLES:
                return []
            baseline = prior
        n = len(recent)
        floor = MIN_RATIO + state.allow
        regular = baseline[0].sigma(SIGMA_FLOOR) < REGULAR
        for i, span in enumerate(SPANS):
            if n < span:
                return []
            if span < 8 and not regular:
                continue
            stat = baseline[i]
            if stat.count < MIN_SAMPLES:
                return []
            elapsed = max(at - recent[-span], 1e-3)
            drop = stat.mean - math.log(elapsed)
            sigma = stat.sigma(SIGMA_FLOOR)
            if drop > floor and drop > Z[i] * sigma:
                break
        else:
            return []
        self._outlier = event
        if not self._cooldown.ready(device_id, at):
            return []
        factor = math.exp(drop)
        interval = elapsed / span
        return [Finding(
            FindingType.RATE_CHANGE, Severity.HIGH if factor >= 10 else Severity.MEDIUM,
            at, device_id,
            f"{device_id} sends messages {factor:.1f}x faster than its baseline "
            f"(every {interval:.1f} s instead of every {interval * factor:.1f} s)",
            self.name,
            {"metric": "aws:num-messages-sent", "observed_interval_s": round(interval, 3),
             "baseline_interval_s": round(interval * factor, 3),
             "factor": round(factor, 2), "z": round(drop / sigma, 1), "messages": span},
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
            "spans": list(SPANS),
            "devices": {d: [s.first_at, [x.to_json() for x in s.spans], s.allow]
                        for d, s in self._devices.items()},
            "types": {t: [x.to_json() for x in spans] for t, spans in self._types.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot`` (baselines of other spans than these are dropped)."""
        self._devices.clear()
        self._types.clear()
        if list(state.get("spans", [])) != list(SPANS):
            return
        for device_id, (first_at, spans, allow) in state.get("devices", {}).items():
            entry = _DeviceRate(float(first_at))
            entry.spans = [RobustLog.from_json(x) for x in spans]
            entry.allow = float(allow)
            self._devices[device_id] = entry
        self._types = {t: [RobustLog.from_json(x) for x in spans]
                       for t, spans in state.get("types", {}).items()}
