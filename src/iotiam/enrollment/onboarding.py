"""Putting a device that first showed up at enrollment into the inventory.

The device row is written before the certificate is issued (issuance reads the
device), so everything issuance would refuse is checked first
(``DeviceCertificates.check_issuable``): a request that fails leaves no half-registered
device behind. That is why enrollment inserts the row itself, in its own transaction,
through the one device write the inventory offers it (``inventory.ports.DeviceRegistry``:
``add``, no state changes): going through the inventory's service would need a
transaction of its own and could leave a device without its certificate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import DeviceChanged
from iotiam.enrollment.ports import EnrollmentUnitOfWork
from iotiam.errors import IdNotAvailable
from iotiam.inventory.models import Device, DeviceState, DeviceType, OrgUnit


def new_device(device_id: str, device_type: DeviceType, unit: OrgUnit, now: datetime,
               attributes: dict[str, str] | None = None) -> Device:
    """The inventory row of a device seen for the first time (pending until certified)."""
    return Device(id=device_id, type_name=device_type.name, org_unit_id=unit.id,
                  org_path=unit.path, state=DeviceState.PENDING, site=None, location=None,
                  attributes=dict(attributes or {}), created_at=now, updated_at=now)


def register(uow: EnrollmentUnitOfWork, audit: Auditor, device: Device, actor: str,
             details: dict[str, Any]) -> None:
    """Insert the device and its audit record in the caller's transaction."""
    if uow.devices.get(device.id) is not None:
        raise IdNotAvailable("device id", device.id)
    uow.devices.add(device)
    uow.changes.record(DeviceChanged((device.id,), str(device.state)))
    audit.append(uow, AuditDraft(
        tag=AuditTag.DEVICE_REGISTERED, actor=actor, org_path=device.org_path,
        subject=f"device:{device.id}", details={"type": device.type_name, **details},
    ))
