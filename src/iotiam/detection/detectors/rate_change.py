"""Rate change: a device publishing much faster than it (or its type) normally does.

The statistic is the time the last *n* inter-arrivals took (``now - t[-n]``), on a log
scale, against the EWMA/MAD baseline of the same span. Several spans, because devices
differ: a periodic sensor's interval barely moves (60 s ± jitter), so a 3x speed-up
shows in its first fast interval; a gateway's Poisson traffic needs 32-64 messages
before a 3x change stands out of the noise (the log of a Gamma(n) sum has sigma
~0.53 for n=4, ~0.18 for 32, ~0.125 for 64), and its left tail is heavier than a
normal's: over a day of sliding windows a Poisson stream reaches z ~6 by chance, so
the long spans need 6.5.

A device that sends rarely (an actuator's heartbeat every 15 minutes and an ack per
command) would need many minutes to fill even the short spans' evidence, so floods are
also judged as counts over time: the messages of the last 10, 30 and 60 s against what
the device's rate allows in that window (a Poisson tail at 2.5x its rate; never less
than twice the busiest such window the device was seen to send (and one), two more than its
type's busiest, nor than ``FLOOD_FLOOR``: commands acknowledged in a burst are not a
flood). Whatever
its normal period, a flood shows within a minute. A new busiest window raises the
limits only once it is older than the longest window (``HOLD``): until then it may be
the start of a flood, whose own messages must not lift the bar it is judged by (a
camera's flood at under twice its busiest minute otherwise raised its own limit before
its minute was up). A forgiven finding releases what is held: it was normal.

What looks fast but is not: a device that reconnects after an outage flushes the
messages it queued meanwhile. After a connect, up to the messages the gap could have
queued (twice the device's rate over the gap, and two more), coming back to back, are
catch-up: neither judged nor learned. And a device that sends a lone extra message now
and then in normal traffic (a camera's motion event next to a snapshot: one short
interval) is no longer judged by the one- and four-interval spans, nor are the young
devices of a type whose devices do that; floods still show in the windows and the long
spans. Nor is the first interval after a reconnect (a timer restarts with the session).

A device's rate follows the hours of its site (a camera sees more motion by day on
working days, an actuator gets its commands then): a baseline that remembers the last
hours only takes Monday morning for a speed-up after a quiet Sunday. So a long span
raises only when it is also faster than the fastest that span went in the last week
(``Ceiling``: the busy hours of earlier days). And a device whose traffic comes in
clusters (its short spans are not judged: a camera's chains of motion events) is not
told by a long span that is no faster than its busiest minute: chains of events can
fill 32 messages in minutes, which the Poisson spread of the long spans does not allow.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Ceiling, Cooldown, RobustLog, time_weight
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
SHORT_SPANS = 2
ODD_LIMIT = 2
#: a short span counts as a habit from this share of the z that raises: a device's
#: extra messages are known before its spread has shrunk enough for them to raise
ODD_Z = 0.6
TYPE_ODD_LIMIT = 3
#: flood windows (seconds), the fewest messages in one that can be a flood, the rate
#: factor the Poisson tail allows, and how improbable a count must be under it
WINDOWS = (10.0, 30.0, 60.0)
FLOOD_FLOOR = 5
FLOOD_FACTOR = 2.5
FLOOD_TAIL = 1e-6
#: learned messages between two refreshes of a device's flood limits
REFRESH = 32
#: seconds a new busiest window waits before it raises the flood limits: the longest
#: window, so a flood is judged by the limits from before it began
HOLD = WINDOWS[-1]
#: catch-up after a connect comes back to back: each message within this of the one
#: before (or of the connect), or the flush is over
FLUSH_GAP = 15.0
FLUSH_SLACK = 2
_log = math.log
_CONNECT, _PUBLISH = EventKind.CONNECT, EventKind.PUBLISH


def poisson_limit(mean: float, tail: float = FLOOD_TAIL) -> int:
    """The smallest count k with P(N >= k) <= ``tail`` for N ~ Poisson(``mean``)."""
    term = math.exp(-mean)
    below = 0.0  # P(N < k)
    k = 0
    # a window holds at most the KEEP messages kept and this one: a limit past that
    # (KEEP + 2) is never reached, as a count the tail allows must not be
    while 1.0 - below > tail and k <= KEEP + 1:
        below += term
        k += 1
        term *= mean / k
    return k


class _DeviceRate:
    __slots__ = ("abnormal_at", "allow", "connected_at", "fastest", "first_at", "held",
                 "least", "limits", "lone", "odd", "owed", "owed_until", "peaks", "pending",
                 "quick", "rate", "recent", "spans", "stale")

    def __init__(self, first_at: float) -> None:
        self.first_at = first_at
        self.recent: deque[float] = deque(maxlen=KEEP)
        self.spans = [RobustLog() for _ in SPANS]
        #: how often a lone short one- or four-interval span came (extra messages now
        #: and then: a motion event beside a snapshot); from ``ODD_LIMIT`` on, that
        #: span no longer judges the device
        self.odd = [0] * SHORT_SPANS
        #: when the last message raised on one short interval alone (inf: none did)
        self.lone = math.inf
        #: an interval longer than this is not short for any span (a cheap first test)
        self.quick = math.inf
        #: the most messages seen in each flood window, and the counts that are a flood
        self.peaks = [1] * len(WINDOWS)
        #: the most messages seen in each window, those held back included, and the
        #: held-back raises, oldest first: (when, window index, messages)
        self.held = [1] * len(WINDOWS)
        self.pending: deque[tuple[float, int, int]] = deque()
        self.limits: tuple[int, ...] | None = None
        self.least = 0
        #: the average rate (messages/s) the limits were drawn from
        self.rate = 1.0
        self.stale = 0
        #: catch-up messages still expected after a reconnect, and until when
        self.owed = 0
        self.owed_until = 0.0
        #: the last message judged abnormal: no span reaching back to it is learned or
        #: raises a new finding, so an attack's messages neither teach nor raise twice
        self.abnormal_at = -math.inf
        #: extra log-ratio tolerated, taught by false positives
        self.allow = 0.0
        self.connected_at = -math.inf
        #: the fastest each long span was seen (log messages/s, fading over a week)
        self.fastest = [Ceiling() for _ in SPANS[SHORT_SPANS:]]


class RateChange:
    """Messages sent (Device Defender ``aws:num-messages-sent``) far above baseline."""

    name = "rate_change"
    kinds = frozenset({EventKind.PUBLISH, EventKind.CONNECT})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        self._devices: dict[str, _DeviceRate] = {}
        #: per type, the spans of all its devices: the prior of young devices
        self._types: dict[str, list[RobustLog]] = {}
        #: per type, lone short spans its devices sent in normal traffic, and the most
        #: messages one of its devices sent in each flood window
        self._type_odd: dict[str, int] = {}
        self._type_peaks: dict[str, list[int]] = {}
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
        if event.kind is _CONNECT:
            self._expect_catch_up(state, event.at)
            state.connected_at = event.at
            return
        if state.owed:
            if event.at <= state.owed_until:
                state.owed -= 1  # catch-up after a reconnect: its timing says nothing
                state.owed_until = event.at + FLUSH_GAP
                return
            state.owed = 0
        if state.lone < event.at and recent:
            # the message after a lone short interval that raised: back to normal means
            # it was an extra message (counted as the device's habit), not a speed-up
            if event.at - recent[-1] > state.quick:
                self._odd(state, 0, event.device_type)
            state.lone = math.inf
        if event is not self._outlier and recent:
            at = event.at
            if at - recent[-1] <= state.quick:  # the last interval alone is short
                self._count_odd(state, event)
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
            clean = state.abnormal_at
            for i, span in enumerate(SPANS):
                if n < span or recent[-span] <= clean:
                    break
                elapsed = at - recent[-span]
                value = _log(elapsed if elapsed > 1e-3 else 1e-3)
                spans[i].add(value, weight)
                if i >= SHORT_SPANS and -value > state.fastest[i - SHORT_SPANS].value:
                    state.fastest[i - SHORT_SPANS].value = -value  # a new fastest, at once
                if prior is not None:
                    prior[i].add(value)
            if state.stale & 7 == 0:
                state.quick = math.exp(spans[0].mean - MIN_RATIO)
                if n >= 8:  # the fastest fade back to the mean, eight intervals at a time
                    for fastest, stat in zip(state.fastest, spans[SHORT_SPANS:], strict=True):
                        fastest.add(-math.inf, -stat.mean, at - recent[-8])
            self._count_peaks(state, event, clean)
            state.stale -= 1
        recent.append(event.at)

    def _count_peaks(self, state: _DeviceRate, event: Event, clean: float) -> None:
        """Hold back a new most messages seen in a flood window (see ``HOLD``), and
        raise the peaks by what was held back long enough."""
        recent, at, held = state.recent, event.at, state.held
        if state.pending and at - state.pending[0][0] > HOLD:
            self._release(state, event.device_type, at - HOLD)
        if at - recent[-1] > WINDOWS[-1]:  # alone in every window: no new peak
            return
        n = len(recent)
        for i, window in enumerate(WINDOWS):
            # the count in the window, this message included, beats the peak
            peak = held[i]
            while peak <= n and at - recent[-peak] <= window and recent[-peak] > clean:
                peak += 1
            if peak > held[i]:
                held[i] = peak
                state.pending.append((at, i, peak))

    def _release(self, state: _DeviceRate, device_type: str | None, until: float) -> None:
        """Raise the device's (and its type's) peaks by what was held back up to ``until``."""
        pending, peaks = state.pending, state.peaks
        kind = self._type_peaks.setdefault(device_type or "", [1] * len(WINDOWS))
        while pending and pending[0][0] <= until:
            _at, i, peak = pending.popleft()
            if peak > peaks[i]:
                peaks[i] = peak
            if peak > kind[i]:
                kind[i] = peak

    def _count_odd(self, state: _DeviceRate, event: Event) -> None:
        """Count a short span that would raise on its own in normal traffic (while the
        device learns, or judged normal): a device that does this now and then is not
        told by it."""
        recent, spans, odd = state.recent, state.spans, state.odd
        for i in range(SHORT_SPANS):
            span = SPANS[i]
            stat = spans[i]
            if odd[i] >= ODD_LIMIT or len(recent) < span or stat.count < MIN_SAMPLES:
                continue
            drop = stat.mean - _log(max(event.at - recent[-span], 1e-3))
            if drop > MIN_RATIO and drop > ODD_Z * Z[i] * stat.sigma(SIGMA_FLOOR):
                self._odd(state, i, event.device_type)

    def _odd(self, state: _DeviceRate, span: int, device_type: str | None) -> None:
        state.odd[span] += 1
        kind = device_type or ""
        self._type_odd[kind] = self._type_odd.get(kind, 0) + 1

    def _expect_catch_up(self, state: _DeviceRate, at: float) -> None:
        """A connect: the device may flush what it queued since its last message."""
        recent = state.recent
        if not recent or state.spans[0].count < MIN_SAMPLES:
            return
        rate = 1.0 / math.exp(state.spans[0].mean)
        state.owed = int(2.0 * rate * (at - recent[-1])) + FLUSH_SLACK
        state.owed_until = at + FLUSH_GAP

    def _flood_limits(self, state: _DeviceRate, baseline: list[RobustLog],
                      device_type: str | None) -> tuple[int, ...]:
        """The message counts in each window that are a flood for this device."""
        # the device's average rate: from the longest span learned (a sum of many
        # intervals, so bursts and pauses average out), else from single intervals
        rate = 1.0 / math.exp(baseline[0].mean)
        for i in range(len(SPANS) - 1, 0, -1):
            if baseline[i].count >= MIN_SAMPLES:
                rate = SPANS[i] / math.exp(baseline[i].mean)
                break
        state.rate = rate
        rate *= FLOOD_FACTOR * math.exp(state.allow)
        kind = self._type_peaks.get(device_type or "", state.peaks)
        limits = tuple(max(FLOOD_FLOOR, 2 * state.peaks[i] + 1, kind[i] + 2,
                           poisson_limit(rate * window))
                       for i, window in enumerate(WINDOWS))
        state.limits = limits
        state.least = min(limits)
        state.stale = REFRESH
        return limits

    def _flood(self, state: _DeviceRate, baseline: list[RobustLog], at: float,
               device_type: str | None) -> tuple[int, float] | None:
        """(messages, seconds) of a window holding a flood ending at ``at``, if one does."""
        limits = state.limits
        if limits is None or state.stale <= 0 or state.least == 0:
            limits = self._flood_limits(state, baseline, device_type)
        recent = state.recent
        n = len(recent) + 1
        for i, window in enumerate(WINDOWS):
            limit = limits[i]
            if limit <= n and at - recent[1 - limit] <= window:
                return limit, at - recent[1 - limit]
        return None

    def __call__(self, event: Event) -> list[Finding]:
        """A finding when the last 1, 4, 32 or 64 intervals were far shorter than usual."""
        device_id = event.device_id
        if device_id is None:
            return []
        state = self._devices.get(device_id)
        if state is None or not state.recent or event.kind is not _PUBLISH:
            return []
        at = event.at
        if state.owed and at <= state.owed_until:
            return []
        recent = state.recent
        baseline = state.spans
        own = True
        if baseline[1].count < LEARNED_SAMPLES and at - state.first_at < self.learning_seconds:
            prior = self._types.get(event.device_type or "")
            if prior is None or prior[1].count < TYPE_MIN_SAMPLES:
                return []
            baseline, own = prior, False
        if baseline[0].count < MIN_SAMPLES:
            return []
        n = len(recent)
        flood = None
        least = state.least  # no window holds a flood unless this many fit in the longest
        if state.stale <= 0 or (least <= n + 1 and at - recent[1 - least] <= WINDOWS[-1]):
            flood = self._flood(state, baseline, at, event.device_type)
        if flood is not None:
            span, elapsed = flood[0] - 1, max(flood[1], 1e-3)
            drop = _log(span / elapsed / state.rate)
            sigma = baseline[0].sigma(SIGMA_FLOOR)
        else:
            found = self._fast_span(state, baseline, event, own)
            if found is None:
                return []
            span, elapsed, drop, sigma = found
            if recent[-span] <= state.abnormal_at:
                # a span still holding a reported episode's messages trails off: it is
                # not a new episode, nor does it extend the old one (a device sending
                # every few minutes trails for hours, and a second flood meanwhile is
                # a new attack)
                self._outlier = event if own else None
                return []
        # while a device learns (judged by its type), what it does is its baseline all
        # the same: its own habits are what the type's cannot tell
        self._outlier = event if own else None
        state.abnormal_at = at
        if flood is None and span == 1:
            state.lone = at
        if not self._cooldown.ready(device_id, at):
            return []
        return self._finding(event, span, elapsed, drop, sigma, flood is not None)

    def _fast_span(self, state: _DeviceRate, baseline: list[RobustLog], event: Event,
                   own: bool) -> tuple[int, float, float, float] | None:
        """(span, seconds, log drop, sigma) of the first span far shorter than usual."""
        recent, at = state.recent, event.at
        n = len(recent)
        floor = MIN_RATIO + state.allow
        short = baseline[0].sigma(SIGMA_FLOOR) < REGULAR
        if short:
            # a device, or a type, that sends a lone extra message now and then in
            # normal traffic (cameras) is not judged by the short spans
            short = self._type_odd.get(event.device_type or "", 0) < TYPE_ODD_LIMIT \
                and not (own and state.odd[0] >= ODD_LIMIT)
        for i, span in enumerate(SPANS):
            if n < span:
                return None
            if span < 8 and (not short or (own and state.odd[i] >= ODD_LIMIT)
                             or recent[-span] < state.connected_at):
                continue
            stat = baseline[i]
            if stat.count < MIN_SAMPLES:
                return None
            elapsed = max(at - recent[-span], 1e-3)
            drop = stat.mean - math.log(elapsed)
            sigma = stat.sigma(SIGMA_FLOOR)
            if drop > floor and drop > Z[i] * sigma:
                if span >= 8 and own and (
                        -math.log(elapsed) <= state.fastest[i - SHORT_SPANS].value
                        or (state.odd[0] >= ODD_LIMIT
                            and span / elapsed <= state.peaks[-1] / WINDOWS[-1])):
                    # no faster than the span went in the last week (a busy hour of an
                    # earlier day), or than a bursty device's busiest minute
                    continue
                return span, elapsed, drop, sigma
        return None

    def _finding(self, event: Event, span: int, elapsed: float, drop: float, sigma: float,
                 flood: bool) -> list[Finding]:
        device_id = event.device_id or ""
        factor = math.exp(drop)
        interval = elapsed / span
        return [Finding(
            FindingType.RATE_CHANGE, Severity.HIGH if factor >= 10 else Severity.MEDIUM,
            event.at, device_id,
            f"{device_id} sends messages {factor:.1f}x faster than its baseline "
            f"(every {interval:.1f} s instead of every {interval * factor:.1f} s)",
            self.name,
            {"metric": "aws:num-messages-sent", "observed_interval_s": round(interval, 3),
             "baseline_interval_s": round(interval * factor, 3),
             "factor": round(factor, 2), "z": round(drop / sigma, 1), "messages": span,
             "window_s": round(elapsed, 1) if flood else None},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """Tolerate this speed-up (and a margin) from now on."""
        state = self._devices.get(finding.device_id or "")
        if state is not None:
            factor = float(finding.evidence.get("factor", 2.0))
            state.allow = max(state.allow, math.log(max(factor, 1.0)) * 1.5)
            self._release(state, finding.device_type, math.inf)
            state.limits, state.least, state.stale = None, 0, 0
            if finding.evidence.get("messages") in SPANS[:SHORT_SPANS]:
                # a lone extra message is what this device does: the short spans are
                # not for it
                state.odd = [ODD_LIMIT] * SHORT_SPANS

    def snapshot(self) -> dict[str, Any]:
        """Per-device and per-type span baselines."""
        return {
            "spans": list(SPANS),
            "devices": {d: [s.first_at, [x.to_json() for x in s.spans], s.allow,
                            s.peaks, s.odd, [c.to_json() for c in s.fastest],
                            list(s.held), [list(p) for p in s.pending]]
                        for d, s in self._devices.items()},
            "type_odd": dict(self._type_odd),
            "type_peaks": {t: list(p) for t, p in self._type_peaks.items()},
            "types": {t: [x.to_json() for x in spans] for t, spans in self._types.items()},
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot`` (baselines of other spans than these are dropped)."""
        self._devices.clear()
        self._types.clear()
        self._type_odd.clear()
        self._type_peaks.clear()
        if list(state.get("spans", [])) != list(SPANS):
            return
        for device_id, saved in state.get("devices", {}).items():
            entry = _DeviceRate(float(saved[0]))
            entry.spans = [RobustLog.from_json(x) for x in saved[1]]
            entry.allow = float(saved[2])
            if len(saved) > 3:  # older snapshots kept no extremes
                entry.peaks = [int(x) for x in saved[3]]
                entry.odd = [int(x) for x in saved[4]]
            if len(saved) > 5:  # nor the fastest spans
                entry.fastest = [Ceiling.from_json(x) for x in saved[5]]
            if len(saved) > 6:  # nor the busiest windows held back
                entry.held = [int(x) for x in saved[6]]
                entry.pending = deque((float(at), int(i), int(peak))
                                      for at, i, peak in saved[7])
            else:
                entry.held = list(entry.peaks)
            self._devices[device_id] = entry
        self._types = {t: [RobustLog.from_json(x) for x in spans]
                       for t, spans in state.get("types", {}).items()}
        self._type_odd = {str(t): int(n) for t, n in state.get("type_odd", {}).items()}
        self._type_peaks = {str(t): [int(x) for x in p]
                            for t, p in state.get("type_peaks", {}).items()}
