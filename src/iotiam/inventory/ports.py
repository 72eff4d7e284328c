"""Storage the inventory needs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from iotiam.unit_of_work import UnitOfWork

from iotiam.inventory.models import (
    Device,
    DeviceState,
    DeviceType,
    Group,
    OrgUnit,
    RotationPolicy,
)
from iotiam.kernel import Principal


class VisibleDevices(Protocol):
    """Finds a device for another domain's use case, in that use case's transaction, by
    the inventory's rule: another tenant's device is not found (G9). Implemented by
    ``inventory.service.Inventory``."""

    def visible_device(self, devices: DeviceStore, actor: Principal, device_id: str, *,
                       for_update: bool = False) -> Device:
        """The device if it lies inside ``actor``'s subtree, else NotFound."""
        ...


class OrgUnitStore(Protocol):
    """The org-unit tree."""

    def add(self, unit: OrgUnit) -> None:
        """Insert a new org unit (Conflict if the id exists)."""
        ...

    def get(self, unit_id: str) -> OrgUnit | None:
        """One org unit by id."""
        ...

    def list_under(self, path: str) -> list[OrgUnit]:
        """Every org unit whose path starts with ``path``."""
        ...


class DeviceTypeStore(Protocol):
    """Device types."""

    def add(self, device_type: DeviceType) -> None:
        """Insert a device type (Conflict if the name exists)."""
        ...

    def get(self, name: str) -> DeviceType | None:
        """One device type by name."""
        ...

    def list_all(self) -> list[DeviceType]:
        """All device types."""
        ...

    def set_rotation(self, name: str, rotation: RotationPolicy) -> None:
        """Replace a device type's rotation policy."""
        ...


class DeviceStore(Protocol):
    """Devices."""

    def add(self, device: Device) -> None:
        """Insert a device (Conflict if the id exists)."""
        ...

    def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        """One device by id."""
        ...

    def get_many(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The registered devices among these ids, by id."""
        ...

    def exists(self, device_ids: Sequence[str]) -> set[str]:
        """Which of these ids are already registered."""
        ...

    def set_state(self, device_id: str, state: DeviceState, at: datetime) -> None:
        """Move a device to another lifecycle state.

        Any state but ``active`` also does ``end_tokens(device_id, at)``: a token from
        before a quarantine or a suspension does not come back when it is lifted.
        """
        ...

    def end_tokens(self, device_id: str, at: datetime) -> None:
        """Access tokens of the device issued until ``at`` stay dead (``tokens_not_before``)."""
        ...

    def activate_if_pending(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move pending devices to active (first certificate); other states stay."""
        ...

    def touch(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at``: their standing changed (a new credential), so
        decision caches and the broker sync read them again."""
        ...

    def page(
        self,
        *,
        org_path: str,
        type_name: str | None = None,
        state: DeviceState | None = None,
        after_id: str | None = None,
        limit: int = 100,
    ) -> list[Device]:
        """Devices under ``org_path`` in id order, keyset-paginated by ``after_id``."""
        ...

    def count(self, *, org_path: str, type_name: str | None = None,
              state: DeviceState | None = None) -> int:
        """How many devices under ``org_path`` match the filters."""
        ...

    def iter_all(self, *, org_path: str) -> Iterator[Device]:
        """Every device under ``org_path``."""
        ...


class GroupStore(Protocol):
    """Device groups."""

    def add(self, group: Group) -> None:
        """Insert a group (Conflict if the id exists)."""
        ...

    def get(self, group_id: str) -> Group | None:
        """One group by id."""
        ...

    def list_under(self, *, org_path: str) -> list[Group]:
        """Groups under ``org_path``."""
        ...

    def add_member(self, group_id: str, device_id: str, at: datetime) -> None:
        """Put a device into a group (idempotent); a new membership is a change of the
        device (its ``updated_at`` moves), so the broker sync and the PDP see it."""
        ...

    def members(self, group_id: str) -> list[str]:
        """Device ids in a group."""
        ...


class CredentialRevoker(Protocol):
    """Takes a device's credentials away when it leaves service (implemented by the PKI)."""

    def revoke_device_credentials(
        self, uow: UnitOfWork, actor: Principal, device: Device, reason: str
    ) -> int:
        """Revoke every live credential of ``device`` inside ``uow``; return how many."""
        ...


class AllCredentials:
    """Revokes through several revokers (certificates, PSKs, ...) in one transaction."""

    def __init__(self, *revokers: CredentialRevoker) -> None:
        self._revokers = revokers

    def revoke_device_credentials(
        self, uow: UnitOfWork, actor: Principal, device: Device, reason: str
    ) -> int:
        """Sum of what each revoker revoked."""
        return sum(r.revoke_device_credentials(uow, actor, device, reason)
                   for r in self._revokers)
