"""Credential hygiene: which bucket each device's certificates put it in."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from iotiam.inventory.models import CredentialStatus, CredentialTally, Device
from iotiam.pki.models import CertificateRecord, CertificateStatus

#: a certificate is renewed at this fraction of its lifetime (what the agent does) ...
RENEWAL_POINT = 2 / 3
#: ... give or take this fraction of the lifetime, so that a fleet does not renew at once
RENEWAL_JITTER = 0.05
#: how ``expiring`` is judged by default, for reports
EXPIRING_RULE = (f"past its renewal point ({RENEWAL_POINT:.0%} of its lifetime, "
                 f"+{RENEWAL_JITTER:.0%} jitter) and not renewed")


def renewal_overdue_at(certificate: CertificateRecord) -> datetime:
    """When a healthy renewer would certainly have replaced ``certificate``.

    Judged against each certificate's own lifetime: with 24 h certificates a fixed
    window of days would call every device "expiring".
    """
    return renewal_point(certificate.not_before, certificate.not_after)


def renewal_point(not_before: datetime, not_after: datetime) -> datetime:
    """:func:`renewal_overdue_at` of a certificate valid from ``not_before`` to ``not_after``."""
    return not_before + (not_after - not_before) * (RENEWAL_POINT + RENEWAL_JITTER)


def credential_status_by_device(
    certificates: Iterable[CertificateRecord],
    *,
    now: datetime,
    rotation_age: timedelta,
    expiring_within: timedelta | None = None,
) -> dict[str, CredentialStatus]:
    """Classify each device by its newest live certificate.

    A device with a live (issued, unexpired) certificate is ``expiring`` when that
    certificate is past its renewal point (:func:`renewal_overdue_at`: a newer one would
    be the newest) or, if ``expiring_within`` is given, ends within it;
    ``older-than-rotation-age`` when it
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
        elif now >= renewal_overdue_at(live) or (
                expiring_within is not None and live.not_after - now <= expiring_within):
            result[device_id] = CredentialStatus.EXPIRING
        elif now - live.not_before >= rotation_age:
            result[device_id] = CredentialStatus.OVERDUE_ROTATION
        else:
            result[device_id] = CredentialStatus.ACTIVE
    return result


def never_rotated_devices(
    certificates: Iterable[CertificateRecord],
    *,
    now: datetime,
    max_age_by_device: dict[str, timedelta],
) -> set[str]:
    """Devices whose live key was first certified longer ago than their type allows.

    Renewing onto the same key keeps the certificate fresh but not the key: the age
    that matters is the key's, counted from its first certificate.
    """
    first_seen: dict[tuple[str, str], datetime] = {}
    live_key: dict[str, tuple[datetime, str]] = {}
    for cert in certificates:
        if cert.device_id is None or cert.public_key_sha256 is None:
            continue
        key = (cert.device_id, cert.public_key_sha256)
        if key not in first_seen or cert.not_before < first_seen[key]:
            first_seen[key] = cert.not_before
        if cert.status is CertificateStatus.ISSUED and cert.not_after > now:
            current = live_key.get(cert.device_id)
            if current is None or cert.not_before > current[0]:
                live_key[cert.device_id] = (cert.not_before, cert.public_key_sha256)
    return {
        device_id
        for device_id, (_, key_hash) in live_key.items()
        if device_id in max_age_by_device
        and now - first_seen[(device_id, key_hash)] >= max_age_by_device[device_id]
    }


def credential_tally(
    devices: Iterable[Device],
    certificates: Iterable[CertificateRecord],
    *,
    now: datetime,
    rotation_age: timedelta,
    expiring_within: timedelta | None,
    max_age_by_type: dict[str, timedelta],
) -> CredentialTally:
    """Statuses and never-rotated keys of ``devices``, judged from every certificate.

    The full recount: the in-memory stores answer with it, and the maintained counts of
    the SQL stores must always equal it.
    """
    certificates = list(certificates)
    type_of = {d.id: d.type_name for d in devices}
    mine = [c for c in certificates if c.device_id in type_of]
    statuses = credential_status_by_device(mine, now=now, rotation_age=rotation_age,
                                           expiring_within=expiring_within)
    max_age = {device: max_age_by_type[kind] for device, kind in type_of.items()
               if kind in max_age_by_type}
    never_rotated = never_rotated_devices(mine, now=now, max_age_by_device=max_age)
    return CredentialTally(dict(Counter(str(s) for s in statuses.values())),
                           len(never_rotated))
