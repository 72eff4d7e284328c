"""The ground truth of a scenario: the attacks injected, and the scenario itself."""

from __future__ import annotations

from dataclasses import dataclass, field

from iotiam.detection.models import Event, FindingType


@dataclass(frozen=True)
class Attack:
    """Ground truth: what was done to whom, when."""

    id: str
    type: FindingType
    #: the device attacked or abused; None for fleet-wide attacks and for attacks on
    #: no device in particular (credential stuffing), then ``source_ip`` names them
    device_id: str | None
    start: float
    end: float
    source_ip: str | None = None
    detail: str = ""


@dataclass
class Scenario:
    """Events in time order and the attacks hidden in them."""

    seed: int
    start: float
    duration: float
    learning_seconds: float
    devices: dict[str, str]
    events: list[Event]
    attacks: list[Attack]
    noise: list[str] = field(default_factory=list)
    #: device -> the IANA zone of its site (what ``iotiam serve`` reads from the sites)
    zones: dict[str, str] = field(default_factory=dict)


@dataclass
class Device:
    """One simulated device and the parameters of its normal behaviour."""

    id: str
    type: str
    site: int
    ip: str
    firmware: tuple[str, str]
    period: float = 60.0
    jitter: float = 0.1
    size: float = 100.0
    size_spread: float = 0.05
    peers: list[tuple[str, int]] = field(default_factory=list)
    flow_every: float = 900.0
    day_end: float = 0.0
    #: handhelds: the local hour their shift starts (6 or 14; it lasts 8 hours)
    shift: float = 0.0
    #: actuators: mean seconds between commands (each acknowledged); cameras: between
    #: motion events
    events_every: float = 0.0
    #: handhelds: how much larger than a scan their sync upload after a connect is
    sync: float = 0.0
    #: meters: (offline from, back at) outages after which the device flushes its queue
    outages: list[tuple[float, float]] = field(default_factory=list)
