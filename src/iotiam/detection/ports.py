"""What the detection domain needs from the outside, and what it offers to others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from iotiam.detection.models import Event, Finding


class Detector(Protocol):
    """One small detector: sees every event, says what is wrong (usually nothing).

    A detector keeps its own per-device / per-type state (its baseline). It is called
    only for events whose device is past its learning period and whose type is not in
    ``learn`` mode; ``learn`` is called for every event, so baselines keep learning.
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


class FindingSink(Protocol):
    """Where findings go (the response layer stores them, alerts and acts)."""

    def report(self, findings: Sequence[Finding]) -> None:
        """Take findings raised outside the event pipeline (e.g. by attestation)."""
        ...
