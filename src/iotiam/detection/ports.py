"""What the detection domain needs from the outside, and what it offers to others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from iotiam.detection.models import DetectionMode, Event, Finding


class Detector(Protocol):
    """One small detector: sees every event, says what is wrong (usually nothing).

    A detector keeps its own per-device / per-type state (its baseline). It is called
    only for events whose type is not in ``learn`` mode; a device still in its own
    learning period is judged against its type's baseline (the prior), or not at all
    while that is young too. ``learn`` is called for every event, after the call, so
    baselines keep learning; a detector may keep what it just judged abnormal out of
    its baseline (a false positive, through ``forgive``, teaches it instead).

    ``kinds`` (optional attribute) names the event kinds it looks at; the engine routes
    only those to it.
    """

    name: str

    def learn(self, event: Event) -> None:
        """Fold a normal event into the baseline."""
        ...

    def __call__(self, event: Event) -> list[Finding]:
        """Findings this event raises (the empty list almost always)."""
        ...

    def forgive(self, finding: Finding) -> None:
        """An admin marked ``finding`` a false positive: widen the baseline so the same
        behaviour no longer raises it."""
        ...


class ModeSource(Protocol):
    """Where the engine reads the mode of a device type: learn, monitor or enforce.

    The modes are held once, by whoever admins set them through (the response settings,
    ``IncidentResponse``, which read them again when the change feed says one changed);
    the engine only asks. It asks for every event, so ``mode_of`` must be a dict lookup:
    no lock, no clock, no database.
    """

    def mode_of(self, device_type: str | None) -> DetectionMode:
        """The type's mode (a type never set, or no type, is in the default mode)."""
        ...


class ZoneSource(Protocol):
    """Where the engine reads the time zone a device lives in (its site's).

    Time of day is judged in the device's local time (a shift starts at 06:00 in
    Berlin and in Chicago alike). Asked for every timed event, so ``zone_of`` must be
    a dict lookup: no lock, no clock, no database.
    """

    def zone_of(self, device_id: str | None) -> ZoneInfo | str:
        """The device's zone (a ``ZoneInfo`` or an IANA name); the default one for a
        device not known, or no device."""
        ...


class ZoneAware(Protocol):
    """A detector that judges local time: the engine hands it its ``ZoneSource``."""

    def use_zones(self, zones: ZoneSource) -> None:
        """Read device zones from ``zones`` from now on."""
        ...


class FindingSink(Protocol):
    """Where findings go (the response layer stores them, alerts and acts)."""

    def report(self, findings: Sequence[Finding]) -> None:
        """Take findings raised outside the event pipeline (e.g. by attestation)."""
        ...


class PersistentDetector(Detector, Protocol):
    """A detector whose baseline survives a restart (``DetectionEngine.snapshot``).

    ``snapshot`` keeps what was learned (JSON-safe), not in-flight windows or
    cooldowns: those last seconds to minutes and refill at once.
    """

    def snapshot(self) -> dict[str, Any]:
        """The learned state, JSON-safe."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace the learned state with one ``snapshot`` returned."""
        ...


class EventPublisher(Protocol):
    """Where admitted events go to be scored elsewhere: a stream partitioned by device
    (``iotiam.eventstream``) whose detection workers score them. Without one, ingestion
    scores in process (the embedded default)."""

    def publish(self, events: Sequence[Event]) -> None:
        """Hand events over durably (the call returns once the stream holds them), or
        raise ``StreamUnavailable``."""
        ...

    def forgive(self, finding: Finding) -> None:
        """Have the engine that raised ``finding`` widen its baseline (a false positive),
        in order with the events of its device; or raise ``StreamUnavailable``."""
        ...

    def close(self) -> None:
        """Flush and let go of the stream (at shutdown)."""
        ...
