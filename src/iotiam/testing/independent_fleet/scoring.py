"""Score findings against the labelled attacks: precision, recall and delay.

A finding is a true positive when it matches an attack: the same finding type, about
the attacked device (or, for an attack known only by its address, naming that address
in its evidence; for a fleet-wide attack, any finding of the type), raised between one
second before the attack's first record and ten minutes after its last. Everything
else is a false positive. An attack is detected when a matching finding comes within
60 seconds of its start; its delay is that of its first matching finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iotiam.detection.models import Finding
from iotiam.testing.independent_fleet.attacks import KINDS, Attack

BEFORE = 1.0
AFTER = 600.0
DETECT_WITHIN = 60.0


@dataclass
class Tally:
    """Counts for one finding type or one attack kind."""

    findings: int = 0
    true_positives: int = 0
    attacks: int = 0
    detected: int = 0
    #: over the attacks that got any matching finding; None if none did
    worst_delay: float | None = None

    @property
    def precision(self) -> float:
        """True positives among findings (1.0 when there were none)."""
        return self.true_positives / self.findings if self.findings else 1.0

    @property
    def recall(self) -> float:
        """Attacks detected in time among attacks (1.0 when there were none)."""
        return self.detected / self.attacks if self.attacks else 1.0

    def add(self, other: Tally) -> None:
        """Fold another run's counts in."""
        self.findings += other.findings
        self.true_positives += other.true_positives
        self.attacks += other.attacks
        self.detected += other.detected
        if other.worst_delay is not None:
            self.worst_delay = max(self.worst_delay or 0.0, other.worst_delay)

    def delayed(self, delay: float | None) -> None:
        """Count one attack and its delay (None: never matched)."""
        self.attacks += 1
        if delay is None:
            return
        self.worst_delay = max(self.worst_delay or 0.0, delay)
        if delay <= DETECT_WITHIN:
            self.detected += 1


@dataclass
class Score:
    """Tallies per finding type and per attack kind, and the false positives seen."""

    by_type: dict[str, Tally] = field(default_factory=dict)
    by_kind: dict[str, Tally] = field(default_factory=dict)
    #: attack kind -> its finding type
    kind_types: dict[str, str] = field(default_factory=dict)
    false_positives: list[Finding] = field(default_factory=list)
    missed: list[Attack] = field(default_factory=list)

    def add(self, other: Score) -> None:
        """Fold another run in."""
        for mine, theirs in ((self.by_type, other.by_type), (self.by_kind, other.by_kind)):
            for name, tally in theirs.items():
                mine.setdefault(name, Tally()).add(tally)
        self.kind_types.update(other.kind_types)
        self.false_positives += other.false_positives
        self.missed += other.missed

    def kind(self, kind: str) -> tuple[float, float, float | None]:
        """(precision of the kind's finding type, recall, worst delay) of an attack kind."""
        tally = self.by_kind.get(kind, Tally())
        precision = self.by_type.get(self.kind_types.get(kind, ""), Tally()).precision
        return precision, tally.recall, tally.worst_delay

    def table(self) -> str:
        """Both tables as text."""
        def delay(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f}s"

        lines = [f"{'finding type':<20} {'findings':>8} {'TP':>5} {'prec':>6} "
                 f"{'attacks':>7} {'hit':>4} {'recall':>6} {'worst':>8}"]
        for name, t in sorted(self.by_type.items()):
            lines.append(f"{name:<20} {t.findings:>8} {t.true_positives:>5} "
                         f"{t.precision:>6.3f} {t.attacks:>7} {t.detected:>4} "
                         f"{t.recall:>6.3f} {delay(t.worst_delay):>8}")
        lines += ["", f"{'attack kind':<20} {'finding type':<20} {'prec':>6} {'attacks':>7} "
                      f"{'hit':>4} {'recall':>6} {'worst':>8}"]
        for kind in KINDS:
            t = self.by_kind.get(kind, Tally())
            precision, recall, worst = self.kind(kind)
            lines.append(f"{kind:<20} {self.kind_types.get(kind, '?'):<20} {precision:>6.3f} "
                         f"{t.attacks:>7} {t.detected:>4} {recall:>6.3f} {delay(worst):>8}")
        return "\n".join(lines)


def mentions(value: Any, address: str) -> bool:
    """Whether ``address`` appears as a value anywhere in evidence."""
    if isinstance(value, str):
        return re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", value) is not None
    if isinstance(value, Mapping):
        return any(mentions(v, address) for v in value.values())
    if isinstance(value, list | tuple | set | frozenset):
        return any(mentions(v, address) for v in value)
    return False


def matches(attack: Attack, finding: Finding) -> bool:
    """Whether ``finding`` is the detection of ``attack``."""
    if finding.type.value != attack.finding_type:
        return False
    if not attack.start - BEFORE <= finding.at <= attack.end + AFTER:
        return False
    if attack.device_id is not None:
        return finding.device_id == attack.device_id
    if attack.source_ip is not None:
        return mentions(dict(finding.evidence), attack.source_ip) or mentions(
            finding.summary, attack.source_ip)
    return True


def score(attacks: Iterable[Attack], findings: Iterable[Finding]) -> Score:
    """Tally one run."""
    attacks, findings = list(attacks), list(findings)
    result = Score(kind_types={a.kind: a.finding_type for a in attacks})
    for finding in findings:
        tally = result.by_type.setdefault(finding.type.value, Tally())
        tally.findings += 1
        if any(matches(attack, finding) for attack in attacks):
            tally.true_positives += 1
        else:
            result.false_positives.append(finding)
    for attack in attacks:
        times = [f.at for f in findings if matches(attack, f)]
        delay = max(min(times) - attack.start, 0.0) if times else None
        result.by_type.setdefault(attack.finding_type, Tally()).delayed(delay)
        result.by_kind.setdefault(attack.kind, Tally()).delayed(delay)
        if delay is None or delay > DETECT_WITHIN:
            result.missed.append(attack)
    return result
