"""SQL implementation of the policy ports: versions, attachments, targets, sites."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from iotiam.kernel import ROOT_PATH
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Site,
    StoredPolicy,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy
from iotiam.storage.pki_store import SqlCounterStore
from iotiam.storage.tables import inventory
from iotiam.storage.tables import policy as t

#: bumped by every change to policies, attachments or sites: compiled sets compare it
GENERATION_COUNTER = "policies:generation"


class SqlPolicyStore:
    """Every version of every policy document."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def latest(self, name: str) -> StoredPolicy | None:
        """The newest version of a policy."""
        p = t.policies.c
        row = self._c.execute(select(t.policies).where(p.name == name)
                              .order_by(p.version.desc()).limit(1)).first()
        return _stored(row) if row else None

    def get(self, name: str, version: int) -> StoredPolicy | None:
        """One version."""
        p = t.policies.c
        row = self._c.execute(select(t.policies).where(p.name == name,
                                                       p.version == version)).first()
        return _stored(row) if row else None

    def versions(self, name: str) -> list[int]:
        """Stored versions, oldest first."""
        p = t.policies.c
        return [r.version for r in self._c.execute(
            select(p.version).where(p.name == name).order_by(p.version))]

    def add(self, policy: StoredPolicy) -> None:
        """Store a new version (the primary key refuses a duplicate: Conflict)."""
        self._c.execute(insert(t.policies).values(
            name=policy.document.name, version=policy.document.version,
            owner_path=policy.owner_path, source=policy.source,
            created_at=policy.created_at, created_by=policy.created_by))
        SqlCounterStore(self._c).next(GENERATION_COUNTER)

    def current(self) -> list[StoredPolicy]:
        """The newest version of every policy."""
        p = t.policies.c
        newest = (select(p.name, func.max(p.version).label("version"))
                  .group_by(p.name).subquery())
        rows = self._c.execute(select(t.policies).join(
            newest, (p.name == newest.c.name) & (p.version == newest.c.version))
            .order_by(p.name))
        return [_stored(r) for r in rows]

    def generation(self) -> int:
        """Grows with every change to policies, attachments or sites."""
        return SqlCounterStore(self._c).current(GENERATION_COUNTER)

    def names_under(self, org_path: str) -> list[str]:
        """Names of policies owned inside a subtree or by its ancestors."""
        p = t.policies.c
        rows = self._c.execute(select(p.name, p.owner_path).distinct().order_by(p.name))
        return [r.name for r in rows
                if r.owner_path.startswith(org_path) or org_path.startswith(r.owner_path)]


class SqlAttachmentStore:
    """Which policy applies to which target."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def attach(self, attachment: Attachment) -> None:
        """Add an attachment; the same one again changes nothing."""
        a = t.policy_attachments.c
        exists = self._c.execute(select(a.policy).where(
            a.policy == attachment.policy, a.target_kind == str(attachment.target.kind),
            a.target_id == attachment.target.id)).first()
        if exists is None:
            self._c.execute(insert(t.policy_attachments).values(
                policy=attachment.policy, target_kind=str(attachment.target.kind),
                target_id=attachment.target.id, scope=attachment.scope))
            SqlCounterStore(self._c).next(GENERATION_COUNTER)

    def detach(self, policy: str, target: AttachmentTarget) -> Attachment | None:
        """Remove an attachment; the one removed, or None."""
        a = t.policy_attachments.c
        where = (a.policy == policy, a.target_kind == str(target.kind), a.target_id == target.id)
        row = self._c.execute(select(t.policy_attachments).where(*where)).first()
        if row is None:
            return None
        self._c.execute(delete(t.policy_attachments).where(*where))
        SqlCounterStore(self._c).next(GENERATION_COUNTER)
        return _attachment(row)

    def for_policy(self, policy: str) -> list[Attachment]:
        """Where one policy is attached."""
        a = t.policy_attachments.c
        return [_attachment(r) for r in self._c.execute(
            select(t.policy_attachments).where(a.policy == policy)
            .order_by(a.target_kind, a.target_id))]

    def all(self) -> list[Attachment]:
        """Every attachment."""
        a = t.policy_attachments.c
        return [_attachment(r) for r in self._c.execute(
            select(t.policy_attachments).order_by(a.policy, a.target_kind, a.target_id))]


class SqlTargetDirectory:
    """Attachment targets resolved against the inventory."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def scope_of(self, target: AttachmentTarget) -> str | None:
        """The org path a target lives at (device types: the root, if the type exists)."""
        query: Any
        if target.kind is TargetKind.ORG_UNIT:
            query = select(inventory.org_units.c.path).where(inventory.org_units.c.id == target.id)
        elif target.kind is TargetKind.GROUP:
            query = select(inventory.groups.c.org_path).where(inventory.groups.c.id == target.id)
        elif target.kind is TargetKind.DEVICE:
            query = select(inventory.devices.c.org_path).where(inventory.devices.c.id == target.id)
        else:
            exists = self._c.execute(select(inventory.device_types.c.name)
                                     .where(inventory.device_types.c.name == target.id)).first()
            return ROOT_PATH if exists else None
        value = self._c.execute(query).scalar_one_or_none()
        return str(value) if value is not None else None


class SqlSiteStore:
    """Known sites: time zone and networks."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def sites(self) -> list[Site]:
        """Every site, by name."""
        rows = self._c.execute(select(t.sites).order_by(t.sites.c.name))
        return [Site(r.name, r.timezone, tuple(ipaddress.ip_network(n)
                                              for n in json.loads(r.networks)))
                for r in rows]

    def save(self, site: Site, at: Any) -> bool:
        """Create or replace a site; True if it was new."""
        networks = json.dumps([str(n) for n in site.networks])
        existed = self._c.execute(select(t.sites.c.name)
                                  .where(t.sites.c.name == site.name)).first() is not None
        if existed:
            self._c.execute(t.sites.update().where(t.sites.c.name == site.name)
                            .values(timezone=site.timezone, networks=networks))
        else:
            self._c.execute(insert(t.sites).values(name=site.name, timezone=site.timezone,
                                                   networks=networks, created_at=at))
        SqlCounterStore(self._c).next(GENERATION_COUNTER)
        return not existed


def _stored(row: Any) -> StoredPolicy:
    return StoredPolicy(parse_policy(row.source), row.owner_path, row.source, row.created_at,
                        row.created_by)


def _attachment(row: Any) -> Attachment:
    return Attachment(row.policy, AttachmentTarget(TargetKind(row.target_kind), row.target_id),
                      row.scope)
