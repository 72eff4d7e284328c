"""The score that orders the register by what to fix first.

``score = round(weight x (worst + 0.25 x sum of the others))`` over the factors no live
acceptance hides, where a factor counts ``SEVERITY_POINTS`` of its severity and the
weight is what a compromise of that identity would cost:

* the device type's criticality (``CRITICALITY_WEIGHT``: low 1.0 ... critical 3.0);
* its class (``CLASS_WEIGHT``): industrial controllers first, then gateways, actuators;
* x ``WRITE_WEIGHT`` when a policy lets it publish (write access to production).

The worst factor dominates, so one critical problem outranks a pile of low ones, and
the others still break ties. An identity with nothing known about it (an unmanaged asset
whose open ports say nothing) weighs ``UNKNOWN_WEIGHT``: not knowing is no comfort. An
unmanaged asset whose open ports say "controller" (``presence.guess_class``) is weighed
as a controller, so an unmanaged controller outranks a dormant sensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from iotiam.inventory.models import Criticality, DeviceClass
from iotiam.risk.models import FactorHit, RiskFactor, Severity, Weighting

SEVERITY_POINTS: Mapping[Severity, int] = {
    Severity.LOW: 10, Severity.MEDIUM: 25, Severity.HIGH: 50, Severity.CRITICAL: 100}
CRITICALITY_WEIGHT: Mapping[Criticality, float] = {
    Criticality.LOW: 1.0, Criticality.MEDIUM: 1.5, Criticality.HIGH: 2.0,
    Criticality.CRITICAL: 3.0}
CLASS_WEIGHT: Mapping[DeviceClass, float] = {
    DeviceClass.CONTROLLER: 2.0, DeviceClass.GATEWAY: 1.8, DeviceClass.ACTUATOR: 1.6,
    DeviceClass.CAMERA: 1.2, DeviceClass.SENSOR: 1.0, DeviceClass.CONSTRAINED_SENSOR: 1.0,
    DeviceClass.OTHER: 1.0}
WRITE_WEIGHT = 1.5
#: criticality or class not known
UNKNOWN_WEIGHT = 1.5
#: how much each factor after the worst adds
OTHERS = 0.25


def weight(weighting: Weighting) -> float:
    """The multiplier of an identity's factor points."""
    criticality = CRITICALITY_WEIGHT[weighting.criticality] \
        if weighting.criticality is not None else UNKNOWN_WEIGHT
    device_class = CLASS_WEIGHT[weighting.device_class] \
        if weighting.device_class is not None else UNKNOWN_WEIGHT
    return criticality * device_class * (WRITE_WEIGHT if weighting.can_write else 1.0)


def score(hits: Iterable[FactorHit], weighting: Weighting) -> int:
    """The entry's score (0: nothing visible against it). A factor counts once, at its
    worst hit's severity, as it has one row in the register."""
    worst: dict[RiskFactor, int] = {}
    for h in hits:
        points = SEVERITY_POINTS[h.severity]
        if points > worst.get(h.factor, 0):
            worst[h.factor] = points
    if not worst:
        return 0
    ranked = sorted(worst.values(), reverse=True)
    return round(weight(weighting) * (ranked[0] + OTHERS * sum(ranked[1:])))


def _max_score() -> int:
    heaviest = max([*CRITICALITY_WEIGHT.values(), UNKNOWN_WEIGHT]) \
        * max([*CLASS_WEIGHT.values(), UNKNOWN_WEIGHT]) * WRITE_WEIGHT
    top = max(SEVERITY_POINTS.values())
    return math.ceil(heaviest * (top + OTHERS * top * (len(RiskFactor) - 1)))


#: no entry scores more: every factor at its worst on the heaviest identity (a page
#: cursor naming a higher score is none the register gave)
MAX_SCORE = _max_score()
