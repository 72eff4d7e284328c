"""Firmware drift: a device reporting firmware that neither it nor its fleet runs.

Four shapes, judged on connect and attestation events:

* a version the type knows, with a different hash: the image was modified
  (critical, at once);
* an older version than the device runs: a rollback to something vulnerable (high, at
  once), whether or not the device ran that version before (the minimum-version rule of
  attestation and "seen before" are other questions). Versions are ordered as SemVer
  orders them (§11): a pre-release or custom build (``2.4.1-dev3``) comes before its
  release (``2.4.1``), so a device that ran the release and now boots such a build went
  back, whatever build number it carries;
* a version the type never ran, older than the newest it runs (a custom build of an
  older release): rollouts move forward, so this is no rollout (high, at once);
* a newer version the type has never run. A vendor's rollout reaches the type's devices
  in waves: minutes apart within a wave, hours apart between waves, and a device that
  is off when its wave goes out reports the new version when it next comes on. So the
  first report waits ``CONSENSUS_SECONDS`` (hours, not seconds): if another device of
  the type reports the same version and hash by then it is a rollout and becomes known;
  if not, a finding (late, and only medium: an unknown image is also what attestation's
  signed-firmware registry refuses, at once). A version reported alone and confirmed
  by a second device later still becomes known then: a rollout's stragglers are not
  findings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from iotiam.detection.baselines import Cooldown, json_sets, sets_from_json
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity

#: how long a new version waits for a second device of its type (a rollout's waves)
CONSENSUS_SECONDS = 6 * 3600.0
CONSENSUS_DEVICES = 2
_NUMBERS = re.compile(r"\d+")

VersionKey = tuple[tuple[int, ...], int, tuple[int, ...]]


def version_key(version: str) -> VersionKey:
    """``v2.10.1-rc1`` -> ``((2, 10, 1), 0, (1,))``: SemVer precedence, enough for "older
    than" (a pre-release sorts before its release; build metadata after ``+`` is not
    compared)."""
    core = version.split("+", 1)[0]
    release, dash, pre = core.partition("-")
    numbers = tuple(int(n) for n in _NUMBERS.findall(release))
    if not dash:
        return numbers, 1, ()
    return numbers, 0, tuple(int(n) for n in _NUMBERS.findall(pre))


class _Pending:
    __slots__ = ("devices", "due", "events")

    def __init__(self, due: float) -> None:
        self.due = due
        self.devices: set[str] = set()
        self.events: list[Event] = []


class FirmwareDrift:
    """Firmware version or hash outside the device's and its type's known set."""

    name = "firmware_drift"
    #: every kind, so a pending report is decided on time even when connects are rare
    kinds = frozenset(EventKind)

    def __init__(self, *, learning_seconds: float = 3600.0, cooldown: float = 600.0) -> None:
        self.learning_seconds = learning_seconds
        #: device -> "version|hash" it ran
        self._devices: dict[str, set[str]] = {}
        self._current: dict[str, str] = {}
        #: type -> "version|hash" known; and type -> version -> hashes
        self._types: dict[str, set[str]] = {}
        self._pending: dict[str, _Pending] = {}
        self._type_first: dict[str, float] = {}
        #: device -> images already reported: drift is a state, one finding per image
        self._reported: dict[str, set[str]] = {}
        #: "type|image" reported alone -> the device that reported it: a second device
        #: reporting it later makes it a rollout's (known)
        self._lone: dict[str, str] = {}
        self._next_due = float("inf")
        self._cooldown = Cooldown(cooldown)
        self._held: Event | None = None

    def learn(self, event: Event) -> None:
        """Remember what the device and its type run (unless it was held or flagged)."""
        version = event.firmware_version
        if version is None or event.device_id is None or event is self._held:
            return
        image = f"{version}|{event.firmware_hash or ''}"
        self._devices.setdefault(event.device_id, set()).add(image)
        self._current[event.device_id] = version
        self._types.setdefault(event.device_type or "", set()).add(image)
        # the type's age counts from what it was first seen running, judged or not: a
        # type that learned (learn mode) and is then monitored is not young again
        self._type_first.setdefault(event.device_type or "", event.at)

    def __call__(self, event: Event) -> list[Finding]:
        """Findings for tampered images and rollbacks at once, for lone new versions when
        their consensus window closes."""
        at = event.at
        findings = self._decide(at) if at >= self._next_due else []
        version, device_id = event.firmware_version, event.device_id
        if version is None or device_id is None:
            return findings
        image = f"{version}|{event.firmware_hash or ''}"
        own = self._devices.get(device_id)
        type_name = event.device_type or ""
        known = self._types.get(type_name)
        first = self._type_first.setdefault(type_name, at)
        if not known or at - first < self.learning_seconds:
            return findings  # a young type: what its devices run is what it runs
        # a downgrade is judged before "seen before": an older image the device really
        # ran (signed, known) is exactly what a rollback attack installs
        previous = self._current.get(device_id)
        if previous is not None and version_key(version) < version_key(previous):
            self._held = event
            ran = " (which it ran before)" if own is not None and image in own else ""
            return findings + self._finding(event, Severity.HIGH, "rollback",
                                            f"went back from {previous} to {version}{ran}",
                                            sorted(own or ()))
        if own is not None and image in own:
            return findings
        if image in known:
            return findings  # catching up with the fleet
        same_version = [k for k in known if k.split("|", 1)[0] == version]
        if same_version and event.firmware_hash:
            self._held = event
            return findings + self._finding(event, Severity.CRITICAL, "tampered",
                                            f"reports {version} with a hash no "
                                            f"{type_name or 'device'} has for that version",
                                            sorted(same_version))
        newest = max(version_key(k.split("|", 1)[0]) for k in known)
        if version_key(version) < newest:
            # rollouts move forward: a version the type never ran, older than what it
            # runs now (a custom or pre-release build of it), is no vendor's rollout
            self._held = event
            return findings + self._finding(event, Severity.HIGH, "unknown_version",
                                            f"reports {version}, which no "
                                            f"{type_name or 'device'} ran, older than the "
                                            f"newest its type runs", sorted(own or ()))
        other_build = self._other_build_waiting(type_name, image, device_id)
        if other_build is not None:
            # one device, two builds of one version within a rollout's window: a vendor
            # ships one build of a version, so the newer report is not the vendor's
            self._held = event
            return findings + self._finding(event, Severity.CRITICAL, "tampered",
                                            f"reports {version} with another hash than the "
                                            f"{version} it reported before", [other_build])
        return findings + self._await_rollout(event, f"{type_name}|{image}")

    def _other_builds(self, type_name: str, image: str) -> list[str]:
        """Keys of the images waiting for their rollout that claim ``image``'s type and
        version with another hash."""
        version = image.split("|", 1)[0]
        return [key for key in self._pending
                if key.split("|", 2)[:2] == [type_name, version]
                and key != f"{type_name}|{image}"]

    def _other_build_waiting(self, type_name: str, image: str, device_id: str) -> str | None:
        """The image of the same version with another hash this device reported that still
        waits for its rollout, if any."""
        for key in self._other_builds(type_name, image):
            if device_id in self._pending[key].devices:
                return key.split("|", 1)[1]
        return None

    def _await_rollout(self, event: Event, key: str) -> list[Finding]:
        """Hold a newer version the type never ran until a second device reports it; once
        a rollout is agreed, another image of its version still waiting is a tampered one."""
        device_id = event.device_id or ""
        lone = self._lone.get(key)
        if lone is not None and lone != device_id:
            del self._lone[key]  # a straggler of a rollout: the image is the type's
            self.learn(event)
            return []
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(event.at + CONSENSUS_SECONDS)
            self._next_due = min(self._next_due, pending.due)
        pending.devices.add(device_id)
        pending.events.append(event)
        if len(pending.devices) >= CONSENSUS_DEVICES:
            del self._pending[key]  # a rollout: the fleet moves together
            for held in pending.events:
                self._held = None
                self.learn(held)
            return self._impostors_of(key, event.at)
        self._held = event
        return []

    def _impostors_of(self, agreed: str, at: float) -> list[Finding]:
        """Findings for the images still waiting that claim the agreed image's type and
        version with another hash: a rollout ships one build of a version, so the other
        one was made by someone else (found when the rollout is agreed, not hours later
        when the odd one's own window closes)."""
        type_name, image = agreed.split("|", 1)
        version = image.split("|", 1)[0]
        findings: list[Finding] = []
        for key in self._other_builds(type_name, image):
            for event in self._pending.pop(key).events:
                findings += self._finding(
                    event, Severity.CRITICAL, "tampered",
                    f"reports {version} with a hash other than the one the "
                    f"{type_name or 'device'} rollout of {version} ships",
                    sorted(self._devices.get(event.device_id or "", ())), at=at)
        self._reschedule()
        return findings

    def _reschedule(self) -> None:
        """The next moment a waiting image's window closes."""
        self._next_due = min((p.due for p in self._pending.values()), default=float("inf"))

    def _decide(self, at: float) -> list[Finding]:
        findings: list[Finding] = []
        for key, pending in list(self._pending.items()):
            if pending.due > at:
                continue
            del self._pending[key]
            if len(self._lone) > 10_000:  # a flood of made-up images must not grow it
                self._lone.clear()
            self._lone[key] = next(iter(pending.devices))
            for event in pending.events:
                version = event.firmware_version or ""
                findings += self._finding(
                    event, Severity.MEDIUM, "unknown_version",
                    f"reports {version}, which no other {event.device_type or 'device'} "
                    f"reported within {CONSENSUS_SECONDS / 3600:.0f} h",
                    sorted(self._devices.get(event.device_id or "", ())), at=at)
        self._reschedule()
        return findings

    def _finding(self, event: Event, severity: Severity, shape: str, what: str,
                 known: list[str], *, at: float | None = None) -> list[Finding]:
        device_id = event.device_id or ""
        when = event.at if at is None else at
        image = f"{event.firmware_version}|{event.firmware_hash or ''}"
        reported = self._reported.setdefault(device_id, set())
        if image in reported or not self._cooldown.ready(device_id, when):
            return []
        reported.add(image)
        return [Finding(
            FindingType.FIRMWARE_DRIFT, severity, when, device_id,
            f"{device_id} {what}", self.name,
            {"shape": shape, "firmware_version": event.firmware_version,
             "firmware_hash": event.firmware_hash, "known": known,
             "reported_at": event.at},
            event.device_type)]

    def forgive(self, finding: Finding) -> None:
        """The reported image is a known one for the device and its type from now on."""
        version = finding.evidence.get("firmware_version")
        if finding.device_id is None or not isinstance(version, str):
            return
        image = f"{version}|{finding.evidence.get('firmware_hash') or ''}"
        self._devices.setdefault(finding.device_id, set()).add(image)
        self._current[finding.device_id] = version
        self._types.setdefault(finding.device_type or "", set()).add(image)

    def snapshot(self) -> dict[str, Any]:
        """Known images per device and type, and each device's current version."""
        return {"devices": json_sets(self._devices), "current": dict(self._current),
                "types": json_sets(self._types), "type_first": dict(self._type_first),
                "reported": json_sets(self._reported)}

    def restore(self, state: Mapping[str, Any]) -> None:
        """Inverse of ``snapshot`` (pending reports are not kept)."""
        self._devices = sets_from_json(state.get("devices", {}))
        self._current = {k: str(v) for k, v in state.get("current", {}).items()}
        self._types = sets_from_json(state.get("types", {}))
        self._type_first = {k: float(v) for k, v in state.get("type_first", {}).items()}
        self._reported = sets_from_json(state.get("reported", {}))
        self._pending.clear()
        self._next_due = float("inf")
