"""Message size: payloads far larger than usual."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, monitor, publishes, run
from iotiam.detection.detectors import MessageSize
from iotiam.detection.models import FindingType


@pytest.mark.parametrize(("size", "expected"), [
    pytest.param(100, 0, id="ok"),
    pytest.param(150, 0, id="ok/a-little-larger"),
    pytest.param(300, 1, id="fail/3x-larger"),
    pytest.param(50_000, 1, id="fail/exfiltration"),
])
def test_sensor_message_growth(size: int, expected: int) -> None:
    engine = monitor(MessageSize(learning_seconds=LEARN))
    baseline = publishes("s1", T0, 60, 60.0, size=100)
    after = publishes("s1", baseline[-1].at + 60, 30, 60.0, size=size)
    findings = run(engine, baseline + after)
    assert len(findings) == expected
    if expected:
        assert findings[0].type is FindingType.MESSAGE_SIZE
        assert findings[0].at == after[0].at
        assert findings[0].evidence["observed_bytes"] >= size


def test_ok_false_positive_teaches_the_larger_size() -> None:
    engine = monitor(MessageSize(learning_seconds=LEARN))
    baseline = publishes("s1", T0, 60, 60.0, size=100)
    after = publishes("s1", baseline[-1].at + 60, 5, 60.0, size=400)
    [finding] = run(engine, baseline + after)
    engine.false_positive(finding)
    assert run(engine, publishes("s1", after[-1].at + 7200, 5, 60.0, size=400)) == []
