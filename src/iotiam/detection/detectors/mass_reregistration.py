"""Fleet-wide mass re-registration: many existing devices enrolling again at once.

Devices re-enroll one at a time (a certificate renewal, a factory reset). Dozens of
existing identities re-enrolling within two minutes means someone is taking the fleet
over (a leaked enrollment secret, a rogue registrar). New devices arriving in a batch
are normal up to a much higher count. Thresholds follow the fleet's own busiest
window seen while learning, so a fleet that renews in waves is judged by its waves.

Each device enrolls from its own address. Several existing identities re-enrolling
from one address within the window is one registrar doing it for all of them (a stolen
enrollment secret at work): that is raised from ``MIN_FROM_ONE_SOURCE`` devices (or
twice the most one address re-enrolled while learning, a NAT'd site's), long before
the fleet-wide count is reached by a slow wave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, Window
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

WINDOW_SECONDS = 120.0
MIN_REENROLLMENTS = 6
MIN_ENROLLMENTS = 40
MIN_FROM_ONE_SOURCE = 4
#: the threshold is at least this many times the busiest normal window
PEAK_FACTOR = 2.0
FLEET = "fleet"
#: a finding names at most this many devices and addresses (its counts are complete)
NAMED = 50
#: one address sending this share of the window's enrollments is the wave's source
ONE_SOURCE_SHARE = 0.8


def _devices(window: Window) -> set[str]:
    """The distinct devices of a window of (device, type, source address) values."""
    return {value[0] for value in window.distinct() if isinstance(value, tuple)}


def _most_from_one_source(window: Window) -> int:
    """The most distinct devices of the window that one known address enrolled."""
    sources = Counter(value[2] for value in window.distinct()
                      if isinstance(value, tuple) and value[2])
    return max(sources.values(), default=0)


class MassReregistration:
    """Enrollments across the fleet (and re-enrollments of known devices) far above baseline."""

    name = "mass_reregistration"
    kinds = frozenset({EventKind.ENROLL, EventKind.CONNECT})

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 900.0) -> None:
        self.learning_seconds = learning_seconds
        self._known: set[str] = set()
        self._again = Window(WINDOW_SECONDS)
        self._all = Window(WINDOW_SECONDS)
        #: busiest normal windows seen: [re-enrollments, enrollments, re-enrollments
        #: from one address]
        self._peak = [0, 0, 0]
        self._cooldown = Cooldown(cooldown)
        self._alarm = False
        self._counted: Event | None = None
        self._first: float | None = None

    def _count(self, event: Event) -> None:
        self._counted = event
        if event.kind is not EventKind.ENROLL or event.device_id is None:
            return
        at = event.at
        value = (event.device_id, event.device_type, event.source_ip)
        self._all.add(at, value)
        if event.device_id in self._known:
            self._again.add(at, value)
        else:
            self._again.advance(at)

    def learn(self, event: Event) -> None:
        """Count the enrollment; while nothing is wrong, the window is a normal one."""
        if event is not self._counted:
            self._count(event)
        if event.device_id is not None:
            self._known.add(event.device_id)
        if self._first is None:
            self._first = event.at
        learning = event.at - self._first < self.learning_seconds
        # the busiest windows while learning are the fleet's normal ones; later ones
        # are not folded in (each would raise the bar a little, and an attack would
        # chase its own threshold up), only taught by a false positive
        if event.kind is EventKind.ENROLL and learning and not self._alarm:
            self._peak[0] = max(self._peak[0], len(_devices(self._again)))
            self._peak[1] = max(self._peak[1], len(self._all))
            self._peak[2] = max(self._peak[2], _most_from_one_source(self._again))
        self._alarm = False

    def __call__(self, event: Event) -> list[Finding]:
        """A fleet finding when (re-)enrollments in the window cross the threshold."""
        self._count(event)
        if event.kind is not EventKind.ENROLL or event.device_id is None:
            return []
        at = event.at
        again = _devices(self._again)
        reenrolled = len(again)
        need_again = max(MIN_REENROLLMENTS, int(PEAK_FACTOR * self._peak[0]) + 1)
        need_all = max(MIN_ENROLLMENTS, int(PEAK_FACTOR * self._peak[1]) + 1)
        need_one = max(MIN_FROM_ONE_SOURCE, int(PEAK_FACTOR * self._peak[2]) + 1)
        if reenrolled < need_again and len(self._all) < need_all \
                and _most_from_one_source(self._again) < need_one:
            return []
        self._alarm = True
        # raised from one address first, again (critical) when the fleet-wide count is met
        severity = Severity.CRITICAL if reenrolled >= need_again else Severity.HIGH
        if not self._cooldown.ready(FLEET, at, severity):
            return []
        values = [v for v in self._all.distinct() if isinstance(v, tuple)]
        types = Counter(str(v[1] or "") for v in values)
        main_type, main_count = types.most_common(1)[0]
        single_type = main_count >= 0.8 * sum(types.values())
        sources = Counter(str(v[2] or "unknown") for v in values)
        evidence: dict[str, Any] = {
            "reenrollments": reenrolled, "enrollments": len(self._all),
            "threshold_reenrollments": need_again, "threshold_enrollments": need_all,
            "by_type": dict(types), "window_s": WINDOW_SECONDS,
            "reenrolled_devices": sorted(again)[:NAMED],
            "devices": sorted({str(v[0]) for v in values})[:NAMED],
            "sources": dict(sources.most_common(NAMED))}
        main_source, source_count = sources.most_common(1)[0]
        if main_source != "unknown" and source_count >= ONE_SOURCE_SHARE * len(values):
            # one address enrolled (nearly) all of them: the wave's findings fold per source
            evidence["source_ip"] = main_source
        return [Finding(
            FindingType.MASS_REREGISTRATION, severity, at, None,
            f"{reenrolled} existing devices re-enrolled and {len(self._all)} enrollments "
            f"in all within {WINDOW_SECONDS:.0f} s (thresholds {need_again} and {need_all})",
            self.name, evidence, main_type if single_type and main_type else None)]

    def forgive(self, finding: Finding) -> None:
        """Waves this large are normal for the fleet from now on."""
        self._peak[0] = max(self._peak[0], int(finding.evidence.get("reenrollments", 0)))
        self._peak[1] = max(self._peak[1], int(finding.evidence.get("enrollments", 0)))
        sources = finding.evidence.get("sources", {})
        if isinstance(sources, Mapping) and sources:
            self._peak[2] = max(self._peak[2], max(int(n) for n in sources.values()))

    def snapshot(self) -> dict[str, Any]:
        """Known devices and the busiest normal windows."""
        return {"known": sorted(self._known), "peak": list(self._peak), "first": self._first}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot``."""
        self._known = {str(d) for d in state.get("known", [])}
        peak = state.get("peak", [0, 0])
        self._peak = [int(peak[0]), int(peak[1]), int(peak[2]) if len(peak) > 2 else 0]
        first = state.get("first")
        self._first = float(first) if first is not None else None
