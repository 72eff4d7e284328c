"""What the policy use cases need from storage and from the rest of the system."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.inventory.models import Device
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Decision,
    DevicePosture,
    EffectivePolicy,
    RequestContext,
    Site,
    StoredPolicy,
    Subject,
)


class PolicyStore(Protocol):
    """Every version of every policy document."""

    def latest(self, name: str) -> StoredPolicy | None:
        """The newest version of a policy."""
        ...

    def get(self, name: str, version: int) -> StoredPolicy | None:
        """One version of a policy."""
        ...

    def versions(self, name: str) -> list[int]:
        """The stored versions of a policy, oldest first."""
        ...

    def add(self, policy: StoredPolicy) -> None:
        """Store a new version (Conflict if that name and version exist)."""
        ...

    def current(self) -> list[StoredPolicy]:
        """The newest version of every policy."""
        ...

    def generation(self) -> int:
        """A number that grows with every change to policies or attachments."""
        ...

    def names_under(self, org_path: str) -> list[str]:
        """Names of the policies owned inside ``org_path`` or by one of its ancestors."""
        ...


class AttachmentStore(Protocol):
    """Which policy applies to which target."""

    def attach(self, attachment: Attachment) -> None:
        """Add an attachment (idempotent for the same policy and target)."""
        ...

    def detach(self, policy: str, target: AttachmentTarget) -> Attachment | None:
        """Remove an attachment; return it, or None if there was none."""
        ...

    def for_policy(self, policy: str) -> list[Attachment]:
        """Where one policy is attached."""
        ...

    def all(self) -> list[Attachment]:
        """Every attachment."""
        ...


class TargetDirectory(Protocol):
    """Resolves attachment targets against the inventory."""

    def scope_of(self, target: AttachmentTarget) -> str | None:
        """The org path an org unit, group or device lives at; for a device type the root
        path if the type exists. None if the target does not exist."""
        ...


class SiteDirectory(Protocol):
    """Known sites: time zones and networks for conditions."""

    def sites(self) -> list[Site]:
        """Every known site."""
        ...

    def save(self, site: Site, at: datetime) -> bool:
        """Create or replace a site; True if it is new."""
        ...


class PolicyUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores policy use cases work with, inside one transaction."""

    @property
    def policies(self) -> PolicyStore:
        """Policy versions."""
        ...

    @property
    def policy_attachments(self) -> AttachmentStore:
        """Attachments."""
        ...

    @property
    def policy_targets(self) -> TargetDirectory:
        """Attachment targets in the inventory."""
        ...

    @property
    def sites(self) -> SiteDirectory:
        """Known sites."""
        ...

    @property
    def changes(self) -> ChangeRecorder:
        """Publishes what changed when the transaction commits."""
        ...


#: the unit of work of the domain that calls a policy port (the SQL one is every domain's)
CallerUnitOfWork_contra = TypeVar("CallerUnitOfWork_contra", contravariant=True)


class DeviceAttachments(Protocol[CallerUnitOfWork_contra]):
    """Policy attachments of one device, as another domain's use case ends them inside
    its own transaction (``policy.service.PolicyAdministration``). An ownership transfer
    leaves the old owner's policies attached to the device behind with it."""

    def detach_device_outside(self, uow: CallerUnitOfWork_contra, device_id: str,
                              org_path: str) -> list[str]:
        """Detach from ``device_id`` every policy attached at a scope outside
        ``org_path``; record the policy change if there was one; return the policies'
        names. No audit record of its own: the caller's record lists them."""
        ...


class PolicyDecisions(Protocol):
    """The decision point as another domain puts questions to it, on the policies in
    force now (``policy.service.DecisionPoint``)."""

    def decide_in(self, subject: Subject, action: str, resource: str,
                  context: RequestContext) -> Decision:
        """Permit or Deny ``action`` on one resource (a topic name, a client id, a path)."""
        ...

    def decide_filter(self, subject: Subject, action: str, topic_filter: str,
                      context: RequestContext) -> Decision:
        """Permit a publish or receive on every topic a filter matches, or Deny: an allow
        must cover the filter whole and no deny may meet any of it."""
        ...

    def effective_policy(self, subject: Subject) -> EffectivePolicy:
        """What ``subject`` may do: its statements after substitution, denies shown."""
        ...


class DeviceDirectory(Protocol):
    """Devices and their groups as decisions need them (``storage.fleet_reads``)."""

    def device(self, device_id: str) -> Device | None:
        """One device, whatever its state; None if unknown."""
        ...

    def devices_of(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The known devices among these ids, whatever their state (one query a chunk)."""
        ...

    def groups_of(self, device_ids: Sequence[str]) -> dict[str, set[str]]:
        """Group ids of each device."""
        ...

    def device_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """(device, updated_at) of every device whose record (state, attributes, org,
        groups) changed after ``since``."""
        ...


class PostureLookup(Protocol):
    """Stored trust scores, firmware verdicts and credential standing of devices
    (``storage.fleet_reads``)."""

    def posture_of(self, device_ids: Sequence[str]) -> dict[str, DevicePosture]:
        """The posture of every device asked about (scores and verdicts None if unknown;
        ``credentialed`` always known)."""
        ...
