"""The policy stores in memory (``iotiam.policy.ports``): standalone ones for the
policy service alone (``MemoryPolicies``, ``MemoryDirectory``) and ones over the
inventory in memory for the whole unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from iotiam.changes import ChangeRecorder
from iotiam.errors import Conflict
from iotiam.kernel import ROOT_PATH
from iotiam.policy.models import Attachment, AttachmentTarget, Site, StoredPolicy, TargetKind
from iotiam.testing.fakes.inventory import (
    MemoryDeviceStore,
    MemoryDeviceTypeStore,
    MemoryGroupStore,
    MemoryOrgUnitStore,
)
from iotiam.testing.fakes.memory import MemoryStore
from iotiam.testing.fakes.pki import MemoryCounterStore

#: bumped by every change to policies, attachments or sites (as the SQL store does)
GENERATION_COUNTER = "policies:generation"


@dataclass
class MemoryPolicies(MemoryStore):
    """``PolicyStore`` and ``AttachmentStore`` in memory, counting their own changes."""

    stored: dict[str, list[StoredPolicy]] = field(default_factory=dict)
    attached: list[Attachment] = field(default_factory=list)
    changes: int = 0

    def latest(self, name: str) -> StoredPolicy | None:
        """The newest version of a policy."""
        return self.stored[name][-1] if name in self.stored else None

    def get(self, name: str, version: int) -> StoredPolicy | None:
        """One version."""
        for stored in self.stored.get(name, []):
            if stored.document.version == version:
                return stored
        return None

    def versions(self, name: str) -> list[int]:
        """Stored versions, oldest first."""
        return [s.document.version for s in self.stored.get(name, [])]

    def add(self, policy: StoredPolicy) -> None:
        """Store a new version (Conflict if it exists)."""
        if self.get(policy.document.name, policy.document.version):
            raise Conflict("exists")
        self.stored.setdefault(policy.document.name, []).append(policy)
        self._changed()

    def current(self) -> list[StoredPolicy]:
        """The newest version of every policy, by name."""
        return [self.stored[name][-1] for name in sorted(self.stored)]

    def generation(self) -> int:
        """Grows with every change."""
        return self.changes

    def names_under(self, org_path: str) -> list[str]:
        """Names of policies owned inside a subtree or by its ancestors."""
        return sorted(name for name, versions in self.stored.items()
                      if any(v.owner_path.startswith(org_path)
                             or org_path.startswith(v.owner_path) for v in versions))

    def attach(self, attachment: Attachment) -> None:
        """Add an attachment; the same one again changes nothing."""
        if not any(a.policy == attachment.policy and a.target == attachment.target
                   for a in self.attached):
            self.attached.append(attachment)
            self._changed()

    def detach(self, policy: str, target: AttachmentTarget) -> Attachment | None:
        """Remove an attachment; the one removed, or None."""
        for a in self.attached:
            if a.policy == policy and a.target == target:
                self.attached.remove(a)
                self._changed()
                return a
        return None

    def for_policy(self, policy: str) -> list[Attachment]:
        """Where one policy is attached, by target."""
        return sorted((a for a in self.attached if a.policy == policy),
                      key=lambda a: (str(a.target.kind), a.target.id))

    def all(self) -> list[Attachment]:
        """Every attachment, by policy and target."""
        return sorted(self.attached, key=lambda a: (a.policy, str(a.target.kind), a.target.id))

    def _changed(self) -> None:
        self.changes += 1


@dataclass
class MemoryPolicyStore(MemoryPolicies):
    """``PolicyStore`` and ``AttachmentStore`` sharing the generation counter of the
    unit of work (sites bump it too)."""

    counters: MemoryCounterStore = field(default_factory=MemoryCounterStore)

    def generation(self) -> int:
        """Grows with every change to policies, attachments or sites."""
        return self.counters.current(GENERATION_COUNTER)

    def _changed(self) -> None:
        self.counters.next(GENERATION_COUNTER)


@dataclass
class MemorySiteStore(MemoryStore):
    """``SiteDirectory``: sites by name."""

    counters: MemoryCounterStore
    known: dict[str, Site] = field(default_factory=dict)

    def sites(self) -> list[Site]:
        """Every site, by name."""
        return [self.known[name] for name in sorted(self.known)]

    def save(self, site: Site, at: datetime) -> bool:
        """Create or replace a site; True if it was new."""
        created = site.name not in self.known
        self.known[site.name] = site
        self.counters.next(GENERATION_COUNTER)
        return created


@dataclass
class MemoryTargetDirectory(MemoryStore):
    """``TargetDirectory`` over the inventory in memory."""

    org_units: MemoryOrgUnitStore
    devices: MemoryDeviceStore
    groups: MemoryGroupStore
    device_types: MemoryDeviceTypeStore

    def scope_of(self, target: AttachmentTarget) -> str | None:
        """The org path a target lives at (device types: the root, if the type exists)."""
        if target.kind is TargetKind.ORG_UNIT:
            unit = self.org_units.get(target.id)
            return unit.path if unit else None
        if target.kind is TargetKind.GROUP:
            group = self.groups.get(target.id)
            return group.org_path if group else None
        if target.kind is TargetKind.DEVICE:
            device = self.devices.get(target.id)
            return device.org_path if device else None
        return ROOT_PATH if self.device_types.get(target.id) else None


class MemoryDirectory:
    """``TargetDirectory`` and ``SiteDirectory`` over a fixed org tree (ids to paths)."""

    def __init__(self, org_units: dict[str, str], devices: dict[str, str],
                 groups: dict[str, str], types: tuple[str, ...],
                 sites: tuple[Site, ...] = ()) -> None:
        self.org_units = org_units
        self.devices = devices
        self.groups = groups
        self.types = types
        self.fixed_sites = sites
        self.saved: dict[str, Site] = {}

    def scope_of(self, target: AttachmentTarget) -> str | None:
        """The org path a target lives at."""
        if target.kind is TargetKind.ORG_UNIT:
            return self.org_units.get(target.id)
        if target.kind is TargetKind.DEVICE:
            return self.devices.get(target.id)
        if target.kind is TargetKind.GROUP:
            return self.groups.get(target.id)
        return ROOT_PATH if target.id in self.types else None

    def sites(self) -> list[Site]:
        """The fixed sites, then the saved ones."""
        return [*self.fixed_sites, *self.saved.values()]

    def save(self, site: Site, at: datetime) -> bool:
        """Create or replace a site; True if it was new."""
        created = site.name not in self.saved
        self.saved[site.name] = site
        return created


@dataclass
class MemoryPolicyUnitOfWork:
    """A ``PolicyUnitOfWork`` of standalone policy stores; no rollback (the policy
    service checks before it writes)."""

    policies: MemoryPolicies
    policy_attachments: MemoryPolicies
    policy_targets: MemoryDirectory
    sites: MemoryDirectory
    #: publishes at once (nothing here rolls back)
    changes: ChangeRecorder


class MemoryPolicyTransactions:
    """``Transactions[PolicyUnitOfWork]`` over one :class:`MemoryPolicyUnitOfWork`;
    what it records goes to ``changes`` (a ``MemoryChangeFeed``) at once."""

    def __init__(self, memory: MemoryPolicies, directory: MemoryDirectory,
                 changes: ChangeRecorder) -> None:
        self.uow = MemoryPolicyUnitOfWork(memory, memory, directory, directory, changes)

    @contextmanager
    def __call__(self) -> Iterator[MemoryPolicyUnitOfWork]:
        """A write transaction."""
        yield self.uow

    @contextmanager
    def reading(self) -> Iterator[MemoryPolicyUnitOfWork]:
        """A read transaction."""
        yield self.uow
