"""Credential hygiene: which bucket each device's certificates put it in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from iotiam.inventory.models import CredentialStatus
from iotiam.pki.models import CertificateRecord, CertificateStatus


def credential_status_by_device(
    certificates: Iterable[CertificateRecord],
    *,
    now: datetime,
    expiring_within: timedelta,
    rotation_age: timedelta,
) -> dict[str, CredentialStatus]:
    """Classify each device by its newest live certificate.

    A device with a live (issued, unexpired) certificate is ``expiring`` when that
    certificate ends within ``expiring_within``, ``older-than-rotation-age`` when it
    was issued longer ago than ``rotation_age``, otherwise ``active``. Without a live
    one it is ``expired`` if any unrevoked certificate expired, else ``revoked``.
    """
    newest_live: dict[str, CertificateRecord] = {}
    has_expired: set[str] = set()
    seen: set[str] = set()
    for cert in certificates:
        if cert.device_id is None:
            continue
        seen.add(cert.device_id)
        if cert.status is CertificateStatus.ISSUED:
            if cert.not_after <= now:
                has_expired.add(cert.device_id)
                continue
            current = newest_live.get(cert.device_id)
            if current is None or cert.not_before > current.not_before:
                newest_live[cert.device_id] = cert
    result: dict[str, CredentialStatus] = {}
    for device_id in seen:
        live = newest_live.get(device_id)
        if live is None:
            result[device_id] = (
                CredentialStatus.EXPIRED if device_id in has_expired else CredentialStatus.REVOKED
            )
        elif live.not_after - now <= expiring_within:
            result[device_id] = CredentialStatus.EXPIRING
        elif now - live.not_before >= rotation_age:
            result[device_id] = CredentialStatus.OVERDUE_ROTATION
        else:
            result[device_id] = CredentialStatus.ACTIVE
    return result
