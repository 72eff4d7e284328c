"""Rate change: a device publishing far faster than its own baseline."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, monitor, publishes, run
from iotiam.detection.detectors import RateChange
from iotiam.detection.models import FindingType, Severity


@pytest.mark.parametrize(("every", "expected"), [
    pytest.param(60.0, 0, id="ok"),
    pytest.param(50.0, 0, id="ok/a-little-faster"),
    pytest.param(20.0, 1, id="fail/3x-faster"),
    pytest.param(1.0, 1, id="fail/60x-faster"),
])
def test_sensor_speed_up(every: float, expected: int) -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    baseline = publishes("s1", T0, 60, 60.0)
    after = publishes("s1", baseline[-1].at + every, 120, every)
    findings = run(engine, baseline + after)
    assert len(findings) == expected  # one per episode, not one per message
    if expected:
        finding = findings[0]
        assert finding.type is FindingType.RATE_CHANGE and finding.device_id == "s1"
        assert finding.at - after[0].at <= 60
        assert finding.evidence["factor"] > 2.5
        assert finding.severity is (Severity.HIGH if every == 1.0 else Severity.MEDIUM)


def test_ok_young_device_of_a_known_type_is_judged_by_the_type() -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    fleet = [e for i in range(10) for e in publishes(f"s{i}", T0, 60, 60.0)]
    newcomer = publishes("new", T0 + 3600, 30, 55.0)
    assert run(engine, fleet + newcomer) == []


def test_fail_young_device_flooding_is_caught_by_the_type_prior() -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    fleet = [e for i in range(10) for e in publishes(f"s{i}", T0, 60, 60.0)]
    newcomer = publishes("new", T0 + 3600, 30, 1.0)
    findings = run(engine, fleet + newcomer)
    assert [f.device_id for f in findings] == ["new"]


def test_ok_false_positive_teaches_the_new_rate() -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    baseline = publishes("s1", T0, 60, 60.0)
    first = publishes("s1", baseline[-1].at + 20, 60, 20.0)
    [finding] = run(engine, baseline + first)
    engine.false_positive(finding)
    again = publishes("s1", first[-1].at + 3600, 60, 20.0)
    assert run(engine, again) == []
