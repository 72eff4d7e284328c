"""Putting a device that first showed up at enrollment into the inventory.

The device row is written before the certificate is issued (issuance reads the
device), so everything issuance would refuse is checked first: a request that
fails leaves no half-registered device behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.changes import DeviceChanged
from iotiam.errors import Conflict, Forbidden, IdNotAvailable
from iotiam.inventory.models import Device, DeviceState, DeviceType, OrgUnit
from iotiam.pki.csr import validate_csr
from iotiam.pki.issuing import device_identity, public_key_sha256
from iotiam.pki.profiles import get_profile
from iotiam.unit_of_work import UnitOfWork


def new_device(device_id: str, device_type: DeviceType, unit: OrgUnit, now: datetime,
               attributes: dict[str, str] | None = None) -> Device:
    """The inventory row of a device seen for the first time (pending until certified)."""
    return Device(id=device_id, type_name=device_type.name, org_unit_id=unit.id,
                  org_path=unit.path, state=DeviceState.PENDING, site=None, location=None,
                  attributes=dict(attributes or {}), created_at=now, updated_at=now)


def check_issuable(
    uow: UnitOfWork, csr: x509.CertificateSigningRequest, device: Device,
    device_type: DeviceType, profile: str | None, *, admin: bool,
) -> None:
    """What ``Pki.issue_certificate(fresh_key=True)`` would refuse, checked up front."""
    chosen = get_profile(profile or device_type.certificate_profile)
    if chosen.server_auth and chosen.name != device_type.certificate_profile and not admin:
        raise Forbidden(
            f"the {chosen.name!r} profile needs an admin for a {device_type.name} device")
    key = validate_csr(csr, device_identity(device))
    if uow.certificates.with_public_key(public_key_sha256(key)):
        raise Conflict("this public key is already certified (a replayed request or a "
                       "shared key); generate a new key")


def register(uow: UnitOfWork, audit: AuditTrail, device: Device, actor: str,
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
