"""Device zones: local hours of the week, the zone table, time of day in a site's zone."""

from __future__ import annotations

import json

import pytest

from detection.builders import LEARN, T0, event, monitor, publishes, run
from iotiam.detection.detectors import FirmwareDrift, UnusualTime
from iotiam.detection.engine import DetectionEngine, ModeTable
from iotiam.detection.models import DetectionMode, Event, EventKind
from iotiam.detection.zones import LocalHours, ZoneTable
from iotiam.errors import InvalidInput

HOUR = 3600.0


@pytest.mark.parametrize(("zone", "at", "expected"), [
    pytest.param("UTC", T0, 12, id="ok/utc-monday-noon"),
    pytest.param("Europe/Berlin", T0, 13, id="ok/berlin-winter"),
    pytest.param("Europe/Berlin", T0 + 30 * 86400, 2 * 24 + 14, id="ok/berlin-summer-time"),
    pytest.param("America/New_York", T0, 7, id="ok/new-york"),
    pytest.param("Asia/Kolkata", T0 + 1800, 18, id="ok/half-hour-zone"),
    pytest.param("Europe/Helsinki", T0 + 6 * 86400 + 12 * HOUR, 2, id="ok/week-wraps"),
])
def test_local_hour_of_the_week(zone: str, at: float, expected: int) -> None:
    assert LocalHours().hour_of_week(zone, at) == expected


def test_zone_table() -> None:
    table = ZoneTable({"d1": "Europe/Berlin"}, default="America/New_York")
    assert table.zone_of("d1").key == "Europe/Berlin"
    assert table.zone_of("other").key == "America/New_York"
    assert table.zone_of(None).key == "America/New_York"
    with pytest.raises(InvalidInput, match="Mars/Olympus"):
        ZoneTable({"d1": "Mars/Olympus"})


def shift(device: str, zone_offset: int, days: range, start: int = 6,
          end: int = 14, base: float = T0 - 12 * HOUR) -> list[Event]:
    """A handheld scanning every 5 minutes from ``start`` to ``end`` local time."""
    return [event(EventKind.PUBLISH, base + d * 86400 + (h - zone_offset) * HOUR
                  + m * 300, device, "handheld", topic="t", size=10)
            for d in days for h in range(start, end) for m in range(12)]


#: Sunday 22 March 2026, 00:00 UTC: a week of winter time in Berlin (UTC+1) follows;
#: summer time (UTC+2) starts on the 29th
WEEK_BEFORE_DST = T0 - 12 * HOUR + 20 * 86400


