"""Firmware drift: tampered images, rollbacks, lone unknown versions; rollouts are fine."""

from __future__ import annotations

import pytest

from detection.builders import LEARN, T0, SwitchedModes, event, monitor, run
from iotiam.detection.detectors import FirmwareDrift
from iotiam.detection.detectors.firmware_drift import CONSENSUS_SECONDS, version_key
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import DetectionMode, Event, EventKind, FindingType, Severity


def connect(at: float, device: str, version: str, digest: str) -> Event:
    return event(EventKind.CONNECT, at, device, firmware_version=version, firmware_hash=digest)


def fleet() -> list[Event]:
    return [connect(T0 + i, f"d{i}", "1.2.0" if i < 2 else "1.3.0", "h12" if i < 2 else "h13")
            for i in range(10)]


LATER = T0 + LEARN + 100


@pytest.mark.parametrize(("reports", "expected"), [
    pytest.param([("d5", "1.3.0", "h13")], [], id="ok"),
    pytest.param([("d0", "1.3.0", "h13")], [], id="ok/catching-up"),
    pytest.param([(f"d{i}", "1.4.0", "h14") for i in range(10)], [], id="ok/rollout"),
    pytest.param([("d5", "1.3.0", "evil")], [("tampered", Severity.CRITICAL)],
                 id="fail/tampered"),
    pytest.param([("d5", "1.2.0", "h12")], [("rollback", Severity.HIGH)], id="fail/rollback"),
    # SemVer: a pre-release sorts before its release, so booting it is going back
    pytest.param([("d5", "1.3.0-dev", "x")], [("rollback", Severity.HIGH)],
                 id="fail/prerelease-of-the-running-version"),
    pytest.param([("d0", "1.3.0-custom7", "x")], [("unknown_version", Severity.HIGH)],
                 id="fail/custom-build-older-than-the-type-runs"),
])
def test_drift(reports: list[tuple[str, str, str]], expected: list[tuple[str, Severity]]
               ) -> None:
    engine = monitor(FirmwareDrift(learning_seconds=LEARN))
    later = [connect(LATER + 5 * i, *r) for i, r in enumerate(reports)]
    # any later event closes a pending report's consensus window
    tick = [event(EventKind.PUBLISH, LATER + 50, "d9", topic="t", size=1)]
    findings = run(engine, fleet() + later + tick)
    assert [(f.evidence["shape"], f.severity) for f in findings] == expected
    assert all(f.type is FindingType.FIRMWARE_DRIFT for f in findings)
    assert all(f.at - LATER <= 60 for f in findings)


def test_lone_newer_version_waits_for_its_rollout() -> None:
    """A newer version on one device is a finding only when no other device of the type
    reports it within the consensus window (hours: rollouts go out in waves); a second
    device reporting it even after that makes it the type's."""
    engine = monitor(FirmwareDrift(learning_seconds=LEARN))
    run(engine, fleet())
    assert run(engine, [connect(LATER, "d5", "1.4.0", "h14"),
                        connect(LATER + 1800, "d6", "1.4.0", "h14")]) == []
    [late] = run(engine, [connect(LATER + 10, "d7", "1.5.0", "h15"),
                          event(EventKind.PUBLISH, LATER + CONSENSUS_SECONDS + 20, "d9",
                                topic="t", size=1)])
    assert (late.device_id, late.evidence["shape"]) == ("d7", "unknown_version")
    assert run(engine, [connect(LATER + CONSENSUS_SECONDS + 60, "d8", "1.5.0", "h15"),
                        connect(LATER + CONSENSUS_SECONDS + 90, "d9", "1.5.0", "h15")]) == []


@pytest.mark.parametrize("tamper_first", [True, False], ids=["before-the-wave", "in-the-wave"])
def test_fail_tampered_build_of_a_version_being_rolled_out(tamper_first: bool) -> None:
    """A version still in its rollout window is not yet the type's, so a device reporting
    it with another hash cannot be judged against it at once; the moment the rollout is
    agreed (its second device), the other build of that version is a tampered one, not a
    lone version to wait hours for."""
    engine = monitor(FirmwareDrift(learning_seconds=LEARN))
    run(engine, fleet())
    evil = [connect(LATER, "d5", "1.4.0", "evil")]
    wave = [connect(LATER + 30, "d6", "1.4.0", "h14"), connect(LATER + 40, "d7", "1.4.0", "h14")]
    findings = run(engine, evil + wave if tamper_first else wave[:1] + evil + wave[1:])
    assert [(f.device_id, f.evidence["shape"], f.severity) for f in findings] == [
        ("d5", "tampered", Severity.CRITICAL)]
    assert findings[0].at == LATER + 40  # found when the rollout was agreed
    # the window closing later adds nothing: the build was judged
    assert run(engine, [event(EventKind.PUBLISH, LATER + CONSENSUS_SECONDS + 60, "d9",
                              topic="t", size=1)]) == []


def test_fail_a_second_build_of_a_version_on_the_same_device() -> None:
    """The first device of a rollout reports the new version, then the same version with
    another hash: found at once, not when the rollout's window closes."""
    engine = monitor(FirmwareDrift(learning_seconds=LEARN))
    run(engine, fleet())
    findings = run(engine, [connect(LATER, "d5", "1.4.0", "h14"),
                            connect(LATER + 1500, "d5", "1.4.0", "evil")])
    assert [(f.device_id, f.evidence["shape"], f.at) for f in findings] == [
        ("d5", "tampered", LATER + 1500)]
    # the rollout itself is still welcome
    assert run(engine, [connect(LATER + 1800, "d6", "1.4.0", "h14")]) == []


def test_version_order_is_semver() -> None:
    assert version_key("2.4.1-dev33") < version_key("2.4.1") < version_key("2.10.0")
    assert version_key("v2.10.1-rc1") < version_key("v2.10.1-rc2") < version_key("2.10.1")
    assert version_key("1.0.0+build.5") == version_key("1.0.0")


def test_ok_false_positive_makes_the_image_known() -> None:
    engine = monitor(FirmwareDrift(learning_seconds=LEARN))
    [finding] = run(engine, [*fleet(), connect(LATER, "d5", "1.3.0", "evil")])
    engine.false_positive(finding)
    assert run(engine, [connect(LATER + 3600, "d6", "1.3.0", "evil")]) == []


@pytest.mark.parametrize(("report", "shape"), [
    pytest.param(("d5", "1.3.0", "evil"), "tampered", id="fail/tampered"),
    pytest.param(("d5", "1.2.0", "h12"), "rollback", id="fail/rollback"),
])
def test_drift_fail_judged_from_the_first_report_after_learn_mode(
        report: tuple[str, str, str], shape: str) -> None:
    """A type that spent its learning in learn mode is not young again once monitored:
    the first tampered image or rollback after the switch is raised, not learned."""
    modes = SwitchedModes()
    engine = DetectionEngine([FirmwareDrift(learning_seconds=LEARN)],
                             learning_seconds=LEARN, modes=modes)
    run(engine, fleet() + [connect(T0 + LEARN + i, f"d{i}", "1.3.0", "h13")
                           for i in range(2, 10)])
    modes.mode = DetectionMode.MONITOR
    findings = run(engine, [connect(LATER + 2 * LEARN, *report)])
    assert [f.evidence["shape"] for f in findings] == [shape]
