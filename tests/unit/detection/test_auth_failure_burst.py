"""Auth-failure bursts per identity and per source address."""

from __future__ import annotations

import pytest

from detection.builders import T0, event, monitor, run
from iotiam.detection.detectors import AuthFailureBurst
from iotiam.detection.models import Event, EventKind, FindingType


def failure(at: float, device: str | None, client: str, ip: str) -> Event:
    return event(EventKind.AUTH_FAILURE, at, device, client_id=client, source_ip=ip,
                 reason="bad certificate")


@pytest.mark.parametrize(("events", "expected"), [
    pytest.param([], [], id="ok"),
    pytest.param([failure(T0 + 30 * i, "d1", "d1", "10.0.0.2") for i in range(20)], [],
                 id="ok/expired-certificate-retrying"),
    pytest.param([failure(T0 + i, "d1", "d1", f"45.0.0.{i}") for i in range(8)],
                 [("identity", "d1")], id="fail/one-device-many-addresses"),
    pytest.param([failure(T0 + i, None, f"c{i}", "45.0.0.1") for i in range(8)],
                 [("source_ip", None)], id="fail/credential-stuffing"),
    pytest.param([failure(T0 + i, "d1", "d1", "45.0.0.1") for i in range(8)],
                 [("identity", "d1"), ("source_ip", "d1")], id="fail/brute-force"),
])
def test_bursts(events: list[Event], expected: list[tuple[str, str | None]]) -> None:
    findings = run(monitor(AuthFailureBurst()), events)
    assert [(f.evidence["scope"], f.device_id) for f in findings] == expected
    assert all(f.type is FindingType.AUTH_FAILURE_BURST for f in findings)


def test_ok_false_positive_raises_the_threshold_for_that_address() -> None:
    engine = monitor(AuthFailureBurst())
    burst = [failure(T0 + i, None, f"c{i}", "45.0.0.1") for i in range(8)]
    [finding] = run(engine, burst)
    engine.false_positive(finding)
    again = [failure(T0 + 3600 + i, None, f"c{i}", "45.0.0.1") for i in range(8)]
    assert run(engine, again) == []
