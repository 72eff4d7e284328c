"""An independent judge of detection accuracy (issue 15).

The detectors are tuned on iotiam.testing.scenarios; this generator judges them and was
never used to tune. ``iotiam.testing.independent_fleet`` was written from
``docs/events.md`` alone, by someone who never read the detectors or their tests: six
device archetypes at sites in three time zones (UTC+1, UTC+2, UTC-5), DHCP churn, site
outages with buffered messages, firmware rollouts in waves, devices joining and
leaving, certificate renewals, and the ten attack kinds after a tuning week.

For every run (seed, fleet size) the engine learns the tuning days in ``learn`` and
judges the rest in ``monitor``; findings are scored per finding type and per attack
kind (``independent_fleet.scoring``). The target, for every kind: precision of its
finding type >= 0.95, recall >= 0.95, worst delay <= 60 s. Kinds that miss it today are
strict xfails, so that a detector fix turns them into an XPASS and the mark is removed.
Run with ``-s`` to see the table.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from detection.builders import SwitchedModes
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import DetectionMode, Event
from iotiam.testing.independent_fleet import KINDS, Fleet, Score, generate, score, timestamp

SMALL, LARGE = 30, 80
#: seeds the detectors were never tuned or diagnosed on; two fleet sizes. Hold-outs of
#: 2026-12-07: the fixes of that day were diagnosed on seeds 9700-9749 (and earlier ones
#: on 7001-7003, 7101-7102, which had been looked at), then these were run once. The
#: later fixes (message_size early in the night, unusual_time with one other device of a
#: type at a site) were diagnosed on 9942 and 9601 only; fresh seeds 9941-9952,
#: 9501-9602 and 9961-9972 then met the target for every kind
RUNS = ((9901, SMALL), (9902, SMALL), (9903, SMALL), (9911, LARGE), (9912, LARGE))
PRECISION, RECALL, WORST_DELAY = 0.95, 0.95, 60.0

#: the kinds that miss the target on main's detectors today (2026-12-07), and how
FAILING_TODAY: dict[str, str] = {}


def make_engine(fleet: Fleet, learning_seconds: float) -> DetectionEngine:
    """The engine as documented, told each device's zone; its modes start in learn."""
    from iotiam.detection.zones import ZoneTable

    return DetectionEngine(learning_seconds=learning_seconds, modes=SwitchedModes(),
                           zones=ZoneTable(fleet.device_zones, default="UTC"))


def judge(seed: int, devices: int) -> Score:
    """Generate one fleet, learn its tuning days, monitor the rest, score the findings."""
    fleet = generate(seed, devices=devices)
    learning, monitored = fleet.split()
    engine = make_engine(fleet, fleet.tuning_end - fleet.start)
    engine.process_many(Event.from_json(event) for event in learning)
    engine.modes.mode = DetectionMode.MONITOR  # type: ignore[attr-defined]
    findings = engine.process_many(Event.from_json(event) for event in monitored)
    return score(fleet.attacks, findings)


@pytest.fixture(scope="module")
def verdict() -> tuple[Score, float]:
    """Every run's score folded into one, and the CPU seconds it took."""
    total = Score()
    started = time.process_time()
    for seed, devices in RUNS:
        total.add(judge(seed, devices))
    return total, time.process_time() - started


def test_table_per_detector_and_attack_kind(verdict: tuple[Score, float],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    total, seconds = verdict
    noisy = Counter((f.type.value, f.device_type) for f in total.false_positives)
    with capsys.disabled():
        print(f"\nindependent fleet, runs (seed, devices) {RUNS}, {seconds:.1f} s CPU")
        print(total.table())
        print("false positives by (finding type, device type):",
              ", ".join(f"{t}/{d}: {n}" for (t, d), n in noisy.most_common(12)) or "none")
    # every kind was tried several times in every run
    for kind in KINDS:
        assert total.by_kind[kind].attacks >= 2 * len(RUNS), kind


@pytest.mark.parametrize("kind", [
    pytest.param(kind, marks=pytest.mark.xfail(strict=True, reason=FAILING_TODAY[kind]))
    if kind in FAILING_TODAY else kind
    for kind in KINDS])
def test_attack_kind_meets_target(verdict: tuple[Score, float], kind: str) -> None:
    total, _ = verdict
    precision, recall, worst = total.kind(kind)
    missed = [(a.device_id or a.source_ip, round(a.start)) for a in total.missed
              if a.kind == kind][:5]
    assert precision >= PRECISION, f"{kind}: precision {precision:.3f}"
    assert recall >= RECALL, f"{kind}: recall {recall:.3f}, missed {missed}"
    assert worst is not None and worst <= WORST_DELAY, f"{kind}: worst delay {worst}"


def test_generator_is_deterministic_and_its_events_parse() -> None:
    short = {"devices": 6, "tuning_days": 2, "monitor_days": 1}
    fleet = generate(424242, **short)
    again = generate(424242, **short)
    assert fleet.events == again.events and fleet.attacks == again.attacks
    assert generate(424243, **short).attacks != fleet.attacks
    times = [Event.from_json(event).at for event in fleet.events]
    assert times == sorted(times) == [timestamp(event) for event in fleet.events]
    assert {"Europe/Berlin", "Europe/Helsinki", "America/New_York"} <= set(fleet.sites.values())
    assert {a.kind for a in fleet.attacks} == set(KINDS)
    assert all(fleet.tuning_end < a.start <= a.end < fleet.end for a in fleet.attacks)
    assert set(fleet.device_types) == set(fleet.device_sites)
    assert {e["device_id"] for e in fleet.events if "device_id" in e} <= set(fleet.device_types)


def _firmware(at: float, device: str, version: str, digest: str) -> Event:
    return Event.from_json({"kind": "connect", "ts": at, "device_id": device,
                            "device_type": "meter", "source_ip": "10.1.10.20",
                            "client_id": device, "firmware_version": version,
                            "firmware_hash": digest})


def _meters_after_an_update() -> DetectionEngine:
    """Three meters that ran 3.1.0 and then 3.2.0 while learning; now monitored."""
    modes = SwitchedModes()
    engine = DetectionEngine(learning_seconds=3600, modes=modes)
    engine.process_many(_firmware(1000 + i * 600, f"m{i % 3}", "3.1.0", "h310")
                        for i in range(100))
    engine.process_many(_firmware(61000 + i * 600, f"m{i % 3}", "3.2.0", "h320")
                        for i in range(100))
    modes.mode = DetectionMode.MONITOR
    return engine


def test_probe_first_forged_hash_is_raised() -> None:
    engine = _meters_after_an_update()
    found = engine.process(_firmware(200_000, "m0", "3.2.0", "f0f0"))
    assert [f.type.value for f in found] == ["firmware_drift"]


def test_probe_rollback_to_an_image_the_device_ran_is_raised() -> None:
    engine = _meters_after_an_update()
    found = engine.process(_firmware(200_000, "m0", "3.1.0", "h310"))
    assert [f.type.value for f in found] == ["firmware_drift"]
