"""The engine: modes per type (read from its mode source), routing, false-positive
feedback, stats, snapshot/restore."""

from __future__ import annotations

import json

import pytest

from detection.builders import LEARN, T0, event, monitor, publishes, run
from iotiam.detection.engine import DetectionEngine, ModeTable
from iotiam.detection.models import DetectionMode, Event, EventKind, Finding, FindingType
from iotiam.errors import InvalidInput


def flood(device: str = "s1", device_type: str = "sensor") -> list[Event]:
    """An hour of a sensor every minute, then once a second."""
    normal = publishes(device, T0, 60, 60.0, device_type=device_type)
    return normal + publishes(device, normal[-1].at + 1, 100, 1.0, device_type=device_type)


def test_ok_default_is_learn_and_raises_nothing() -> None:
    engine = DetectionEngine(learning_seconds=LEARN)
    assert engine.modes.mode_of("sensor") is DetectionMode.LEARN
    assert run(engine, flood()) == []
    assert engine.stats.events == 160 and engine.stats.findings == 0


@pytest.mark.parametrize("mode", [DetectionMode.MONITOR, DetectionMode.ENFORCE])
def test_fail_monitor_and_enforce_raise_findings(mode: DetectionMode) -> None:
    engine = DetectionEngine(learning_seconds=LEARN, modes=ModeTable(by_type={"sensor": mode}))
    findings = run(engine, flood())
    assert [f.type for f in findings] == [FindingType.RATE_CHANGE]
    assert engine.stats.findings_by_type == {"rate_change": 1}
    assert engine.stats.events_by_kind == {"publish": 160}


def test_ok_modes_are_per_type() -> None:
    modes = ModeTable(by_type={"sensor": "monitor"})
    engine = DetectionEngine(learning_seconds=LEARN, modes=modes)
    findings = run(engine, flood("s1", "sensor") + flood("c1", "camera"))
    assert [f.device_id for f in findings] == ["s1"]
    assert engine.modes is modes and modes.mode_of("camera") is DetectionMode.LEARN


def test_fail_unknown_mode() -> None:
    with pytest.raises(InvalidInput, match="unknown detection mode 'loud'"):
        ModeTable().set("sensor", "loud")
    with pytest.raises(InvalidInput, match="unknown detection mode 'loud'"):
        ModeTable(by_type={"sensor": "loud"})


class CountingModes(ModeTable):
    """A mode source that counts how often it is asked."""

    def __init__(self, default: DetectionMode) -> None:
        super().__init__(default)
        self.asked = 0

    def mode_of(self, device_type: str | None) -> DetectionMode:
        self.asked += 1
        return super().mode_of(device_type)


def test_ok_engine_asks_its_source_once_per_event_and_keeps_no_modes() -> None:
    """The mode is held once, by the source: asked for every event (a change shows at
    the next one), never copied into the engine or its snapshot."""
    modes = CountingModes(DetectionMode.LEARN)
    engine = DetectionEngine(learning_seconds=LEARN, modes=modes)
    assert run(engine, flood()) == [] and modes.asked == 160
    modes.set("sensor", DetectionMode.MONITOR)
    # ten times faster than the flood it learned (learn mode learns floods too)
    assert run(engine, publishes("s1", T0 + 7200, 60, 0.1)) != []
    assert modes.asked == 220
    assert not {"modes", "default_mode"} & set(engine.snapshot())


def test_ok_learn_mode_still_learns() -> None:
    """A type watched only after it learned is judged by what it learned in learn mode."""
    modes = ModeTable()
    engine = DetectionEngine(learning_seconds=LEARN, modes=modes)
    normal = publishes("s1", T0, 60, 60.0)
    run(engine, normal)
    modes.set("sensor", DetectionMode.MONITOR)
    fast = publishes("s1", normal[-1].at + 1, 10, 1.0)
    assert [f.type for f in run(engine, fast)] == [FindingType.RATE_CHANGE]


def test_ok_false_positive_stops_the_same_behaviour() -> None:
    engine = monitor()
    [finding] = run(engine, flood())
    engine.false_positive(finding)
    again = publishes("s1", T0 + 4 * 3600, 100, 1.0)
    assert run(engine, again) == []


def test_fail_false_positive_of_an_unknown_detector() -> None:
    finding = Finding(FindingType.RATE_CHANGE, 2, T0, "s1", "x", "nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no detector 'nope'"):
        monitor().false_positive(finding)


