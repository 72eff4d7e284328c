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


def test_ok_evidence_names_the_devices_and_their_sources() -> None:
    wave = [event(EventKind.ENROLL, LATER + 3 * i, f"d{i}", source_ip="203.0.113.5")
            for i in range(11)]
    wave.append(event(EventKind.ENROLL, LATER + 40, "d11", source_ip="10.0.0.9"))
    # raised at four from one address, escalated at six (the fleet-wide threshold)
    first, finding = run(monitor(MassReregistration(learning_seconds=LEARN)), fleet() + wave)
    assert (first.severity, finding.severity) == (Severity.HIGH, Severity.CRITICAL)
    assert first.evidence["reenrolled_devices"] == sorted(f"d{i}" for i in range(4))
    evidence = finding.evidence
    assert evidence["reenrolled_devices"] == sorted(f"d{i}" for i in range(6))
    assert evidence["sources"] == {"203.0.113.5": 6}
    # (nearly) all from one address: the finding is about that source
    assert evidence["source_ip"] == "203.0.113.5"
    assert finding.subject == "source:203.0.113.5"


def test_ok_a_wave_from_many_addresses_is_the_fleets() -> None:
    wave = [event(EventKind.ENROLL, LATER + 3 * i, f"d{i}", source_ip=f"10.1.0.{i}")
            for i in range(12)]
    [finding] = run(monitor(MassReregistration(learning_seconds=LEARN)), fleet() + wave)
    assert "source_ip" not in finding.evidence and finding.subject == "fleet"
    assert len(finding.evidence["sources"]) == 6


@pytest.mark.parametrize(("sources", "found"), [
    pytest.param([f"10.0.1.{i}" for i in range(5)], False, id="ok/five-from-their-own"),
    pytest.param(["185.3.4.5"] * 5, True, id="fail/five-from-one-address"),
])
def test_existing_devices_re_enrolled_from_one_address(sources: list[str],
                                                       found: bool) -> None:
    """Five existing devices re-enrolling over 100 s is no fleet-wide wave, but one
    address enrolling all five is a registrar at work: raised by the fourth."""
    waves = [event(EventKind.ENROLL, LATER + 25 * i, f"d{i}", source_ip=ip, reason="x")
             for i, ip in enumerate(sources)]
    findings = run(monitor(MassReregistration(learning_seconds=LEARN)), fleet() + waves)
    assert bool(findings) is found
    if found:
        assert findings[0].at == waves[3].at
        assert findings[0].evidence["source_ip"] == "185.3.4.5"
