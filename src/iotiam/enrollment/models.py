"""Enrollment value types: claim tokens, manufacturer trust, pending requests."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ClaimToken:
    """A one-time secret that lets one device enroll once (G8); only its hash is stored."""

    id: str
    device_id: str
    org_path: str
    secret_hash: str
    created_at: datetime
    expires_at: datetime
    created_by: str
    used_at: datetime | None = None


@dataclass(frozen=True)
class Manufacturer:
    """A manufacturer CA whose IDevID certificates iotiam trusts for first contact."""

    id: str
    name: str
    org_unit_id: str
    org_path: str
    certificate_pem: str
    created_at: datetime


@dataclass(frozen=True)
class ManifestEntry:
    """One device of a manufacturing manifest: which IDevID serial becomes which device."""

    manufacturer_id: str
    serial_number: str
    device_id: str
    device_type: str
    org_unit_id: str | None = None
    public_key_sha256: str | None = None


class RequestStatus(enum.StrEnum):
    """Where a held enrollment request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    ENROLLED = "enrolled"


@dataclass(frozen=True)
class EnrollmentRequest:
    """An enrollment that was not allowed outright and waits for an admin."""

    id: str
    device_id: str
    org_path: str
    reason: str
    source: str
    csr_pem: str
    csr_sha256: str
    status: RequestStatus
    created_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    certificate_serial: str | None = None
