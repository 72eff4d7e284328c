"""Impossible location (networks) and impossible time (quiet hours of the type)."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, SwitchedModes, event, monitor, run
from iotiam.detection.detectors import UnusualSource, UnusualTime
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import DetectionMode, Event, EventKind, FindingType, Severity


def connect(at: float, ip: str, device: str = "d1", device_type: str = "sensor") -> Event:
    return event(EventKind.CONNECT, at, device, device_type, source_ip=ip)


def fleet_connects() -> list[Event]:
    return [connect(T0 + 10 * i + 3600 * k, f"10.{i % 2}.1.{i + 2}", f"d{i}")
            for i in range(1, 6) for k in range(3)]


@pytest.mark.parametrize(("ip", "expected"), [
    pytest.param("10.1.1.2", None, id="ok"),
    pytest.param("10.1.1.200", None, id="ok/dhcp-same-24"),
    pytest.param("10.0.1.9", Severity.MEDIUM, id="fail/another-site-of-the-type"),
    pytest.param("185.3.4.5", Severity.HIGH, id="fail/foreign-network"),
])
def test_source_networks(ip: str, expected: Severity | None) -> None:
    engine = monitor(UnusualSource(learning_seconds=LEARN))
    findings = run(engine, [*fleet_connects(), connect(T0 + 4 * 3600, ip)])
    assert [f.severity for f in findings] == ([expected] if expected else [])
    if expected:
        assert findings[0].type is FindingType.UNUSUAL_SOURCE
        assert findings[0].evidence["network"].endswith(".0/24")


def learned(events: list[Event]) -> DetectionEngine:
    """An engine that learned ``events`` in learn mode and now monitors."""
    modes = SwitchedModes()
    engine = DetectionEngine([UnusualSource(learning_seconds=LEARN)], learning_seconds=LEARN,
                             modes=modes)
    run(engine, events)
    modes.mode = DetectionMode.MONITOR
    return engine


def handhelds() -> list[Event]:
    """Handhelds h1-h4 at site 10.2, each shift on a new lease of a Wi-Fi /22
    (10.2.64.0-10.2.67.255), h1 on 64 and 67 only."""
    leases = {"h1": (64, 67), "h2": (64, 65), "h3": (65, 66), "h4": (66, 67)}
    return [connect(T0 + 3600 * k + i, f"10.2.{nets[k % 2]}.{10 + k}", device, "handheld")
            for k in range(6) for i, (device, nets) in enumerate(leases.items())]


@pytest.mark.parametrize(("device", "ip", "found"), [
    pytest.param("h1", "10.2.65.9", False, id="ok/a-24-of-the-type-at-its-site"),
    pytest.param("h2", "10.2.67.9", False, id="ok/another-24-of-the-type-at-its-site"),
    pytest.param("h1", "10.1.64.9", True, id="fail/the-same-24-at-another-site"),
    pytest.param("h1", "10.2.80.9", True, id="fail/a-24-its-type-never-used"),
    pytest.param("h1", "91.2.3.4", True, id="fail/the-internet"),
])
def test_roaming_within_the_scope_of_its_site(device: str, ip: str, found: bool) -> None:
    engine = learned(handhelds())
    findings = run(engine, [connect(T0 + 8 * 3600, ip, device, "handheld")])
    assert [f.device_id for f in findings] == ([device] if found else [])


def test_ok_roaming_within_the_22_its_own_networks_span() -> None:
    """h1 used 10.2.64 and 10.2.67: 10.2.66 is in its /22 even if no handheld used it."""
    engine = learned([connect(T0 + 3600 * k, f"10.2.{(64, 67)[k % 2]}.9", "h1", "handheld")
                      for k in range(4)])
    assert run(engine, [connect(T0 + 5 * 3600, "10.2.66.9", "h1", "handheld")]) == []
    assert run(engine, [connect(T0 + 6 * 3600, "10.2.68.9", "h1", "handheld")]) != []


def test_ok_the_first_device_of_its_type_at_a_site_of_the_fleet() -> None:
    engine = monitor(UnusualSource(learning_seconds=LEARN))
    others = [connect(T0 + 3600 * k, "10.3.10.5", "m1", "meter") for k in range(3)]
    gateways = [connect(T0 + 3600 * k, "10.1.30.5", "g1", "gateway") for k in range(3)]
    newcomer = connect(T0 + 4 * 3600, "10.3.30.7", "g2", "gateway")
    assert run(engine, [*others, *gateways, newcomer]) == []


def test_ok_false_positive_teaches_the_network() -> None:
    engine = monitor(UnusualSource(learning_seconds=LEARN))
    [finding] = run(engine, [*fleet_connects(), connect(T0 + 4 * 3600, "185.3.4.5")])
    engine.false_positive(finding)
    assert run(engine, [connect(T0 + 6 * 3600, "185.3.4.77")]) == []


def shifts(days_hours: range, devices: int = 5) -> list[Event]:
    """Controllers active every 5 minutes in the given hours of the first day."""
    return [event(EventKind.PUBLISH, T0 - 12 * 3600 + h * 3600 + m * 300 + d, f"c{d}",
                  "controller", topic="t", size=10)
            for d in range(devices) for h in days_hours for m in range(12)]


@pytest.mark.parametrize(("hour", "device", "expected"), [
    pytest.param(15, "c1", 0, id="ok"),
    pytest.param(17, "c1", 0, id="ok/inside-the-types-hours"),
    pytest.param(21, "c1", 1, id="fail/night"),
    pytest.param(21, "new", 1, id="fail/night-new-device-of-the-type"),
])
def test_hours(hour: int, device: str, expected: int) -> None:
    engine = monitor(UnusualTime(learning_seconds=LEARN))
    day = shifts(range(8, 18))
    # the fleet clock runs through the evening on another type's traffic
    clock = [event(EventKind.PUBLISH, T0 + 6 * 3600 + 60 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(4 * 60)]
    odd = event(EventKind.PUBLISH, T0 - 12 * 3600 + hour * 3600 + 1800, device, "controller",
                topic="t", size=10)
    findings = run(engine, day + clock + [odd])
    assert len(findings) == expected
    if expected:
        assert findings[0].type is FindingType.UNUSUAL_TIME
        assert findings[0].evidence["hour_local"] == hour


@pytest.mark.parametrize(("minutes", "expected"), [
    pytest.param(18 * 60 + 5, 0, id="ok/just-after-the-shift"),
    pytest.param(18 * 60 + 30, 1, id="fail/half-an-hour-after-the-shift"),
    pytest.param(24 * 60 + 7 * 60 + 52, 0, id="ok/just-before-the-next-shift"),
    pytest.param(24 * 60 + 7 * 60 + 30, 1, id="fail/half-an-hour-before-the-next-shift"),
    pytest.param(24 * 60 + 6 * 60 + 50, 1, id="fail/before-the-edge-of-the-hour-before"),
])
def test_the_edges_of_a_shift_are_not_its_night(minutes: int, expected: int) -> None:
    """Controllers busy 08:00-18:00 (the next day's 08:00 not watched yet): one a few
    minutes outside the shift is at its edge, not in the night."""
    engine = monitor(UnusualTime(learning_seconds=LEARN))
    day = shifts(range(8, 18))
    clock = [event(EventKind.PUBLISH, T0 - 12 * 3600 + 60 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(32 * 60)]
    odd = event(EventKind.PUBLISH, T0 - 12 * 3600 + minutes * 60, "c1", "controller",
                topic="t", size=10)
    findings = run(engine, [*sorted(day + clock, key=lambda e: e.at), odd])
    assert len(findings) == expected


def test_fail_a_types_hours_are_known_after_three_days_of_a_long_learning() -> None:
    """A type that works by day shows its first event hours after the fleet's: with a
    learning period of days, its nights are judged once it was watched for three."""
    learning = 5 * 86400.0
    engine = monitor(UnusualTime(learning_seconds=learning), learning=learning)
    days = [e for k in range(4) for e in shifts(range(8 + 24 * k, 18 + 24 * k))]
    clock = [event(EventKind.PUBLISH, T0 - 12 * 3600 + 60 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(5 * 24 * 60)]
    odd = event(EventKind.PUBLISH, T0 - 12 * 3600 + 4 * 86400 + 2 * 3600, "c1", "controller",
                topic="t", size=10)
    findings = run(engine, [*sorted(days + clock, key=lambda e: e.at), odd])
    assert [f.device_id for f in findings] == ["c1"]


def test_ok_a_type_working_around_the_clock_is_never_odd() -> None:
    engine = monitor(UnusualTime(learning_seconds=LEARN))
    events = [event(EventKind.PUBLISH, T0 + 60 * i, f"s{i % 3}", "sensor", topic="t", size=1)
              for i in range(60 * 30)]
    assert run(engine, events) == []


def _shift_day(device: str, day: int, start: float, end: float) -> list[Event]:
    """A handheld publishing every 5 minutes from ``start`` to ``end`` (UTC hours) of
    ``day`` (day 0: Monday 2 March 2026)."""
    base = T0 - 12 * 3600 + day * 86400
    return [event(EventKind.PUBLISH, base + start * 3600 + m * 300, device, "handheld",
                  topic="t", size=10)
            for m in range(int((end - start) * 12))]


def test_ok_a_day_away_does_not_make_an_hour_of_the_week_quiet() -> None:
    """The only late-shift worker (14-22) is away on Saturday: an early-shift worker
    back from a break at 14:30 that day is in the late shift's hours, not in a quiet
    hour; that Saturday's 14:00 was watched once, and on every other day it is busy."""
    engine = monitor(UnusualTime(learning_seconds=LEARN))
    days = [e for day in range(5) for e in
            _shift_day("early", day, 6, 14) + _shift_day("late", day, 14, 22)]
    saturday = _shift_day("early", 5, 6, 14) + _shift_day("early", 5, 14.5, 14.75)
    clock = [event(EventKind.PUBLISH, T0 - 12 * 3600 + 60 * i, "m1", "meter", topic="t",
                   size=1) for i in range(6 * 24 * 60)]
    assert run(engine, [*days, *saturday, *clock]) == []
    # the same hour of the night is quiet by every day's history
    night = _shift_day("early", 5, 23.25, 23.5)
    assert [f.device_id for f in run(engine, night)] == ["early"]


def test_fail_a_second_night_session_after_a_pause_is_a_new_finding() -> None:
    """Controllers work 08-18; one is used at 02:10 for ten minutes, then again at 03:05
    (45 minutes later): two intrusions, two findings."""
    engine = monitor(UnusualTime(learning_seconds=LEARN))
    day = shifts(range(8, 18))
    clock = [event(EventKind.PUBLISH, T0 - 12 * 3600 + 60 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(28 * 60)]
    first = [event(EventKind.PUBLISH, T0 + 12 * 3600 + 2 * 3600 + 600 + 60 * i, "c1",
                   "controller", topic="t", size=10) for i in range(10)]
    second = [event(EventKind.PUBLISH, first[-1].at + 45 * 60 + 60 * i, "c1", "controller",
                    topic="t", size=10) for i in range(10)]
    findings = run(engine, [*day, *clock, *first, *second])
    assert [f.at for f in findings] == [first[0].at, second[0].at]
