"""The inventory stores in memory (``iotiam.inventory.ports``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from iotiam.errors import Conflict
from iotiam.inventory.credential_status import (
    HeldCredential,
    credential_status_by_device,
    credential_tally,
    held_credentials,
)
from iotiam.inventory.models import (
    CredentialStatus,
    CredentialTally,
    Device,
    DeviceState,
    DeviceTally,
    DeviceType,
    Group,
    OrgUnit,
    RotationPolicy,
)
from iotiam.testing.fakes.memory import MemoryStore, under
from iotiam.testing.fakes.pki import MemoryCertificateStore

if TYPE_CHECKING:  # the tokens fakes import this module's device store
    from iotiam.testing.fakes.credentials import MemoryPskStore
    from iotiam.testing.fakes.tokens import MemoryOAuthClientStore


@dataclass
class MemoryOrgUnitStore(MemoryStore):
    """``OrgUnitStore``: units by id."""

    units: dict[str, OrgUnit] = field(default_factory=dict)

    def add(self, unit: OrgUnit) -> None:
        """Insert a new org unit (Conflict if the id or the path exists)."""
        if unit.id in self.units or any(u.path == unit.path for u in self.units.values()):
            raise Conflict(f"org unit {unit.id} exists")
        self.units[unit.id] = unit

    def get(self, unit_id: str) -> OrgUnit | None:
        """One org unit by id."""
        return self.units.get(unit_id)

    def get_many(self, unit_ids: Sequence[str]) -> dict[str, OrgUnit]:
        """The org units among these ids, by id."""
        return {i: self.units[i] for i in unit_ids if i in self.units}

    def list_under(self, path: str) -> list[OrgUnit]:
        """Every org unit in the subtree at ``path``, by path."""
        return sorted((u for u in self.units.values() if under(u.path, path)),
                      key=lambda u: u.path)


@dataclass
class MemoryDeviceTypeStore(MemoryStore):
    """``DeviceTypeStore``: types by name."""

    types: dict[str, DeviceType] = field(default_factory=dict)

    def add(self, device_type: DeviceType) -> None:
        """Insert a device type (Conflict if the name exists)."""
        if device_type.name in self.types:
            raise Conflict(f"device type {device_type.name} exists")
        self.types[device_type.name] = device_type

    def get(self, name: str) -> DeviceType | None:
        """One device type by name."""
        return self.types.get(name)

    def known(self, names: Sequence[str]) -> set[str]:
        """Which of these device type names exist."""
        return {n for n in names if n in self.types}

    def list_all(self) -> list[DeviceType]:
        """All device types, by name."""
        return [self.types[name] for name in sorted(self.types)]

    def set_rotation(self, name: str, rotation: RotationPolicy) -> None:
        """Replace a device type's rotation policy."""
        if name in self.types:
            self.types[name] = replace(self.types[name], rotation=rotation)


