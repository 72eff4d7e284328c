"""New destinations (the way out) and lateral movement (internal fan-out)."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, event, monitor, run
from iotiam.detection.detectors import LateralMovement, NewDestination
from iotiam.detection.models import Event, EventKind, FindingType, Severity

PEERS = [("10.0.0.5", 502), ("10.0.0.6", 1883), ("52.1.2.10", 443), ("52.1.2.11", 443)]


def flow(at: float, ip: str, port: int, device: str = "g1") -> Event:
    return event(EventKind.FLOW, at, device, "gateway", dst_ip=ip, dst_port=port)


def normal(device: str = "g1", start: float = T0) -> list[Event]:
    return [flow(start + i * 30, *PEERS[i % len(PEERS)], device=device) for i in range(100)]


def engine_with_both() -> tuple[list[Event], object]:
    engine = monitor(NewDestination(learning_seconds=LEARN),
                     LateralMovement(learning_seconds=LEARN))
    return normal(), engine


@pytest.mark.parametrize(("extra", "expected"), [
    pytest.param([], [], id="ok"),
    pytest.param([("52.1.2.10", 443)], [], id="ok/known-cloud-address"),
    pytest.param([("185.3.4.5", 4444)], [FindingType.NEW_DESTINATION], id="fail/new-public"),
    pytest.param([("10.0.0.77", 22)], [], id="ok/one-new-internal-peer"),
    pytest.param([("10.0.0.77", 22), ("10.0.0.78", 22)], [FindingType.LATERAL_MOVEMENT],
                 id="fail/two-new-internal-peers"),
    pytest.param([("10.0.0.9", p) for p in range(20, 40)],
                 [FindingType.LATERAL_MOVEMENT] * 2, id="fail/port-scan"),  # then escalated
])
def test_destinations(extra: list[tuple[str, int]], expected: list[FindingType]) -> None:
    engine = monitor(NewDestination(learning_seconds=LEARN),
                     LateralMovement(learning_seconds=LEARN))
    base = normal()
    attack = [flow(base[-1].at + 5 + i, ip, port) for i, (ip, port) in enumerate(extra)]
    findings = run(engine, base + attack)
    assert [f.type for f in findings] == expected


def test_fail_scan_is_high_severity_with_the_peers_as_evidence() -> None:
    engine = monitor(LateralMovement(learning_seconds=LEARN))
    base = normal()
    sweep = [flow(base[-1].at + i, f"10.0.1.{i}", 23) for i in range(1, 15)]
    first, scan = run(engine, base + sweep)  # raised at two peers, again as a scan
    assert (first.severity, scan.severity) == (Severity.MEDIUM, Severity.HIGH)
    finding = scan
    assert len(finding.evidence["unknown_peers"]) == 10


def test_ok_another_device_of_the_type_uses_the_address() -> None:
    engine = monitor(NewDestination(learning_seconds=LEARN))
    other = [*normal("g2"), flow(T0 + 100, "52.1.2.12", 443, device="g2")]
    base = normal()
    assert run(engine, other + base + [flow(base[-1].at + 5, "52.1.2.12", 443)]) == []


def test_ok_an_address_many_devices_of_the_fleet_use_is_the_fleets() -> None:
    """A public NTP server three meters use is not new for the only gateway that meets
    it (its type's other devices sit at sites with their own)."""
    engine = monitor(NewDestination(learning_seconds=LEARN))
    meters = [event(EventKind.FLOW, T0 + 60 * i, f"m{i % 3}", "meter", dst_ip="162.159.200.1",
                    dst_port=123) for i in range(30)]
    base = normal()
    assert run(engine, meters + base + [flow(base[-1].at + 5, "162.159.200.1", 123)]) == []
    assert len(run(engine, [flow(base[-1].at + 9, "185.3.4.5", 443)])) == 1


def test_fail_a_new_destination_is_one_finding_however_often_it_is_used() -> None:
    engine = monitor(NewDestination(learning_seconds=LEARN))
    base = normal()
    hourly = [flow(base[-1].at + 3600 * k, "185.3.4.5", 443) for k in range(1, 6)]
    findings = run(engine, base + hourly)
    assert [f.evidence["destination"] for f in findings] == ["185.3.4.5"]
    assert run(engine, [flow(hourly[-1].at + 60, "185.3.4.6", 443)]) != []


def test_ok_false_positive_teaches_the_destination_and_the_peers() -> None:
    engine = monitor(NewDestination(learning_seconds=LEARN),
                     LateralMovement(learning_seconds=LEARN))
    base = normal()
    odd = [flow(base[-1].at + 5, "185.3.4.5", 443), flow(base[-1].at + 6, "10.0.0.77", 22),
           flow(base[-1].at + 7, "10.0.0.78", 22)]
    findings = run(engine, base + odd)
    assert len(findings) == 2
    for finding in findings:
        engine.false_positive(finding)
    later = [flow(e.at + 7200, e.dst_ip or "", e.dst_port or 0) for e in odd]
    assert run(engine, later) == []


def test_fail_young_device_scanning_is_judged_by_its_type() -> None:
    engine = monitor(LateralMovement(learning_seconds=LEARN))
    base = normal()
    newcomer = [flow(base[-1].at + i, *PEERS[i % 2], device="g9") for i in range(3)]
    scan = [flow(base[-1].at + 10 + i, f"10.0.1.{i}", 22, device="g9") for i in range(1, 4)]
    findings = run(engine, base + newcomer + scan)
    assert [(f.type, f.device_id) for f in findings] == [(FindingType.LATERAL_MOVEMENT, "g9")]


def test_ok_a_new_device_polls_its_own_peers_on_its_types_service() -> None:
    """A gateway commissioned at a new plant polls PLCs no other gateway knows, on the
    port every gateway polls on; the same newcomer trying SSH on two hosts is not that."""
    engine = monitor(LateralMovement(learning_seconds=LEARN))
    base = normal()
    plcs = [flow(base[-1].at + i, f"10.7.50.{10 + i}", 502, device="g9") for i in range(4)]
    assert run(engine, base + plcs) == []
    ssh = [flow(plcs[-1].at + 5 + i, f"10.7.60.{i}", 22, device="g9") for i in range(1, 3)]
    assert [f.device_id for f in run(engine, ssh)] == ["g9"]
