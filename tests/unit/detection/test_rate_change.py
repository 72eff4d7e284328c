"""Rate change: a device publishing far faster than its own baseline."""

from __future__ import annotations

import random

import pytest

from detection.builders import LEARN, T0, event, monitor, publishes, run
from iotiam.detection.detectors import RateChange
from iotiam.detection.detectors.rate_change import ODD_LIMIT
from iotiam.detection.models import Event, EventKind, FindingType, Severity


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


def irregular(device: str, start: float, until: float, mean: float, seed: int = 1,
              device_type: str = "actuator") -> list[Event]:
    """An actuator: a heartbeat every ~15 minutes and an ack per command (random)."""
    rng = random.Random(seed)
    out, at = [], start
    while at < until:
        out.append(event(EventKind.PUBLISH, at, device, device_type,
                         topic=f"devices/{device}/heartbeat", size=40))
        at += 900.0 * rng.uniform(0.95, 1.05)
    at = start
    while at < until:
        at += rng.expovariate(1 / mean)
        out.append(event(EventKind.PUBLISH, at, device, device_type,
                         topic=f"devices/{device}/ack", size=20))
    return out


@pytest.mark.parametrize("factor", [pytest.param(60, id="fail/60x"),
                                    pytest.param(73, id="fail/73x"),
                                    pytest.param(112, id="fail/112x")])
def test_fail_flood_on_a_rarely_sending_device_is_found_within_a_minute(factor: int) -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    normal = irregular("a1", T0, T0 + 12 * 3600, mean=1200.0)
    start = T0 + 12 * 3600 + 17
    # the flood's rate is ``factor`` times the device's average (~1 message in 500 s)
    flood = publishes("a1", start, 60, 500.0 / factor, device_type="actuator")
    findings = run(engine, normal + flood)
    assert [f.device_id for f in findings] == ["a1"]
    assert findings[0].at - start <= 60


def test_ok_catch_up_after_an_outage_is_not_a_flood() -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    normal = publishes("m1", T0, 12 * 12, 300.0, device_type="meter")  # every 5 minutes
    back = normal[-1].at + 2 * 3600  # two hours offline: ~24 messages queued
    reconnect = [event(EventKind.DISCONNECT, normal[-1].at + 10, "m1", "meter"),
                 event(EventKind.CONNECT, back, "m1", "meter", source_ip="10.0.0.2")]
    flush = publishes("m1", back + 1, 24, 0.05, device_type="meter")
    after = publishes("m1", back + 300, 12, 300.0, device_type="meter")
    assert run(engine, normal + reconnect + flush + after) == []


def test_fail_flood_right_after_a_short_reconnect_is_still_a_flood() -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    normal = publishes("m1", T0, 12 * 12, 300.0, device_type="meter")
    back = normal[-1].at + 30
    connect = event(EventKind.CONNECT, back, "m1", "meter", source_ip="10.0.0.2")
    flood = publishes("m1", back + 1, 60, 0.5, device_type="meter")
    findings = run(engine, [*normal, connect, *flood])
    assert len(findings) == 1 and findings[0].at - back <= 10


def test_ok_an_extra_message_beside_a_regular_one_is_the_devices_habit() -> None:
    """A camera's snapshot every minute, and now and then a motion event next to one:
    raised at most twice (each time the next snapshot comes on time), it is then what
    the device does, whatever else the hours bring."""
    for learning, every in [(3600.0, 10), (LEARN, 20)]:
        engine = monitor(RateChange(learning_seconds=learning), learning=learning)
        snapshots = publishes("c1", T0, 12 * 60, 60.0, device_type="camera")
        motion = [event(EventKind.PUBLISH, s.at + 1.5, "c1", "camera",
                        topic="devices/c1/motion", size=80) for s in snapshots[5::every]]
        assert len(run(engine, snapshots + motion)) <= ODD_LIMIT


def test_fail_a_sustained_speed_up_is_not_a_lone_extra_message() -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    snapshots = publishes("c1", T0, 200, 60.0, device_type="camera")
    faster = publishes("c1", snapshots[-1].at + 15, 40, 15.0, device_type="camera")
    findings = run(engine, snapshots + faster)
    assert len(findings) == 1 and findings[0].at - faster[0].at <= 60


@pytest.mark.parametrize("factor", [pytest.param(73, id="fail/73x"),
                                    pytest.param(112, id="fail/112x")])
def test_fail_flood_on_a_heartbeat_every_15_minutes_within_a_minute(factor: int) -> None:
    engine = monitor(RateChange(learning_seconds=LEARN))
    normal = publishes("a1", T0, 4 * 24, 900.0, device_type="actuator")
    start = normal[-1].at + 333
    flood = publishes("a1", start, 60, 900.0 / factor, device_type="actuator")
    findings = run(engine, normal + flood)
    assert [f.device_id for f in findings] == ["a1"]
    assert findings[0].at - start <= 60