@dataclass
class MemoryDeviceStore(MemoryStore):
    """``DeviceStore``: devices by id."""

    devices: dict[str, Device] = field(default_factory=dict)

    def add(self, device: Device) -> None:
        """Insert a device (Conflict if the id exists)."""
        if device.id in self.devices:
            raise Conflict(f"device {device.id} exists")
        self.devices[device.id] = replace(device, attributes=dict(device.attributes),
                                          tokens_not_before=None)

    def add_new(self, devices: Sequence[Device]) -> set[str]:
        """Insert the devices whose ids are free; return the ids that were taken."""
        taken = {d.id for d in devices if d.id in self.devices}
        for device in devices:
            if device.id not in taken:
                self.add(device)
        return taken

    def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        """One device by id."""
        return self.devices.get(device_id)

    def get_many(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The registered devices among these ids, by id."""
        return {i: self.devices[i] for i in dict.fromkeys(device_ids) if i in self.devices}

    def exists(self, device_ids: Sequence[str]) -> set[str]:
        """Which of these ids are already registered."""
        return {i for i in device_ids if i in self.devices}

    def update(self, device_id: str, **values: object) -> None:
        """Change some columns of a device, if it exists (an UPDATE … WHERE id)."""
        if device_id in self.devices:
            self.devices[device_id] = replace(self.devices[device_id], **values)  # type: ignore[arg-type]

    def set_state(self, device_id: str, state: DeviceState, at: datetime) -> None:
        """Move a device to another lifecycle state; leaving ``active`` ends its tokens."""
        if state is DeviceState.ACTIVE:
            self.update(device_id, state=state, updated_at=at)
        else:
            self.update(device_id, state=state, updated_at=at, tokens_not_before=at)

    def end_tokens(self, device_id: str, at: datetime) -> None:
        """Access tokens of the device issued until ``at`` stay dead."""
        self.update(device_id, tokens_not_before=at)

    def activate_if_pending(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move pending devices to active; other states stay."""
        for device_id in device_ids:
            device = self.devices.get(device_id)
            if device is not None and device.state is DeviceState.PENDING:
                self.update(device_id, state=DeviceState.ACTIVE, updated_at=at)

    def touch(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at``."""
        for device_id in device_ids:
            self.update(device_id, updated_at=at)

    def _matching(self, org_path: str, type_name: str | None,
                  state: DeviceState | None, site: str | None = None) -> list[Device]:
        return [d for d in sorted(self.devices.values(), key=lambda d: d.id)
                if under(d.org_path, org_path)
                and (not type_name or d.type_name == type_name)
                and (not state or d.state is state)
                and (not site or d.site == site)]

    def page(self, *, org_path: str, type_name: str | None = None,
             state: DeviceState | None = None, after_id: str | None = None,
             limit: int = 100, site: str | None = None) -> list[Device]:
        """Devices under ``org_path`` in id order, keyset-paginated by ``after_id``."""
        found = self._matching(org_path, type_name, state, site)
        return [d for d in found if not after_id or d.id > after_id][:limit]

    def count(self, *, org_path: str, type_name: str | None = None,
              state: DeviceState | None = None, site: str | None = None) -> int:
        """How many devices under ``org_path`` match the filters."""
        return len(self._matching(org_path, type_name, state, site))

    def iter_all(self, *, org_path: str) -> Iterator[Device]:
        """Every device under ``org_path``."""
        return iter(self._matching(org_path, None, None))


@dataclass
class MemoryGroupStore(MemoryStore):
    """``GroupStore``: groups by id and their members (a member is a device row)."""

    devices: MemoryDeviceStore
    groups: dict[str, Group] = field(default_factory=dict)
    #: (group id, device id) pairs
    memberships: set[tuple[str, str]] = field(default_factory=set)

    def add(self, group: Group) -> None:
        """Insert a group (Conflict if the id exists)."""
        if group.id in self.groups:
            raise Conflict(f"group {group.id} exists")
        self.groups[group.id] = group

    def get(self, group_id: str) -> Group | None:
        """One group by id."""
        return self.groups.get(group_id)

    def list_under(self, *, org_path: str) -> list[Group]:
        """Groups under ``org_path``, by id."""
        return sorted((g for g in self.groups.values() if under(g.org_path, org_path)),
                      key=lambda g: g.id)

    def add_member(self, group_id: str, device_id: str, at: datetime) -> None:
        """Put a device into a group (idempotent); a new membership moves the device's
        ``updated_at``."""
        if group_id not in self.groups or device_id not in self.devices.devices:
            raise Conflict("a group member must be a stored device of a stored group")
        if (group_id, device_id) not in self.memberships:
            self.memberships.add((group_id, device_id))
            self.devices.update(device_id, updated_at=at)

    def members(self, group_id: str) -> list[str]:
        """Device ids in a group, sorted."""
        return sorted(d for g, d in self.memberships if g == group_id)

    def groups_of(self, device_id: str) -> list[str]:
        """Ids of the groups a device is in, sorted."""
        return sorted(g for g, d in self.memberships if d == device_id)


@dataclass
class MemoryFleetCounts(MemoryStore):
    """``FleetCounts`` by a full recount of the rows (what the SQL counts must equal)."""

    devices: MemoryDeviceStore
    certificates: MemoryCertificateStore
    psks: MemoryPskStore
    oauth_clients: MemoryOAuthClientStore

    def _held(self) -> Iterator[HeldCredential]:
        """Every device credential of every kind (certificates, PSKs, OAuth clients)."""
        yield from held_credentials(self.certificates.certificates.values(),
                                    self.psks.psks.values(),
                                    self.oauth_clients.clients.values())

    def device_tallies(self, *, org_path: str) -> list[DeviceTally]:
        """Devices under ``org_path`` per org unit, type, state and site."""
        counted = Counter((d.org_path, d.type_name, str(d.state), d.site or "")
                          for d in self.devices.iter_all(org_path=org_path))
        return [DeviceTally(*key, count=n) for key, n in sorted(counted.items())]

    def credential_tally(
        self, *, org_path: str, now: datetime, rotation_age: timedelta,
        expiring_within: timedelta | None, max_age_by_type: dict[str, timedelta],
    ) -> CredentialTally:
        """Judged from every credential of the devices under ``org_path``."""
        return credential_tally(
            self.devices.iter_all(org_path=org_path), self._held(),
            now=now, rotation_age=rotation_age, expiring_within=expiring_within,
            max_age_by_type=max_age_by_type)

    def credential_page(
        self, *, org_path: str, status: CredentialStatus, now: datetime,
        rotation_age: timedelta, type_name: str | None = None, state: str | None = None,
        site: str | None = None, after_id: str | None = None, limit: int = 100,
    ) -> tuple[list[str], str | None]:
        """Every device judged from its credentials, then filtered."""
        verdicts = credential_status_by_device(self._held(), now=now,
                                                rotation_age=rotation_age)
        chosen = DeviceState(state) if state else None
        candidates = self.devices.page(org_path=org_path, type_name=type_name, state=chosen,
                                       site=site, after_id=after_id, limit=10**9)
        matched = [d.id for d in candidates
                   if verdicts.get(d.id, CredentialStatus.NONE) is status]
        return matched[:limit], matched[limit - 1] if len(matched) > limit else None
