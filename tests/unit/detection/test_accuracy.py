"""Precision and recall of every detector over labelled scenarios (a real measurement).

Ground truth comes from ``iotiam.testing.scenarios``. A finding is a true positive if
an attack of its type names its device (or, for fleet-wide and address-only attacks,
no device / the same source address) and the finding falls between the attack's start
and ten minutes after its end; any other finding is a false positive. An attack is
detected if a matching finding comes within 60 simulated seconds of its start.
Targets: recall and precision >= 0.95 per detector, over all seeds together.

This is the **tuning** generator: the detectors' thresholds were chosen on it. Each
device is judged in its site's zone (``Scenario.zones``, as ``iotiam serve`` reads the
sites' zones).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import pytest

from iotiam.detection.engine import DetectionEngine, ModeTable
from iotiam.detection.models import DetectionMode, Finding, FindingType
from iotiam.detection.zones import ZoneTable
from iotiam.testing.scenarios import Attack, Scenario, generate

SEEDS = (11, 22, 33, 44)
DEVICES = 120
DETECT_WITHIN = 60.0
TRAILING = 600.0
TARGET = 0.95


def matches(finding: Finding, attack: Attack) -> bool:
    """Whether ``finding`` is about ``attack``."""
    if finding.type is not attack.type:
        return False
    if not attack.start - 1.0 <= finding.at <= attack.end + TRAILING:
        return False
    if attack.device_id is not None and finding.device_id == attack.device_id:
        return True
    if attack.source_ip is not None:
        return finding.evidence.get("source_ip") == attack.source_ip
    return attack.device_id is None and finding.device_id is None


@dataclass
class Tally:
    """Counts of one finding type (attestation's two types are not the engine's)."""

    attacks: int = 0
    detected: int = 0
    findings: int = 0
    true_findings: int = 0
    worst_delay: float = 0.0

    @property
    def recall(self) -> float:
        return self.detected / self.attacks if self.attacks else 1.0

    @property
    def precision(self) -> float:
        return self.true_findings / self.findings if self.findings else 1.0


def score(scenario: Scenario, findings: list[Finding], tallies: dict[FindingType, Tally],
          misses: list[str]) -> None:
    """Add one scenario's outcome to ``tallies``; describe misses and false positives."""
    for attack in scenario.attacks:
        tally = tallies[attack.type]
        tally.attacks += 1
        delays = [f.at - attack.start for f in findings if matches(f, attack)]
        if delays and min(delays) <= DETECT_WITHIN:
            tally.detected += 1
            tally.worst_delay = max(tally.worst_delay, min(delays))
        else:
            late = f" (first after {min(delays):.0f} s)" if delays else ""
            misses.append(f"seed {scenario.seed}: missed {attack.id} on "
                          f"{attack.device_id or attack.source_ip or 'fleet'}: "
                          f"{attack.detail}{late}")
    for finding in findings:
        tally = tallies[finding.type]
        tally.findings += 1
        if any(matches(finding, a) for a in scenario.attacks):
            tally.true_findings += 1
        else:
            misses.append(f"seed {scenario.seed}: false positive {finding.type.value} "
                          f"{finding.device_id}: {finding.summary}")


@pytest.fixture(scope="module")
def outcome() -> tuple[dict[FindingType, Tally], list[str]]:
    tallies: dict[FindingType, Tally] = defaultdict(Tally)
    misses: list[str] = []
    for seed in SEEDS:
        scenario = generate(seed, devices=DEVICES)
        engine = DetectionEngine(learning_seconds=scenario.learning_seconds,
                                 modes=ModeTable(DetectionMode.MONITOR),
                                 zones=ZoneTable(scenario.zones))
        score(scenario, engine.process_many(scenario.events), tallies, misses)
    return tallies, misses


def test_precision_and_recall_per_detector(
        outcome: tuple[dict[FindingType, Tally], list[str]]) -> None:
    tallies, misses = outcome
    print(f"\n{'finding type':22} {'attacks':>7} {'found':>5} {'recall':>7} "
          f"{'findings':>8} {'true':>5} {'precision':>9} {'worst delay':>11}")
    for kind in sorted(tallies, key=lambda k: k.value):
        t = tallies[kind]
        print(f"{kind.value:22} {t.attacks:7} {t.detected:5} {t.recall:7.3f} "
              f"{t.findings:8} {t.true_findings:5} {t.precision:9.3f} {t.worst_delay:9.1f} s")
    print(f"seeds {', '.join(map(str, SEEDS))}")
    for line in misses:
        print("  " + line)
    assert len(tallies) == len(FindingType) - 3, "every detector's kind must be attacked"
    below = {k.value: (round(t.recall, 3), round(t.precision, 3)) for k, t in tallies.items()
             if t.recall < TARGET or t.precision < TARGET}
    assert not below, f"below {TARGET} (recall, precision): {below}"
