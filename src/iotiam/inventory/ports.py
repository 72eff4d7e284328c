"""Storage the inventory needs, and what it offers the other domains: looking a device
up as a caller may see it, and moving a device along its lifecycle inside their
transaction.

The device store is split by who may do what: every domain reads devices
(:class:`DeviceReader`); the domains that issue or end credentials make the few changes
a credential has on its holder (:class:`CredentialHolders`); enrollment registers a
device it meets first (:class:`DeviceRegistry`); only the inventory's own unit of work
has everything (:class:`DeviceStore`, with ``set_state``). Another domain moves a device
to another state through :class:`DeviceLifecycle`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.errors import NotFound
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
from iotiam.kernel import Principal

if TYPE_CHECKING:
    # the PKI's ports name the inventory's stores: only the type checker reads both
    from iotiam.pki.ports import CertificateStore


class OrgUnitStore(Protocol):
    """The org-unit tree."""

    def add(self, unit: OrgUnit) -> None:
        """Insert a new org unit (Conflict if the id exists)."""
        ...

    def get(self, unit_id: str) -> OrgUnit | None:
        """One org unit by id."""
        ...

    def get_many(self, unit_ids: Sequence[str]) -> dict[str, OrgUnit]:
        """The org units among these ids, by id (one query: a bulk import's rows)."""
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

    def known(self, names: Sequence[str]) -> set[str]:
        """Which of these device type names exist (one query: a bulk import's rows)."""
        ...

    def list_all(self) -> list[DeviceType]:
        """All device types."""
        ...

    def set_rotation(self, name: str, rotation: RotationPolicy) -> None:
        """Replace a device type's rotation policy."""
        ...


class DeviceReader(Protocol):
    """Devices, read: what every domain that looks devices up gets."""

    def get(self, device_id: str, *, for_update: bool = False) -> Device | None:
        """One device by id (``for_update`` locks its row until the transaction ends)."""
        ...

    def get_many(self, device_ids: Sequence[str]) -> dict[str, Device]:
        """The registered devices among these ids, by id."""
        ...

    def exists(self, device_ids: Sequence[str]) -> set[str]:
        """Which of these ids are already registered."""
        ...

    def page(
        self,
        *,
        org_path: str,
        type_name: str | None = None,
        state: DeviceState | None = None,
        after_id: str | None = None,
        limit: int = 100,
        site: str | None = None,
    ) -> list[Device]:
        """Devices under ``org_path`` in id order, keyset-paginated by ``after_id``."""
        ...

    def count(self, *, org_path: str, type_name: str | None = None,
              state: DeviceState | None = None, site: str | None = None) -> int:
        """How many devices under ``org_path`` match the filters."""
        ...

    def iter_all(self, *, org_path: str) -> Iterator[Device]:
        """Every device under ``org_path``."""
        ...


class CredentialHolders(DeviceReader, Protocol):
    """Devices, as the domains that give them credentials (the PKI, the PSK service)
    may change them, inside their own transaction.

    These are the consequences a credential has on its holder, so they belong in the
    transaction that issues or ends the credential; none of them moves a device into a
    state the inventory did not allow (``inventory/lifecycle.py``). Everything else about
    a device (its state, its org unit, registering it) stays with the inventory.
    """

    def activate_if_pending(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move pending devices to active, other states stay: the pending -> active
        transition of ``inventory/lifecycle.py`` happens when a device gets its first
        certificate, in the transaction that issues it."""
        ...

    def touch(self, device_ids: Sequence[str], at: datetime) -> None:
        """Move the devices' ``updated_at``: their standing changed (a new credential), so
        decision caches and the broker sync read them again."""
        ...

    def end_tokens(self, device_id: str, at: datetime) -> None:
        """Access tokens of the device issued until ``at`` stay dead
        (``tokens_not_before``): a revoked certificate takes the tokens it stood for
        along, in the transaction that revokes it."""
        ...


class DeviceRegistry(DeviceReader, Protocol):
    """Devices, as enrollment may change them: it registers a device it meets first.

    A device that first shows up at enrollment (an IDevID first contact, an approved
    enrollment request) gets its inventory row in the enrollment transaction, before its
    certificate is reserved in that same transaction (issuance reads the device), so a
    refused enrollment leaves no device behind (``enrollment/onboarding.py``). The rows
    it adds are new and ``pending`` (``onboarding.new_device``); such a device moves on
    only through the inventory and the PKI. No other write of the device store is
    enrollment's (an ownership transfer moves its device through :class:`DeviceOwnership`).
    """

    def add(self, device: Device) -> None:
        """Insert a device (Conflict if the id exists)."""
        ...


class DeviceOwnership(Protocol):
    """What the inventory offers an ownership transfer (enrollment): moving a device to
    another org unit and out of the groups that do not reach it, in the transfer's own
    transaction, beside the revocation of its credentials."""

    def move_device(
        self, device_id: str, org_unit_id: str, org_path: str, at: datetime
    ) -> None:
        """Put a device into another org unit, back in the pending state."""
        ...

    def leave_groups_outside(self, device_id: str, org_path: str) -> list[str]:
        """Drop the device from every group not above ``org_path``; return their ids."""
        ...


class DeviceStore(CredentialHolders, DeviceRegistry, Protocol):
    """Devices, everything: the inventory's own store."""

    def add_new(self, devices: Sequence[Device]) -> set[str]:
        """Insert many devices at once (a bulk import's batch, distinct ids); the ids
        another transaction stored first are skipped, not an error, and returned: those
        rows wrote nothing."""
        ...

    def set_state(self, device_id: str, state: DeviceState, at: datetime) -> None:
        """Move a device to another lifecycle state.

        Any state but ``active`` also does ``end_tokens(device_id, at)``: a token from
        before a quarantine or a suspension does not come back when it is lifted.
        """
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


class DeviceUnitOfWork(Protocol):
    """A transaction that holds the devices: what another domain's unit of work has when
    it reads devices or hands them to :class:`DeviceLifecycle`. A domain that may write
    some device rows narrows ``devices`` further (:class:`CredentialHolders`,
    :class:`DeviceRegistry`); only the inventory's own has the whole :class:`DeviceStore`."""

    @property
    def devices(self) -> DeviceReader:
        """Devices (read)."""
        ...

    @property
    def changes(self) -> ChangeRecorder:
        """Publishes what changed when the transaction commits (``iotiam.changes``)."""
        ...


def visible_device(
    devices: DeviceReader, actor: Principal, device_id: str, *, for_update: bool = False
) -> Device:
    """A device inside the caller's subtree, read in the caller's transaction through
    its ``devices``, or NotFound (never Forbidden, G9)."""
    device = devices.get(device_id, for_update=for_update)
    if device is None or not actor.sees(device.org_path):
        raise NotFound(f"device {device_id!r} not found")
    return device


class FleetCounts(Protocol):
    """The inventory report's counts, kept as the fleet changes: reading them costs the
    same at a million devices as at ten (never a scan of the devices or certificates)."""

    def device_tallies(self, *, org_path: str) -> list[DeviceTally]:
        """Devices under ``org_path`` per org unit, type, state and site (no zero rows)."""
        ...

    def credential_tally(
        self, *, org_path: str, now: datetime, rotation_age: timedelta,
        expiring_within: timedelta | None, max_age_by_type: dict[str, timedelta],
    ) -> CredentialTally:
        """Credential statuses and never-rotated keys of the devices under ``org_path``
        at ``now``, exactly as ``credential_status.credential_tally`` judges them."""
        ...

    def credential_page(
        self, *, org_path: str, status: CredentialStatus, now: datetime,
        rotation_age: timedelta, type_name: str | None = None, state: str | None = None,
        site: str | None = None, after_id: str | None = None, limit: int = 100,
    ) -> tuple[list[str], str | None]:
        """Ids of the devices under ``org_path`` (and of this type, state and site) whose
        credential status at ``now`` is ``status`` (as ``credential_status_by_device``
        judges it; ``none``: no certificate ever), in id order after ``after_id``; and
        the next page's cursor, None at the end. At most ``limit`` candidates are read,
        so a page may hold fewer ids and still have a next one."""
        ...


class InventoryUnitOfWork(DeviceUnitOfWork, AuditUnitOfWork, Protocol):
    """The stores inventory use cases work with, inside one transaction."""

    @property
    def devices(self) -> DeviceStore:
        """Devices: the inventory registers them and moves them along their lifecycle."""
        ...

    @property
    def org_units(self) -> OrgUnitStore:
        """The org-unit tree."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """Device types."""
        ...

    @property
    def groups(self) -> GroupStore:
        """Device groups."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Certificates."""
        ...

    @property
    def fleet_counts(self) -> FleetCounts:
        """The report's maintained counts."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an error inside rolls back only what it did (one
        imported row)."""
        ...


UnitOfWorkT = TypeVar("UnitOfWorkT")
UnitOfWorkT_contra = TypeVar("UnitOfWorkT_contra", contravariant=True)


class DeviceLifecycle(Protocol[UnitOfWorkT_contra]):
    """Moves a device along its lifecycle inside another domain's transaction, the way
    the inventory does it (implemented by the inventory service). Response quarantines
    devices with it and lifts quarantines.

    Generic in the unit of work like :class:`CredentialRevoker`: the caller's own unit of
    work reads devices only (``DeviceUnitOfWork``); the lifecycle writes the state through
    the inventory's store of that same transaction (the SQL unit of work is every
    domain's), so the caller never holds ``set_state`` itself.
    """

    def quarantine(self, uow: UnitOfWorkT_contra, device: Device) -> None:
        """Move ``device`` (the caller read it for update) into quarantine, or Conflict if
        its state may not go there."""
        ...

    def restore(self, uow: UnitOfWorkT_contra, device: Device, state: DeviceState) -> None:
        """Move a quarantined ``device`` back to ``state``, the one it was in before."""
        ...


class CredentialRevoker(Protocol[UnitOfWorkT_contra]):
    """Takes a device's credentials away when it leaves service, inside the caller's
    transaction (implemented by the PKI and the PSK service).

    Generic in the unit of work the revoker works in: a caller (decommissioning,
    ownership transfer, the playbook's revoke) is generic in its own, bound to what it
    needs itself, and takes a revoker of that same type, so the transactions it opens
    are ones the revoker can work in too (the SQL unit of work is every domain's).
    """

    def revoke_device_credentials(
        self, uow: UnitOfWorkT_contra, actor: Principal, device: Device, reason: str
    ) -> int:
        """Revoke every live credential of ``device`` inside ``uow``; return how many."""
        ...


class ChildLinks(Protocol[UnitOfWorkT_contra]):
    """Places a device under a gateway inside the registration's transaction
    (implemented by ``gateways.service.Gateways``; docs/gateways.md)."""

    def check(self, uow: UnitOfWorkT_contra, actor: Principal, child: Device, via: str
              ) -> object:
        """Refuse (raise) unless ``child`` may be placed under gateway ``via``."""
        ...

    def attach(self, uow: UnitOfWorkT_contra, actor: Principal, child: Device, via: str
               ) -> object:
        """Place the newly registered ``child`` under gateway ``via`` and key it."""
        ...


class AllCredentials(Generic[UnitOfWorkT]):
    """Revokes through several revokers (certificates, PSKs, ...) in one transaction."""

    def __init__(self, *revokers: CredentialRevoker[UnitOfWorkT]) -> None:
        self._revokers = revokers

    def revoke_device_credentials(
        self, uow: UnitOfWorkT, actor: Principal, device: Device, reason: str
    ) -> int:
        """Sum of what each revoker revoked."""
        return sum(r.revoke_device_credentials(uow, actor, device, reason)
                   for r in self._revokers)
