"""Questions admins ask about the current policy set, inside their own subtree (G9).

"Would device X be allowed to …?" (also "… at 03:00 on Sunday?"), "what can device X
do?" and "who can publish to T?". Devices are read fresh here (``DeviceSubjects``
caches only for the broker hook); another tenant's device is "not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from iotiam.clock import Clock
from iotiam.errors import InvalidInput
from iotiam.inventory.models import Device
from iotiam.kernel import Principal
from iotiam.policy.actions import expand_action
from iotiam.policy.models import Decision, EffectivePolicy, RequestContext
from iotiam.policy.queries import (
    Holder,
    TargetGrant,
    effective_policy,
    granting_targets,
    who_can,
)
from iotiam.policy.service import DecisionPoint, may_know_of
from iotiam.policy.subjects import DeviceSubjects

MAX_PAGE = 1000


class VisibleDevices(Protocol):
    """Devices as the caller may see them (``inventory.service.Inventory``)."""

    def get_device(self, actor: Principal, device_id: str) -> Device:
        """One device inside the caller's subtree (NotFound otherwise)."""
        ...

    def list_devices(self, actor: Principal, *, after_id: str | None = None,
                     limit: int = 100) -> list[Device]:
        """Devices inside the caller's subtree, by id."""
        ...


@dataclass(frozen=True, slots=True)
class WhoCanPage:
    """Holders among one page of scanned devices, and where the next page starts."""

    holders: tuple[Holder, ...]
    scanned: int
    next_after: str | None
    #: attachments (visible to the caller) whose allows may grant it
    targets: tuple[TargetGrant, ...]


def concrete_action(text: str) -> str:
    """One concrete action (``mqtt:publish``), refusing wildcards and unknown names."""
    expanded = expand_action(text)
    if len(expanded) != 1 or expanded[0] != text:
        raise InvalidInput(f"action {text!r} is a wildcard; ask about one action "
                           f"({', '.join(expanded[:4])}{', …' if len(expanded) > 4 else ''})")
    return text


class PolicyInquiry:
    """What the decision point would say, and why, for an admin."""

    def __init__(self, decisions: DecisionPoint, subjects: DeviceSubjects,
                 devices: VisibleDevices, clock: Clock) -> None:
        self._decisions = decisions
        self._clock = clock
        self._subjects = subjects
        self._devices = devices

    def decide(
        self, actor: Principal, device_id: str, action: str, resource: str, *,
        source_ip: str | None = None, at: datetime | None = None,
        trust_score: float | None = None, firmware_compliant: bool | None = None,
    ) -> Decision:
        """The decision for a visible device now, or as if at ``at`` (simulation)."""
        action = concrete_action(action)
        subject = self._subjects.subject_of(self._devices.get_device(actor, device_id))
        return self._decisions.decide(subject, action, resource, source_ip=source_ip,
                                      trust_score=trust_score,
                                      firmware_compliant=firmware_compliant, at=at)

    def permissions(self, actor: Principal, device_id: str) -> EffectivePolicy:
        """What can a visible device do: its statements after substitution, denies first."""
        subject = self._subjects.subject_of(self._devices.get_device(actor, device_id))
        return effective_policy(self._decisions.engine, subject)

    def who_can(
        self, actor: Principal, action: str, resource: str, *, after: str | None = None,
        limit: int = 500, source_ip: str | None = None,
    ) -> WhoCanPage:
        """Which devices of the caller's subtree may do ``action`` on ``resource`` now,
        among the next ``limit`` devices after ``after`` (by id)."""
        action = concrete_action(action)
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
        engine = self._decisions.engine
        targets = tuple(g for g in granting_targets(engine, action, resource)
                        if may_know_of(actor, g.attachment.scope))
        devices = self._devices.list_devices(actor, after_id=after, limit=limit)
        context = RequestContext.now(self._clock, source_ip=source_ip)
        holders = who_can(engine, action, resource, self._subjects.subjects_of(devices),
                          context)
        return WhoCanPage(tuple(holders), len(devices),
                          devices[-1].id if len(devices) == limit else None, targets)
