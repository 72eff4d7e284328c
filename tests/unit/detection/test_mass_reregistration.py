"""Fleet-wide mass re-registration."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, event, monitor, run
from iotiam.detection.detectors import MassReregistration
from iotiam.detection.models import Event, EventKind, FindingType, Severity


def fleet() -> list[Event]:
    return [event(EventKind.CONNECT, T0 + i, f"d{i}", source_ip="10.0.0.2") for i in range(60)]


def enroll(at: float, device: str) -> Event:
    return event(EventKind.ENROLL, at, device, reason="x")


LATER = T0 + LEARN + 100


@pytest.mark.parametrize(("enrollments", "expected"), [
    pytest.param([], [], id="ok"),
    pytest.param([enroll(LATER + 300 * i, f"d{i}") for i in range(10)], [],
                 id="ok/renewals-spread-out"),
    pytest.param([enroll(LATER + i, f"new{i}") for i in range(25)], [],
                 id="ok/batch-of-new-devices"),
    pytest.param([enroll(LATER + 3 * i, f"d{i}") for i in range(12)], [Severity.CRITICAL],
                 id="fail/wave-of-existing-devices"),
    pytest.param([enroll(LATER + i, f"new{i}") for i in range(45)], [Severity.HIGH],
                 id="fail/flood-of-new-devices"),
])
def test_waves(enrollments: list[Event], expected: list[Severity]) -> None:
    findings = run(monitor(MassReregistration(learning_seconds=LEARN)),
                   fleet() + enrollments)
    assert [f.severity for f in findings] == expected
    assert all(f.type is FindingType.MASS_REREGISTRATION and f.device_id is None
               for f in findings)


def test_ok_false_positive_makes_waves_that_size_normal() -> None:
    engine = monitor(MassReregistration(learning_seconds=LEARN))
    [finding] = run(engine, fleet() + [enroll(LATER + i, f"d{i}") for i in range(8)])
    engine.false_positive(finding)
    assert run(engine, [enroll(LATER + 3600 + i, f"d{i}") for i in range(8)]) == []
