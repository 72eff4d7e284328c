"""Inventory use cases: org units, device types, devices, groups, import and the report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, Generic, TypeVar

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import DeviceChanged
from iotiam.clock import Clock
from iotiam.errors import (
    Forbidden,
    IamError,
    IdNotAvailable,
    InvalidInput,
    NotFound,
)
from iotiam.inventory import bulk
from iotiam.inventory.bulk import DEVICE_ID
from iotiam.inventory.models import (
    ALLOWED_CHILDREN,
    CredentialStatus,
    Criticality,
    Device,
    DeviceClass,
    DeviceDraft,
    DeviceState,
    DeviceType,
    Group,
    ImportRowResult,
    InventorySummary,
    OrgUnit,
    OrgUnitKind,
    RotationPolicy,
    check_identifier,
    check_state_reason,
    check_transition,
)
from iotiam.inventory.ports import (
    ChildLinks,
    CredentialRevoker,
    InventoryUnitOfWork,
    visible_device,
)
from iotiam.kernel import Principal, Role, Transactions, child_path
from iotiam.pki.profiles import get_profile

MAX_IMPORT_ROWS = 5000

UnitOfWorkT = TypeVar("UnitOfWorkT", bound=InventoryUnitOfWork)


class Inventory(Generic[UnitOfWorkT]):
    """Everything about what is in the fleet and where it belongs.

    Decommissioning revokes the device's credentials in the transaction that moves
    its state, so the inventory's transactions are ones its revoker works in too
    (``UnitOfWorkT``). It is the ``DeviceLifecycle`` of the other domains.
    """

    def __init__(
        self,
        uow: Transactions[UnitOfWorkT],
        clock: Clock,
        audit: Auditor,
        revoker: CredentialRevoker[UnitOfWorkT],
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._revoker = revoker
        self._children: ChildLinks[UnitOfWorkT] | None = None

    def use_children(self, children: ChildLinks[UnitOfWorkT]) -> None:
        """Where devices registered under a gateway (``--via``) are placed (wired after
        the gateways, which report to the response layer built on this inventory)."""
        self._children = children

    def _child_links(self) -> ChildLinks[UnitOfWorkT]:
        if self._children is None:
            raise InvalidInput("this installation has no gateway support wired")
        return self._children

    # -- org units ---------------------------------------------------------------------

    def create_org_unit(
        self, actor: Principal, *, unit_id: str, name: str, kind: OrgUnitKind, parent_id: str
    ) -> OrgUnit:
        """Add an org unit under ``parent_id`` (tenant under root, BU under tenant, ...)."""
        draft = AuditDraft(
            tag=AuditTag.ORG_UNIT_CREATED, actor=actor.name, org_path=actor.org_path,
            subject=f"org-unit:{unit_id}",
        )
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "creating org units")
            check_identifier(unit_id, "org unit id")
            with self._uow() as uow:
                parent = self._visible_org_unit(uow, actor, parent_id)
                if kind not in ALLOWED_CHILDREN[parent.kind]:
                    raise InvalidInput(f"a {kind} cannot be placed under a {parent.kind}")
                if uow.org_units.get(unit_id) is not None:
                    raise IdNotAvailable("org unit id", unit_id)
                unit = OrgUnit(
                    id=unit_id,
                    name=name.strip() or unit_id,
                    kind=kind,
                    parent_id=parent.id,
                    path=child_path(parent.path, unit_id),
                    created_at=self._clock.now(),
                )
                uow.org_units.add(unit)
                self._audit.append(uow, _with_path(draft, unit.path, {"kind": str(kind)}))
                return unit

    def list_org_units(self, actor: Principal) -> list[OrgUnit]:
        """Org units in the caller's subtree."""
        with self._uow.reading() as uow:
            return uow.org_units.list_under(actor.org_path)

    def get_org_unit(self, actor: Principal, unit_id: str) -> OrgUnit:
        """One org unit the caller may see."""
        with self._uow.reading() as uow:
            return self._visible_org_unit(uow, actor, unit_id)

    @staticmethod
    def _visible_org_unit(uow: InventoryUnitOfWork, actor: Principal, unit_id: str) -> OrgUnit:
        unit = uow.org_units.get(unit_id)
        if unit is None or not actor.sees(unit.path):
            raise NotFound(f"org unit {unit_id!r} not found")
        return unit

    # -- device types ------------------------------------------------------------------

    def create_device_type(
        self,
        actor: Principal,
        *,
        name: str,
        device_class: DeviceClass,
        criticality: Criticality,
        description: str = "",
        certificate_profile: str | None = None,
    ) -> DeviceType:
        """Device types are fleet-wide, so only a root-scoped admin may add one."""
        draft = AuditDraft(
            tag=AuditTag.DEVICE_TYPE_CREATED, actor=actor.name, org_path=actor.org_path,
            subject=f"device-type:{name}",
        )
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "creating device types")
            if not actor.is_global:
                raise Forbidden("device types are fleet-wide; use a root-scoped admin token")
            check_identifier(name, "device type")
            with self._uow() as uow:
                if uow.device_types.get(name) is not None:
                    raise IdNotAvailable("device type", name)
                profile = certificate_profile or (
                    "gateway" if device_class is DeviceClass.GATEWAY else "device"
                )
                get_profile(profile)  # refuse now, not at every later issuance
                device_type = DeviceType(
                    name=name,
                    device_class=device_class,
                    criticality=criticality,
                    description=description,
                    certificate_profile=profile,
                    created_at=self._clock.now(),
                )
                uow.device_types.add(device_type)
                self._audit.append(uow, draft)
                return device_type

    def set_rotation(self, actor: Principal, name: str, rotation: RotationPolicy) -> DeviceType:
        """Change how a device type's credentials rotate (root-scoped admins)."""
        draft = AuditDraft(
            tag=AuditTag.DEVICE_TYPE_ROTATION_CHANGED, actor=actor.name,
            org_path=actor.org_path, subject=f"device-type:{name}",
        )
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.ADMIN, "changing rotation policies")
            if not actor.is_global:
                raise Forbidden("device types are fleet-wide; use a root-scoped admin token")
            current = uow.device_types.get(name)
            if current is None:
                raise NotFound(f"device type {name!r} not found")
            uow.device_types.set_rotation(name, rotation)
            lifetime = rotation.certificate_lifetime
            self._audit.append(uow, _with_path(draft, actor.org_path, {
                "certificate_lifetime_seconds": lifetime.total_seconds() if lifetime else None,
                "grace_seconds": rotation.grace_period.total_seconds(),
                "max_credential_age_seconds": rotation.max_credential_age.total_seconds(),
            }))
            return replace(current, rotation=rotation)

    def list_device_types(self) -> list[DeviceType]:
        """All device types."""
        with self._uow.reading() as uow:
            return uow.device_types.list_all()

    # -- devices -----------------------------------------------------------------------

    def add_device(self, actor: Principal, draft: DeviceDraft) -> Device:
        """Register one device."""
        refused = AuditDraft(
            tag=AuditTag.DEVICE_REGISTRATION_REFUSED, actor=actor.name,
            org_path=actor.org_path, subject=f"device:{draft.id}",
        )
        with self._audit.refusals(refused), self._uow() as uow:
            device = self._register(uow, actor, draft)
            uow.changes.record(DeviceChanged((device.id,), str(device.state)))
            registered = replace(refused, tag=AuditTag.DEVICE_REGISTERED)
            details: dict[str, Any] = {"type": device.type_name}
            if draft.via is not None:
                details["via"] = draft.via
            self._audit.append(uow, _with_path(registered, device.org_path, details))
            if draft.via is not None:
                self._child_links().attach(uow, actor, device, draft.via)
                # attaching keys it, which activates a pending device
                device = visible_device(uow.devices, actor, device.id)
            return device

    def _register(self, uow: InventoryUnitOfWork, actor: Principal, draft: DeviceDraft) -> Device:
        actor.require(Role.OPERATOR, "registering devices")
        bulk.check_row(draft)  # the same checks, in the same order, as every import row
        unit = self._visible_org_unit(uow, actor, draft.org_unit_id or actor.org_unit_id)
        if uow.device_types.get(draft.type_name) is None:
            raise InvalidInput(f"unknown device type {draft.type_name!r}")
        if uow.devices.get(draft.id) is not None:
            raise IdNotAvailable(DEVICE_ID, draft.id)
        now = self._clock.now()
        device = Device(
            id=draft.id,
            type_name=draft.type_name,
            org_unit_id=unit.id,
            org_path=unit.path,
            state=DeviceState.PENDING,
            site=draft.site,
            location=draft.location,
            attributes=dict(draft.attributes),
            created_at=now,
            updated_at=now,
        )
        uow.devices.add(device)
        return device

    def get_device(self, actor: Principal, device_id: str) -> Device:
        """One device the caller may see (404 for other tenants' devices, G9)."""
        with self._uow.reading() as uow:
            return visible_device(uow.devices, actor, device_id)

    def list_devices(
        self,
        actor: Principal,
        *,
        type_name: str | None = None,
        state: DeviceState | None = None,
        after_id: str | None = None,
        limit: int = 100,
        site: str | None = None,
    ) -> list[Device]:
        """Devices in the caller's subtree, in id order."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        with self._uow.reading() as uow:
            return uow.devices.page(
                org_path=actor.org_path, type_name=type_name, state=state,
                after_id=after_id, limit=limit, site=site,
            )

    def count_devices(self, actor: Principal, *, type_name: str | None = None,
                      state: DeviceState | None = None, site: str | None = None) -> int:
        """How many devices in the caller's subtree match the filters (every page), from
        the maintained counts."""
        with self._uow.reading() as uow:
            return uow.devices.count(org_path=actor.org_path, type_name=type_name,
                                     state=state, site=site)

    def devices_by_credential(
        self, actor: Principal, status: CredentialStatus, *, rotation_age: timedelta,
        type_name: str | None = None, state: DeviceState | None = None,
        site: str | None = None, after_id: str | None = None, limit: int = 100,
    ) -> tuple[list[Device], str | None, int | None]:
        """A page of the caller's devices whose credential status is ``status`` now (as
        the report judges it), the next page's cursor, and the total: from the
        maintained counts when only the status narrows the subtree, else None (counting
        that combination would read every device)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        now = self._clock.now()
        with self._uow.reading() as uow:
            ids, following = uow.fleet_counts.credential_page(
                org_path=actor.org_path, status=status, now=now, rotation_age=rotation_age,
                type_name=type_name, state=str(state) if state else None, site=site,
                after_id=after_id, limit=limit)
            found = uow.devices.get_many(ids)
        total = None
        if type_name is None and state is None and site is None:
            total = self.summary(actor, rotation_age=rotation_age).by_credential_status.get(
                str(status), 0)
        return [found[i] for i in ids if i in found], following, total

    def set_state(
        self, actor: Principal, device_id: str, target: DeviceState, reason: str = ""
    ) -> Device:
        """Move a device along its lifecycle; decommissioning revokes every credential."""
        draft = AuditDraft(
            tag=AuditTag.DEVICE_STATE_CHANGED, actor=actor.name, org_path=actor.org_path,
            subject=f"device:{device_id}",
        )
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "changing device state")
            check_state_reason(reason)
            device = visible_device(uow.devices, actor, device_id, for_update=True)
            check_transition(device.state, target)
            now = self._clock.now()
            uow.devices.set_state(device.id, target, now)
            uow.changes.record(DeviceChanged((device.id,), str(target)))
            revoked = 0
            if target is DeviceState.DECOMMISSIONED:
                revoked = self._revoker.revoke_device_credentials(
                    uow, actor, device, "cessationOfOperation"
                )
            self._audit.append(
                uow,
                _with_path(
                    draft,
                    device.org_path,
                    {"from": str(device.state), "to": str(target), "reason": reason,
                     "credentials_revoked": revoked},
                ),
            )
            return replace(device, state=target, updated_at=now)

    def quarantine(self, uow: UnitOfWorkT, device: Device) -> None:
        """Inside a caller's transaction: move ``device`` into quarantine."""
        self._move(uow, device, DeviceState.QUARANTINED)

    def restore(self, uow: UnitOfWorkT, device: Device, state: DeviceState) -> None:
        """Inside a caller's transaction: move a quarantined ``device`` back to ``state``."""
        self._move(uow, device, state)

    def _move(self, uow: InventoryUnitOfWork, device: Device, target: DeviceState) -> None:
        check_transition(device.state, target)
        uow.devices.set_state(device.id, target, self._clock.now())
        uow.changes.record(DeviceChanged((device.id,), str(target)))

    def import_devices(
        self, actor: Principal, rows: Sequence[tuple[int, dict[str, Any]]]
    ) -> list[ImportRowResult]:
        """Register many devices: each row lands whole or not at all, bad rows are reported.

        One batch (``inventory/bulk.py``): every row checked in Python, one lookup per
        kind (org units, types, ids), the good rows written at once, one audit record and
        one change for the batch.
        """
        actor.require(Role.OPERATOR, "importing devices")
        if len(rows) > MAX_IMPORT_ROWS:
            raise InvalidInput(f"at most {MAX_IMPORT_ROWS} rows per request; send chunks")
        drafts = bulk.drafts_of(rows)
        unit_ids, type_names, device_ids = bulk.wanted(actor, drafts)
        with self._uow() as uow:
            lookups = bulk.Lookups(
                org_units=uow.org_units.get_many(sorted(unit_ids)),
                type_names=frozenset(uow.device_types.known(sorted(type_names))),
                taken_ids=frozenset(uow.devices.exists(sorted(device_ids))),
            )
            judged = bulk.judge(actor, rows, drafts, lookups, self._clock.now())
            vias = self._check_vias(uow, actor, rows, drafts, judged)
            taken = uow.devices.add_new(judged.devices)
            results, landed = bulk.settle(rows, judged, taken)
            if landed:
                uow.changes.record(DeviceChanged(tuple(d.id for d in landed),
                                                 str(DeviceState.PENDING)))
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.DEVICE_IMPORTED, actor=actor.name, org_path=actor.org_path,
                subject=f"import:{len(landed)}-devices",
                details=bulk.audit_details(results, landed),
            ))
            for device in landed:
                if device.id in vias:
                    self._child_links().attach(uow, actor, device, vias[device.id])
        return results

    def _check_vias(self, uow: UnitOfWorkT, actor: Principal,
                    rows: Sequence[tuple[int, dict[str, Any]]],
                    drafts: Sequence[DeviceDraft | ImportRowResult], judged: bulk.Judged
                    ) -> dict[str, str]:
        """The gateway of each judged device registered under one; a row whose gateway
        is refused fails alone before anything is written (G12)."""
        vias: dict[str, str] = {}
        for draft in drafts:
            if isinstance(draft, DeviceDraft) and draft.via is not None:
                vias.setdefault(draft.id, draft.via)
        for device in list(judged.devices):
            if device.id not in vias:
                continue
            try:
                self._child_links().check(uow, actor, device, vias[device.id])
            except IamError as e:
                bulk.refuse(judged, rows, device.id, e)
                del vias[device.id]
        return vias

    # -- groups ------------------------------------------------------------------------

    def create_group(
        self, actor: Principal, *, group_id: str, name: str, org_unit_id: str | None,
        description: str = "",
    ) -> Group:
        """A named set of devices inside one org unit's subtree."""
        draft = AuditDraft(
            tag=AuditTag.GROUP_CREATED, actor=actor.name, org_path=actor.org_path,
            subject=f"group:{group_id}",
        )
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "creating groups")
            check_identifier(group_id, "group id")
            unit = self._visible_org_unit(uow, actor, org_unit_id or actor.org_unit_id)
            if uow.groups.get(group_id) is not None:
                raise IdNotAvailable("group id", group_id)
            group = Group(
                id=group_id, name=name or group_id, org_unit_id=unit.id, org_path=unit.path,
                description=description, created_at=self._clock.now(),
            )
            uow.groups.add(group)
            self._audit.append(uow, _with_path(draft, unit.path, {}))
            return group

    def add_to_group(self, actor: Principal, group_id: str, device_id: str) -> None:
        """Put a device into a group; the device must live inside the group's subtree."""
        draft = AuditDraft(
            tag=AuditTag.GROUP_MEMBER_ADDED, actor=actor.name, org_path=actor.org_path,
            subject=f"group:{group_id}",
        )
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "changing groups")
            group = uow.groups.get(group_id)
            if group is None or not actor.sees(group.org_path):
                raise NotFound(f"group {group_id!r} not found")
            device = visible_device(uow.devices, actor, device_id)
            if not device.org_path.startswith(group.org_path):
                raise InvalidInput(f"device {device_id!r} is outside the group's org unit")
            uow.groups.add_member(group_id, device_id, self._clock.now())
            uow.changes.record(DeviceChanged((device.id,)))
            self._audit.append(uow, _with_path(draft, group.org_path, {"device": device_id}))

    def list_groups(self, actor: Principal) -> list[tuple[Group, list[str]]]:
        """Groups in the caller's subtree with their members."""
        with self._uow.reading() as uow:
            groups = uow.groups.list_under(org_path=actor.org_path)
            return [(g, uow.groups.members(g.id)) for g in groups]

    # -- the report --------------------------------------------------------------------

    def summary(
        self, actor: Principal, *, rotation_age: timedelta,
        expiring_within: timedelta | None = None,
    ) -> InventorySummary:
        """Counts by type, state, site, org unit and credential status for the caller's
        subtree, from the maintained counts (``FleetCounts``)."""
        now = self._clock.now()
        by_type: Counter[str] = Counter()
        by_state: Counter[str] = Counter()
        by_site: Counter[str] = Counter()
        by_org: Counter[str] = Counter()
        with self._uow.reading() as uow:
            max_age = {t.name: t.rotation.max_credential_age
                       for t in uow.device_types.list_all()}
            for tally in uow.fleet_counts.device_tallies(org_path=actor.org_path):
                by_type[tally.type_name] += tally.count
                by_state[tally.state] += tally.count
                by_site[tally.site] += tally.count
                by_org[tally.org_path] += tally.count
            credentials = uow.fleet_counts.credential_tally(
                org_path=actor.org_path, now=now, rotation_age=rotation_age,
                expiring_within=expiring_within, max_age_by_type=max_age)
        total = sum(by_type.values())
        by_credential = {str(s): credentials.by_status.get(str(s), 0) for s in CredentialStatus}
        by_credential[str(CredentialStatus.NONE)] = total - sum(credentials.by_status.values())
        return InventorySummary(
            total=total,
            by_type=dict(by_type),
            by_state=dict(by_state),
            by_credential_status=by_credential,
            expiring_within_days=(None if expiring_within is None
                                  else int(expiring_within.total_seconds() // 86400)),
            rotation_age_days=int(rotation_age.total_seconds() // 86400),
            never_rotated=credentials.never_rotated,
            by_site=dict(by_site),
            by_org=dict(by_org),
        )


def _with_path(draft: AuditDraft, org_path: str, details: dict[str, Any]) -> AuditDraft:
    return replace(draft, org_path=org_path, details={**draft.details, **details})