@pytest.mark.parametrize(("zones", "expected"), [
    pytest.param({"b1": "Europe/Berlin", "b2": "Europe/Berlin", "b3": "Europe/Berlin"}, 0,
                 id="ok/in-the-sites-zone"),
    pytest.param({}, 1, id="fail/judged-in-utc"),
])
def test_a_shift_keeps_its_local_hours_across_summer_time(zones: dict[str, str],
                                                           expected: int) -> None:
    """A week of 06:00-14:00 shifts in Berlin in winter (05-13 UTC); on the Monday after
    the clocks change, 06:30 local is 04:30 UTC: the same hour for the site, an hour
    nobody ever worked in UTC."""
    engine = DetectionEngine([UnusualTime(learning_seconds=LEARN)], learning_seconds=LEARN,
                             modes=ModeTable(DetectionMode.MONITOR), zones=ZoneTable(zones))
    history = shift("b1", 1, range(7), base=WEEK_BEFORE_DST) \
        + shift("b2", 1, range(7), base=WEEK_BEFORE_DST)
    clock = [event(EventKind.PUBLISH, WEEK_BEFORE_DST + 300 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(12 * 24 * 8 + 54)]
    monday = WEEK_BEFORE_DST + 8 * 86400 + 4.5 * HOUR
    first_day = [event(EventKind.PUBLISH, monday, "b3", "handheld", topic="t", size=10)]
    findings = run(engine, history + clock + first_day)
    assert len(findings) == expected
    if expected:
        assert findings[0].evidence["hour_local"] == 4 and findings[0].evidence["zone"] == "UTC"


def test_ok_a_rate_of_a_few_percent_of_the_peak_is_not_quiet() -> None:
    engine = monitor(UnusualTime(learning_seconds=LEARN))
    busy = [e for i in range(8) for e in shift(f"c{i}", 0, range(2), start=8, end=18)]
    # one device works the evening too: 3 an hour, ~3 % of the type's busiest hour (96)
    evening = shift("c9", 0, range(2), start=18, end=22)[::4]
    clock = [event(EventKind.PUBLISH, T0 - 12 * HOUR + 300 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(12 * 24 * 2)]
    late = [event(EventKind.PUBLISH, T0 - 12 * HOUR + 2 * 86400 + 20.5 * HOUR, "c1",
                  "handheld", topic="t", size=10)]
    assert run(engine, busy + evening + clock + late) == []


def test_ok_restore_reads_version_2_detector_state() -> None:
    """A snapshot saved before hours of the week, sizes per topic and rate extremes."""
    engine = monitor(learning=LEARN)
    run(engine, publishes("s1", T0, 120, 60.0))
    state = json.loads(json.dumps(engine.snapshot()))
    old = {**state, "version": 2}
    detectors = old["detectors"]
    detectors["unusual_time"] = {"clock": T0, "exposure": [3600.0] * 24,
                                 "devices": {"s1": [T0, 120, [5] * 24]},
                                 "types": {"sensor": [T0, 120, [5] * 24]},
                                 "type_offset": {"sensor": [0.0] * 24}}
    detectors["message_size"] = {"devices": {"s1": [T0, [4.6, 0.01, 120], 0.0]},
                                 "types": {"sensor": [4.6, 0.01, 120]}}
    rate = detectors["rate_change"]
    rate["devices"] = {d: v[:3] for d, v in rate["devices"].items()}
    restored = DetectionEngine.restore(old, modes=ModeTable(DetectionMode.MONITOR))
    assert restored.snapshot()["version"] == 3
    later = T0 + 120 * 60 + 60
    big = [event(EventKind.PUBLISH, later, "s1", topic="devices/s1/telemetry", size=5_000)]
    assert [f.type.value for f in run(restored, big)] == ["message_size"]


def test_fail_rollback_to_a_version_the_device_ran_before() -> None:
    engine = monitor(FirmwareDrift(learning_seconds=LEARN))
    fleet = [event(EventKind.CONNECT, T0 + i, f"d{i}", firmware_version="1.2.0",
                   firmware_hash="h12") for i in range(5)]
    update = [event(EventKind.CONNECT, T0 + 300 + i, f"d{i}", firmware_version="1.3.0",
                    firmware_hash="h13") for i in range(5)]
    back = [event(EventKind.CONNECT, T0 + LEARN + 600, "d3", firmware_version="1.2.0",
                  firmware_hash="h12")]
    [finding] = run(engine, fleet + update + back)
    assert finding.device_id == "d3" and finding.evidence["shape"] == "rollback"
    assert "ran before" in finding.summary


@pytest.mark.parametrize(("start", "expected"), [
    pytest.param(6.5, 0, id="ok/a-new-early-shift-where-one-device-works-late"),
    pytest.param(9.5, 0, id="ok/later-in-that-first-shift"),
    pytest.param(2.5, 1, id="fail/the-night-no-handheld-works-anywhere"),
])
def test_one_other_device_is_not_its_types_habit_at_a_site(start: float,
                                                             expected: int) -> None:
    """Handhelds in Berlin work 06-14 (three of them) and 14-22 (one); the only handheld
    in Helsinki works 14-22. A second Helsinki handheld starts on the early shift after
    the learning period: one late worker's quiet mornings are not the type's at that
    site, so its mornings are judged by the type's local hours in every zone (busy), and
    its nights still by them (quiet everywhere)."""
    learning = 3 * 86400.0
    zones = {d: "Europe/Berlin" for d in ("b1", "b2", "b3", "b4")}
    zones |= {"h1": "Europe/Helsinki", "h2": "Europe/Helsinki"}
    engine = DetectionEngine([UnusualTime(learning_seconds=learning)],
                             learning_seconds=learning, modes=ModeTable(DetectionMode.MONITOR),
                             zones=ZoneTable(zones))
    days = range(4)
    history = shift("b1", 1, days) + shift("b2", 1, days) + shift("b3", 1, days) \
        + shift("b4", 1, days, start=14, end=22) + shift("h1", 2, days, start=14, end=22)
    clock = [event(EventKind.PUBLISH, T0 - 12 * HOUR + 300 * i, "s1", "sensor", topic="t",
                   size=1) for i in range(12 * 24 * 5)]
    # day 4, Helsinki (UTC+2) local time: an hour of work from ``start``
    first = T0 - 12 * HOUR + 4 * 86400 + (start - 2) * HOUR
    work = [event(EventKind.PUBLISH, first + 300 * m, "h2", "handheld", topic="t", size=10)
            for m in range(12)]
    findings = run(engine, history + clock + work)
    assert [f.device_id for f in findings] == ["h2"] * expected