def _week(device: str, days: int, busy_every: float, quiet_every: float) -> list[Event]:
    """Poisson messages, every ``busy_every`` s on average from 08:00 to 16:00 UTC on
    working days and every ``quiet_every`` s otherwise, for ``days`` days from Monday
    ``T0`` (noon)."""
    rng = random.Random(1)
    out: list[Event] = []
    at = T0
    while at < T0 + days * 86400:
        hour, weekday = int(at // 3600) % 24, int((at - T0 + 12 * 3600) // 86400) % 7
        out.append(event(EventKind.PUBLISH, at, device, "actuator",
                         topic=f"devices/{device}/state", size=90))
        at += rng.expovariate(1 / (busy_every if weekday < 5 and 8 <= hour < 16
                                   else quiet_every))
    return out


def test_ok_monday_morning_after_a_quiet_weekend_is_not_a_speed_up() -> None:
    """Busy on working days, quiet at weekends: Monday morning is judged against the
    fastest the device went on earlier days too, not only the weekend the baseline
    remembers."""
    engine = monitor(RateChange(learning_seconds=86400.0), learning=86400.0)
    assert run(engine, _week("a1", 8, 60.0, 300.0)) == []


def test_fail_a_flood_on_a_monday_morning_is_still_a_flood() -> None:
    engine = monitor(RateChange(learning_seconds=86400.0), learning=86400.0)
    start = T0 + 7 * 86400 - 2 * 3600  # Monday 10:00 UTC
    week = [e for e in _week("a1", 8, 60.0, 300.0) if e.at < start]
    run(engine, week)
    flood = [event(EventKind.PUBLISH, start + i * 3.0, "a1", "actuator",
                   topic="devices/a1/state", size=90) for i in range(100)]
    findings = run(engine, flood)
    assert [f.device_id for f in findings] == ["a1"] and findings[0].at - start <= 60


def test_ok_a_bursty_device_no_faster_than_its_busiest_minute() -> None:
    """A camera whose motion events come in chains: a run of them as fast as its busiest
    minute was is what it does; a flood faster than that is not."""
    rng = random.Random(5)
    snapshots = publishes("c1", T0, 3 * 24 * 30, 120.0, device_type="camera")
    chains = []
    for s in snapshots[5::20]:
        for k in range(rng.randint(1, 8)):
            chains.append(event(EventKind.PUBLISH, s.at + 1.0 + 6.0 * k, "c1", "camera",
                                topic="devices/c1/motion", size=100))
    normal = sorted(snapshots + chains, key=lambda e: e.at)
    engine = monitor(RateChange(learning_seconds=86400.0), learning=86400.0)
    quiet = [f for f in run(engine, normal) if f.at > T0 + 2 * 86400]
    assert quiet == []
    start = normal[-1].at + 60
    flood = publishes("c1", start, 200, 1.0, device_type="camera")
    assert [f.device_id for f in run(engine, flood)] == ["c1"]


def _chains(device: str, days: int) -> list[Event]:
    """A camera: a snapshot every 2 minutes, and after every 20th one a chain of 1-8
    motion events 6 s apart (its busiest 10, 30 and 60 s hold 3, 6 and 9 messages)."""
    rng = random.Random(5)
    snapshots = publishes(device, T0, days * 24 * 30, 120.0, device_type="camera")
    chains = [event(EventKind.PUBLISH, s.at + 1.0 + 6.0 * k, device, "camera",
                    topic=f"devices/{device}/motion", size=100)
              for s in snapshots[5::20] for k in range(rng.randint(1, 8))]
    return sorted(snapshots + chains, key=lambda e: e.at)


@pytest.mark.parametrize("cut", range(0, 32, 3))
def test_fail_a_flood_under_twice_the_busiest_minute_is_found_within_a_minute(
        cut: int) -> None:
    """A flood of ~22 messages a minute on a camera whose busiest minute held 9: its
    own messages are busier windows than the device ever had, and must not raise the
    limits it is judged by before its minute is up, whenever the limits are refreshed
    (``cut``: the flood starts at another point of the refresh cycle)."""
    normal = _chains("c1", 3)
    normal = normal[:len(normal) - cut]
    engine = monitor(RateChange(learning_seconds=86400.0), learning=86400.0)
    run(engine, normal)
    start = normal[-1].at + 60
    flood = publishes("c1", start, 60, 2.7, device_type="camera")
    findings = run(engine, flood)
    assert [f.device_id for f in findings] == ["c1"] and findings[0].at - start <= 60


def test_the_busiest_windows_held_back_survive_a_snapshot() -> None:
    """What a burst taught, but has not yet raised the limits, is saved and restored."""
    detector = RateChange(learning_seconds=86400.0)
    engine = monitor(detector, learning=86400.0)
    normal = _chains("c1", 1)
    run(engine, normal)
    burst = publishes("c1", normal[-1].at + 30, 12, 4.0, device_type="camera")
    run(engine, burst)
    saved = detector.snapshot()
    restored = RateChange(learning_seconds=86400.0)
    restored.restore(saved)
    assert restored.snapshot() == saved
    held = saved["devices"]["c1"][7]
    assert held and all(at > burst[0].at for at, _i, _peak in held)


def test_fail_a_second_flood_on_a_slow_device_is_a_new_finding() -> None:
    """A meter reports every 5 minutes. Its long spans hold a first flood's messages for
    hours afterwards; a second flood 45 minutes later is a new attack all the same."""
    engine = monitor(RateChange(learning_seconds=LEARN))
    normal = publishes("m1", T0, 2 * 288, 300.0, device_type="meter")
    first = publishes("m1", normal[-1].at + 100, 300, 0.4, device_type="meter")
    calm = publishes("m1", first[-1].at + 200, 9, 300.0, device_type="meter")
    second = publishes("m1", calm[-1].at + 150, 300, 0.4, device_type="meter")
    findings = run(engine, normal + first + calm + second)
    assert [f.device_id for f in findings] == ["m1", "m1"]
    assert findings[0].at - first[0].at <= 60 and findings[1].at - second[0].at <= 60