def test_ok_snapshot_round_trip_keeps_baselines() -> None:
    modes = ModeTable(by_type={"sensor": DetectionMode.ENFORCE})
    engine = DetectionEngine(learning_seconds=LEARN, modes=modes)
    normal = publishes("s1", T0, 60, 60.0)
    connects = [event(EventKind.CONNECT, T0, "s1", source_ip="10.0.0.2",
                      firmware_version="1.0", firmware_hash="h")]
    flows = [event(EventKind.FLOW, T0 + 30 * i, "s1", dst_ip="52.0.0.1", dst_port=443)
             for i in range(20)]
    run(engine, connects + normal + flows)
    state = json.loads(json.dumps(engine.snapshot()))  # JSON-safe
    restored = DetectionEngine.restore(state, modes=modes)
    assert restored.modes is modes
    assert restored.snapshot() == state
    assert restored.stats.events == engine.stats.events
    later = normal[-1].at + 60
    odd = [event(EventKind.FLOW, later, "s1", dst_ip="185.0.0.1", dst_port=443),
           event(EventKind.CONNECT, later, "s1", source_ip="185.0.0.1")]
    assert sorted(f.type for f in run(restored, odd + publishes("s1", later, 10, 1.0))) == [
        FindingType.NEW_DESTINATION, FindingType.RATE_CHANGE, FindingType.UNUSUAL_SOURCE]


def test_ok_restore_reads_a_version_1_file_and_ignores_its_modes() -> None:
    """Baselines saved when the engine kept modes too: the baselines carry on, the saved
    modes are read past (the modes in force are the source's)."""
    engine = DetectionEngine(learning_seconds=LEARN)
    normal = publishes("s1", T0, 60, 60.0)
    run(engine, normal)
    current = engine.snapshot()
    old = {**current, "version": 1, "default_mode": "monitor",
           "modes": {"sensor": "enforce", "camera": "monitor"}}
    learning = ModeTable()
    restored = DetectionEngine.restore(json.loads(json.dumps(old)), modes=learning)
    assert restored.modes is learning
    assert restored.snapshot() == current and restored.snapshot()["version"] == 3
    fast = publishes("s1", normal[-1].at + 1, 10, 1.0)
    assert run(restored, fast) == []  # every type learns, whatever the file said
    watched = DetectionEngine.restore(old, modes=ModeTable(by_type={"sensor": "monitor"}))
    assert [f.type for f in run(watched, fast)] == [FindingType.RATE_CHANGE]


@pytest.mark.parametrize("state", [
    pytest.param({}, id="fail/empty"),
    pytest.param({"version": 99}, id="fail/version"),
    pytest.param({"version": 1, "learning_seconds": 1, "default_mode": "x"}, id="fail/mode"),
    pytest.param({"version": 1, "learning_seconds": 1, "default_mode": "learn",
                  "detectors": {"message_size": {"devices": {"d": [1]}}}}, id="fail/damaged"),
    pytest.param({"version": 2, "detectors": {}}, id="fail/v2-no-learning"),
    pytest.param({"version": 2, "learning_seconds": 1,
                  "detectors": {"message_size": {"devices": {"d": [1]}}}}, id="fail/v2-damaged"),
])
def test_fail_restore_bad_state(state: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        DetectionEngine.restore(state)


def test_fail_duplicate_detector_names() -> None:
    from iotiam.detection.detectors import RateChange
    with pytest.raises(InvalidInput, match="unique"):
        DetectionEngine([RateChange(), RateChange()])


def test_ok_findings_carry_an_episode_gap_scaled_to_the_devices_rhythm() -> None:
    """A device heard every 15 minutes keeps one episode across its quiet spells; one
    heard every minute gets the default gap; findings carry the event's batch."""
    engine = monitor()
    slow = publishes("act-1", T0, 40, 900.0, device_type="actuator")
    fast = publishes("s1", T0, 600, 60.0)
    flows = [event(EventKind.FLOW, T0 + 1800 * i + 5, device, device_type, dst_ip="52.0.0.1",
                   dst_port=443)
             for i in range(20) for device, device_type in (("act-1", "actuator"),
                                                            ("s1", "sensor"))]
    run(engine, slow + fast + flows)
    later = T0 + 40 * 900.0
    odd = [Event(EventKind.FLOW, later, "act-1", "actuator", dst_ip="185.0.0.1",
                 dst_port=443, batch="bat-1"),
           Event(EventKind.FLOW, later, "s1", "sensor", dst_ip="185.0.0.1", dst_port=443)]
    gaps = {f.device_id: (f.episode_gap, f.batch) for f in run(engine, odd)}
    assert gaps["s1"] == (600.0, None)
    assert gaps["act-1"][1] == "bat-1"
    assert 2400 < (gaps["act-1"][0] or 0) < 2800  # three of its ~15-minute gaps


def test_ok_events_with_no_type_follow_the_unknown_entry() -> None:
    stuffing = [Event(EventKind.AUTH_FAILURE, T0 + i, None, client_id=f"c{i}",
                      source_ip="45.0.0.1") for i in range(8)]
    quiet = DetectionEngine(modes=ModeTable(DetectionMode.MONITOR,
                                            {"_unknown": DetectionMode.LEARN}))
    assert run(quiet, stuffing) == []
    watched = DetectionEngine(modes=ModeTable(by_type={"_unknown": DetectionMode.MONITOR}))
    assert [f.subject for f in run(watched, stuffing)] == ["source:45.0.0.1"]
