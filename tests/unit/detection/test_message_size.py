"""Message size: payloads far larger than usual."""

from __future__ import annotations

import math
import random

import pytest

from detection.builders import LEARN, T0, event, monitor, publishes, run
from iotiam.detection.detectors import MessageSize
from iotiam.detection.models import Event, EventKind, FindingType


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


def test_ok_two_kinds_of_message_are_judged_each_by_its_own_sizes() -> None:
    """A camera: 50 kB snapshots and 300-byte motion events on another topic."""
    engine = monitor(MessageSize(learning_seconds=LEARN))
    snapshots = publishes("c1", T0, 200, 30.0, size=50_000, device_type="camera")
    motion = [event(EventKind.PUBLISH, s.at + 2, "c1", "camera", topic="devices/c1/motion",
                    size=300 + i % 40) for i, s in enumerate(snapshots[::4])]
    assert run(engine, snapshots + motion) == []
    later = snapshots[-1].at + 30
    big_motion = event(EventKind.PUBLISH, later, "c1", "camera", topic="devices/c1/motion",
                       size=3_000)
    [finding] = run(engine, [big_motion])
    assert finding.evidence["topic"] == "devices/c1/motion"


def test_ok_what_a_device_sends_after_connecting_is_judged_by_what_it_sent_then() -> None:
    """A handheld uploads a sync 4-7x its scan size right after each connect."""
    engine = monitor(MessageSize(learning_seconds=LEARN))
    events = []
    for shift in range(4):
        start = T0 + shift * 4 * 3600
        events.append(event(EventKind.CONNECT, start, "h1", "handheld", source_ip="10.0.0.5"))
        events.append(event(EventKind.PUBLISH, start + 3, "h1", "handheld",
                            topic="devices/h1/data", size=(4 + shift) * 200))
        events += publishes("h1", start + 10, 60, 40.0, size=200, device_type="handheld")
    events = [e if e.topic != "devices/h1/telemetry" else
              event(EventKind.PUBLISH, e.at, "h1", "handheld", topic="devices/h1/data",
                    size=e.size) for e in events]
    assert run(engine, events) == []
    # the same upload away from a connect is not what the device does
    late = events[-1].at + 40
    [finding] = run(engine, [event(EventKind.PUBLISH, late, "h1", "handheld",
                                   topic="devices/h1/data", size=3_000)])
    assert finding.device_id == "h1"


def test_ok_one_large_message_among_eight_does_not_move_their_mean() -> None:
    engine = monitor(MessageSize(learning_seconds=LEARN))
    baseline = publishes("s1", T0, 200, 60.0, size=100)
    once = [event(EventKind.PUBLISH, baseline[-1].at + 60, "s1", topic="devices/s1/telemetry",
                  size=180)]
    after = publishes("s1", baseline[-1].at + 120, 7, 60.0, size=100)
    assert run(engine, baseline + once + after) == []


def test_ok_the_normal_messages_after_an_episode_are_not_a_new_one() -> None:
    """A heartbeat every 15 minutes carried five 20x messages: one episode. The eight
    messages after it still average high with them, but are the device's usual ones."""
    engine = monitor(MessageSize(learning_seconds=LEARN))
    normal = publishes("a1", T0, 4 * 24, 900.0, size=56, device_type="actuator")
    start = normal[-1].at + 900
    big = publishes("a1", start, 5, 900.0, size=1120, device_type="actuator")
    after = publishes("a1", big[-1].at + 900, 12, 900.0, size=56, device_type="actuator")
    findings = run(engine, normal + big + after)
    assert findings and all(f.at < after[0].at for f in findings)
    assert findings[0].at == start


def test_ok_a_message_sent_once_a_shift_is_judged_by_the_largest_it_sent() -> None:
    """A handheld syncs 4-7x its scan size on a topic of its own at each shift start:
    too few syncs for the topic's own baseline, and over a worker's week away the
    ceilings of the device and of its messages after a connect fade to the scans."""
    engine = monitor(MessageSize(learning_seconds=LEARN))
    for day, factor in ((0, 7.0), (1, 5.0), (2, 5.0), (10, 4.0), (18, 6.5)):
        start = T0 + day * 86400
        shift = [event(EventKind.CONNECT, start, "h1", "handheld", source_ip="10.0.0.5"),
                 event(EventKind.PUBLISH, start + 10, "h1", "handheld",
                       topic="devices/h1/sync", size=int(factor * 300))]
        shift += publishes("h1", start + 20, 200, 60.0, size=300, device_type="handheld")
        assert run(engine, shift) == [], day
    # a sync far larger than any it sent is still news
    late = T0 + 19 * 86400
    run(engine, [event(EventKind.CONNECT, late, "h1", "handheld", source_ip="10.0.0.5")])
    [finding] = run(engine, [event(EventKind.PUBLISH, late + 10, "h1", "handheld",
                                   topic="devices/h1/sync", size=30 * 300)])
    assert finding.evidence["topic"] == "devices/h1/sync"


