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
