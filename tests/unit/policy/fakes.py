"""In-memory ports and small builders for the policy tests (and for adapters to mimic)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from iotiam.audit.models import AuditDraft
from iotiam.errors import Conflict, IamError
from iotiam.inventory.models import DeviceState
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    PolicyDocument,
    RequestContext,
    Site,
    StoredPolicy,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy

T0 = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)  # a Wednesday, noon UTC
ROOT = AttachmentTarget(TargetKind.ORG_UNIT, "root")
ACME = AttachmentTarget(TargetKind.ORG_UNIT, "acme")
PLANT = AttachmentTarget(TargetKind.ORG_UNIT, "plant1")
BETA = AttachmentTarget(TargetKind.ORG_UNIT, "beta")
PATHS = {"root": "/root/", "acme": "/root/acme/", "plant1": "/root/acme/plant1/",
         "beta": "/root/beta/"}
BERLIN = Site("berlin", "Europe/Berlin", (ipaddress.ip_network("10.1.0.0/16"),))
TOKYO = Site("tokyo", "Asia/Tokyo", (ipaddress.ip_network("10.2.0.0/16"),))


def subject(device_id: str = "d1", *, type_name: str = "sensor", org: str = "plant1",
            state: DeviceState = DeviceState.ACTIVE, site: str | None = "berlin",
            attributes: dict[str, str] | None = None,
            groups: frozenset[str] = frozenset()) -> Subject:
    """A device in the test org tree."""
    return Subject(device_id, type_name, org, PATHS[org], state, site, attributes or {}, groups)


def context(at: datetime = T0, *, ip: str | None = "10.1.2.3", trust: float | None = 80.0,
            firmware: bool | None = True) -> RequestContext:
    """A request context; pass None for what is unknown."""
    return RequestContext(at, ipaddress.ip_address(ip) if ip else None, trust, firmware)


def policy(text: str) -> PolicyDocument:
    """Parse a YAML policy."""
    return parse_policy(text)


def engine(*attached: tuple[PolicyDocument, AttachmentTarget],
           sites: tuple[Site, ...] = (BERLIN, TOKYO)) -> PolicyEngine:
    """An engine with each policy attached to its target (scope from the test tree)."""
    attachments = []
    for document, target in attached:
        scope = PATHS.get(target.id, "/root/") if target.kind is TargetKind.ORG_UNIT \
            else "/root/"
        attachments.append(Attachment(document.name, target, scope))
    return PolicyEngine([d for d, _ in attached], attachments, sites)


@dataclass
class MemoryPolicies:
    """PolicyStore and AttachmentStore in memory."""

    stored: dict[str, list[StoredPolicy]] = field(default_factory=dict)
    attached: list[Attachment] = field(default_factory=list)
    changes: int = 0

    def latest(self, name: str) -> StoredPolicy | None:
        return self.stored[name][-1] if name in self.stored else None

    def get(self, name: str, version: int) -> StoredPolicy | None:
        for stored in self.stored.get(name, []):
            if stored.document.version == version:
                return stored
        return None

    def versions(self, name: str) -> list[int]:
        return [s.document.version for s in self.stored.get(name, [])]

    def add(self, policy: StoredPolicy) -> None:
        if self.get(policy.document.name, policy.document.version):
            raise Conflict("exists")
        self.stored.setdefault(policy.document.name, []).append(policy)
        self.changes += 1

    def current(self) -> list[StoredPolicy]:
        return [v[-1] for v in self.stored.values()]

    def generation(self) -> int:
        return self.changes

    def names_under(self, org_path: str) -> list[str]:
        return sorted(name for name, versions in self.stored.items()
                      if versions[-1].owner_path.startswith(org_path)
                      or org_path.startswith(versions[-1].owner_path))

    def attach(self, attachment: Attachment) -> None:
        if not any(a.policy == attachment.policy and a.target == attachment.target
                   for a in self.attached):
            self.attached.append(attachment)
        self.changes += 1

    def detach(self, policy: str, target: AttachmentTarget) -> Attachment | None:
        for a in self.attached:
            if a.policy == policy and a.target == target:
                self.attached.remove(a)
                self.changes += 1
                return a
        return None

    def for_policy(self, policy: str) -> list[Attachment]:
        return [a for a in self.attached if a.policy == policy]

    def all(self) -> list[Attachment]:
        return list(self.attached)


class Directory:
    """TargetDirectory and SiteDirectory over the test org tree."""

    def __init__(self, devices: dict[str, str] | None = None,
                 groups: dict[str, str] | None = None,
                 types: tuple[str, ...] = ("sensor", "gateway")) -> None:
        self.devices = devices or {"d1": "/root/acme/plant1/", "b1": "/root/beta/"}
        self.groups = groups or {"line-1": "/root/acme/plant1/"}
        self.types = types
        self.saved: dict[str, Site] = {}

    def scope_of(self, target: AttachmentTarget) -> str | None:
        if target.kind is TargetKind.ORG_UNIT:
            return PATHS.get(target.id)
        if target.kind is TargetKind.DEVICE:
            return self.devices.get(target.id)
        if target.kind is TargetKind.GROUP:
            return self.groups.get(target.id)
        return "/root/" if target.id in self.types else None

    def sites(self) -> list[Site]:
        return [BERLIN, TOKYO, *self.saved.values()]

    def save(self, site: Site, at: datetime) -> bool:
        created = site.name not in self.saved
        self.saved[site.name] = site
        return created


@dataclass
class MemoryUnitOfWork:
    """The policy stores in memory; no rollback (the service checks before it writes)."""

    policies: MemoryPolicies
    policy_attachments: MemoryPolicies
    policy_targets: Directory
    sites: Directory


class MemoryUnitsOfWork:
    """``Transactions[PolicyUnitOfWork]`` over one memory unit of work (the audit log is
    the ``AuditRecorder``, which ignores the unit of work)."""

    def __init__(self, memory: MemoryPolicies, directory: Directory) -> None:
        self.uow = MemoryUnitOfWork(memory, memory, directory, directory)

    @contextmanager
    def __call__(self) -> Iterator[MemoryUnitOfWork]:
        yield self.uow

    @contextmanager
    def reading(self) -> Iterator[MemoryUnitOfWork]:
        yield self.uow


@dataclass
class AuditRecorder:
    """Keeps audit drafts: appended ones and refusals."""

    appended: list[AuditDraft] = field(default_factory=list)
    refused: list[AuditDraft] = field(default_factory=list)

    def append(self, uow: object, draft: AuditDraft) -> None:
        self.appended.append(draft)

    @contextmanager
    def refusals(self, draft: AuditDraft) -> Iterator[None]:
        try:
            yield
        except IamError as e:
            self.refused.append(replace(draft, reason=e.detail))
            raise
