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


@pytest.mark.parametrize(("events", "expected"), [
    pytest.param([failure(T0 + 20 * i, None, f"guess-{i}", "45.0.0.1") for i in range(12)],
                 [("source_identities", 8)], id="fail/paced-stuffing-of-unknown-ids"),
    pytest.param([failure(T0 + 20 * i, f"d{i}", f"d{i}", "45.0.0.1") for i in range(12)],
                 [("source_identities", 8)], id="fail/paced-stuffing-of-real-devices"),
    pytest.param([failure(T0 + 100 * i, None, f"guess-{i}", "45.0.0.1") for i in range(12)],
                 [], id="ok/ids-spread-over-more-than-ten-minutes"),
    pytest.param([failure(T0 + 20 * i, None, f"guess-{i}", f"45.0.0.{i}") for i in range(12)],
                 [], id="ok/one-id-per-address"),
    pytest.param([event(EventKind.AUTH_FAILURE, T0 + i, None, source_ip="45.0.0.1")
                  for i in range(8)], [("source_ip", 6)], id="fail/broker-events-address-only"),
])
def test_address_keyed_view(events: list[Event], expected: list[tuple[str, int]]) -> None:
    findings = run(monitor(AuthFailureBurst()), events)
    counted = {"source_identities": "identities", "source_ip": "failures"}
    assert [(f.evidence["scope"], f.evidence[counted[f.evidence["scope"]]])
            for f in findings] == expected
    assert all(f.device_id is None and f.subject == "source:45.0.0.1" for f in findings)


def test_ok_a_forgiven_spread_is_the_addresses_allowance() -> None:
    engine = monitor(AuthFailureBurst())
    [finding] = run(engine, [failure(T0 + 20 * i, None, f"c{i}", "45.0.0.1")
                             for i in range(8)])
    assert finding.evidence["client_ids"] == sorted(f"c{i}" for i in range(8))
    engine.false_positive(finding)
    assert run(engine, [failure(T0 + 3600 + 20 * i, None, f"c{i}", "45.0.0.1")
                        for i in range(8)]) == []
    [wider] = run(engine, [failure(T0 + 7200 + 20 * i, None, f"c{i}", "45.0.0.1")
                           for i in range(9)])
    assert wider.evidence["identities"] == 9