def _camera(device: str, hours: int, rng: random.Random) -> list[Event]:
    """Snapshots every 2 minutes, ~150 kB by day (08-17 UTC) and ~90 kB at night, each
    off by a lognormal 0.2: a wide spread over the day, a narrow one at any hour."""
    out = []
    for i in range(hours * 30):
        at = T0 + i * 120.0
        mean = 150_000 if 8 <= int(at // 3600) % 24 < 17 else 90_000
        out.append(event(EventKind.PUBLISH, at, device, "camera",
                         topic=f"devices/{device}/snapshot",
                         size=int(rng.lognormvariate(math.log(mean), 0.2))))
    return out


@pytest.mark.parametrize(("factor", "expected"), [
    pytest.param(1.0, 0, id="ok"),
    pytest.param(3.0, 0, id="ok/within-twice-the-largest-by-day"),
    pytest.param(5.5, 1, id="fail/exfiltration-5.5x-at-night"),
])
def test_a_snapshot_larger_than_any_of_the_week_by_a_camera_larger_by_day(
        factor: float, expected: int) -> None:
    """Exfiltration on a topic whose sizes follow the time of day: the first 5.5x snapshot
    at night is found (the next ones come minutes later), though its z over the whole
    day's spread is under 8 and it is under twice the largest snapshot of the day:
    it is 3x the largest of the last 8, in a topic known from hundreds of messages."""
    rng = random.Random(5)
    engine = monitor(MessageSize(learning_seconds=LEARN))
    days = _camera("c1", 3 * 24 + 14, rng)  # from Monday 12:00 to Friday 02:00 UTC
    assert run(engine, days) == []
    at = days[-1].at + 120
    found = run(engine, [event(EventKind.PUBLISH, at, "c1", "camera",
                               topic="devices/c1/snapshot", size=int(90_000 * factor))])
    assert len(found) == expected


@pytest.mark.parametrize(("factor", "expected"), [
    pytest.param(1.0, 0, id="ok"),
    pytest.param(2.0, 0, id="ok/twice-the-night-size-is-the-days"),
    pytest.param(5.0, 1, id="fail/exfiltration-5x-two-hours-into-the-night"),
])
def test_early_in_the_night_a_snapshot_is_judged_by_the_nights_sizes(
        factor: float, expected: int) -> None:
    """Two hours into the night the topic's running mean still holds much of the day:
    a 5x night snapshot is under z 5 of the whole day's spread, but the last 8 are the
    night's, and their own spread is narrow."""
    rng = random.Random(7)
    engine = monitor(MessageSize(learning_seconds=LEARN))
    days = _camera("c1", 3 * 24 + 7, rng)  # from Monday 12:00 to Thursday 19:00 UTC
    assert run(engine, days) == []
    found = run(engine, [event(EventKind.PUBLISH, days[-1].at + 120, "c1", "camera",
                               topic="devices/c1/snapshot", size=int(90_000 * factor))])
    assert len(found) == expected


def test_ok_a_gateway_whose_sizes_spread_over_an_order_of_magnitude_at_any_hour() -> None:
    """A gateway relays messages of any size (lognormal 0.9 around 1.5 kB, every
    minute): now and then one is above the largest of the week and 3x the largest of the
    last 8, but its spread around its last 8 is as wide, so it is no news."""
    rng = random.Random(11)
    engine = monitor(MessageSize(learning_seconds=LEARN))
    week = [event(EventKind.PUBLISH, T0 + 60.0 * i, "g1", "gateway", topic="devices/g1/relay",
                  size=int(rng.lognormvariate(math.log(1500), 0.9))) for i in range(4 * 1440)]
    assert run(engine, week) == []
    largest = max(e.size or 0 for e in week)
    odd = event(EventKind.PUBLISH, week[-1].at + 60, "g1", "gateway",
                topic="devices/g1/relay", size=int(largest * 1.3))
    assert run(engine, [odd]) == []


def _shift(device: str, start: float, sync: float) -> list[Event]:
    """A handheld's shift: connect, a sync upload ``sync`` times a scan, 100 scans."""
    return [event(EventKind.CONNECT, start, device, "handheld", source_ip="10.0.0.5"),
            event(EventKind.PUBLISH, start + 8, device, "handheld",
                  topic=f"devices/{device}/sync", size=int(sync * 320)),
            *[event(EventKind.PUBLISH, start + 20 + 70 * i, device, "handheld",
                    topic=f"devices/{device}/scan", size=300 + (i * 37) % 40)
              for i in range(100)]]


@pytest.mark.parametrize(("sync", "expected"), [
    pytest.param(6.0, 0, id="ok/first-sync-as-its-type-uploads"),
    pytest.param(40.0, 1, id="fail/first-upload-far-above-its-types"),
])
def test_a_new_devices_upload_on_connecting_is_judged_by_its_types(
        sync: float, expected: int) -> None:
    """A handheld enrolled while monitored: its first message is its shift's sync upload,
    4-7x a scan. Judged by its type's messages, mostly scans, that is 5x; its type's
    devices upload that much after every connect."""
    engine = monitor(MessageSize(learning_seconds=3 * 86400.0), learning=3 * 86400.0)
    fleet = [e for day in range(4) for k, factor in enumerate((4.0, 5.5, 7.0, 5.0))
             for e in _shift(f"h{k}", T0 + day * 86400 + 60 * k, factor)]
    assert run(engine, fleet) == []
    found = run(engine, _shift("new", T0 + 4 * 86400, sync))
    assert len(found) == expected
    assert all(f.evidence["topic"] == "devices/new/sync" for f in found)


def test_ok_a_device_that_connected_twice_uploads_on_connecting_what_its_type_does() -> None:
    """A handheld past its learning period (hundreds of scans in one shift) that synced
    only on its two connects so far, 3x a scan: its third sync, 7x, is what handhelds
    upload on connecting (a sync's size varies with the work it carries)."""
    engine = monitor(MessageSize(learning_seconds=LEARN))
    fleet = [e for day in range(4) for k, factor in enumerate((4.0, 5.5, 7.0, 5.0))
             for e in _shift(f"h{k}", T0 + day * 86400 + 60 * k, factor)]
    new = [e for day in range(2) for e in _shift("new", T0 + day * 86400 + 600, 3.0)]
    assert run(engine, fleet + new) == []
    assert run(engine, _shift("new", T0 + 2 * 86400 + 600, 7.0)) == []
