"""Findings fold only into their own episode (issue 15, class 6): a new attack after the
old one ended is a new finding with its own time; deviceless findings fold per source
address; a device's episode lasts as long as its own rhythm says."""

from __future__ import annotations

import pytest
from fleet import add_device

from conftest import Installation
from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.kernel import SYSTEM

T0 = 1_772_366_400.0


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Response is a use case: it runs on the memory stores."""
    return memory_installation


def finding(device_id: str | None, at: float, *, source_ip: str | None = None,
            gap: float | None = None, severity: Severity = Severity.MEDIUM) -> Finding:
    evidence = {"source_ip": source_ip} if source_ip else {}
    return Finding(FindingType.MESSAGE_SIZE, severity, at, device_id, "big", "message_size",
                   evidence, episode_gap=gap)


def test_ok_a_later_episode_is_a_new_finding_with_its_own_time(
        installation: Installation) -> None:
    add_device(installation.api(), "s1")
    response = installation.services.response
    (first,) = response.handle([finding("s1", T0)])
    assert response.handle([finding("s1", T0 + 300), finding("s1", T0 + 800)]) == []
    # 10 minutes after the episode's last event: over
    (second,) = response.handle([finding("s1", T0 + 1401)])
    assert second.id != first.id and second.finding.at == T0 + 1401
    stored = {f.id: f for f in response.list_findings(SYSTEM, device_id="s1")}
    assert (stored[first.id].repeats, stored[first.id].last_event_at) == (2, T0 + 800)
    assert (stored[second.id].repeats, stored[first.id].finding.at) == (0, T0)


def test_ok_a_slow_devices_episode_spans_its_own_interval(installation: Installation) -> None:
    """An actuator heard every 15 minutes, abnormal at every message: one finding."""
    add_device(installation.api(), "a1")
    response = installation.services.response
    raised = [response.handle([finding("a1", T0 + 900 * i, gap=2700.0)]) for i in range(6)]
    assert [len(r) for r in raised] == [1, 0, 0, 0, 0, 0]
    (only,) = response.list_findings(SYSTEM, device_id="a1")
    assert only.repeats == 5


def test_ok_deviceless_findings_fold_per_source_address(installation: Installation) -> None:
    response = installation.services.response
    raised = response.handle([finding(None, T0, source_ip="203.0.113.9"),
                              finding(None, T0 + 5, source_ip="198.51.100.4"),
                              finding(None, T0 + 9, source_ip="203.0.113.9"),
                              finding(None, T0 + 12)])
    assert sorted(f.finding.subject for f in raised) == [
        "fleet", "source:198.51.100.4", "source:203.0.113.9"]


def test_ok_escalation_stays_in_its_episode(installation: Installation) -> None:
    add_device(installation.api(), "s1")
    response = installation.services.response
    (first,) = response.handle([finding("s1", T0)])
    (worse,) = response.handle([finding("s1", T0 + 60, severity=Severity.HIGH)])
    assert worse.id == first.id
    stored = response.get_finding(SYSTEM, first.id)
    assert (stored.finding.severity, stored.finding.at, stored.last_event_at) == (
        Severity.HIGH, T0, T0 + 60)
    # an older finding's late arrival, outside the live episode: its own finding
    (late,) = response.handle([finding("s1", T0 - 3600)])
    assert late.id != first.id
