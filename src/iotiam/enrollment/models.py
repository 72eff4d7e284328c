"""Enrollment value types: claim tokens, manufacturer trust, pending requests."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from iotiam.pki.models import CertificateRecord


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
    """A manufacturer CA whose IDevID certificates (IEEE 802.1AR) iotiam trusts for first
    contact; devices it vouches for land in ``org_unit_id`` as ``device_type``."""

    name: str
    org_unit_id: str
    org_path: str
    device_type: str
    certificate_pem: str
    subject: str
    fingerprint_sha256: str
    not_after: datetime
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class ManifestEntry:
    """One device of a manufacturing manifest: an IDevID serial number, which is also the
    device id, and optionally the SHA-256 of the IDevID's SubjectPublicKeyInfo."""

    manufacturer: str
    serial: str
    imported_at: datetime
    public_key_sha256: str | None = None
    enrolled_at: datetime | None = None
    #: the production batch the manifest named (``batch`` column)
    batch: str | None = None


@dataclass(frozen=True)
class ManifestRowResult:
    """Outcome of one row of a manifest import."""

    row: int
    serial: str | None
    ok: bool
    error: str | None = None


class RequestStatus(enum.StrEnum):
    """Where a held enrollment request stands."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    #: closed without an admin: the device qualified on a later poll (e.g. manifest imported)
    ENROLLED = "enrolled"


class HoldReason(enum.StrEnum):
    """Why a first contact was held for an admin instead of enrolled (a finding)."""

    UNKNOWN_MANUFACTURER = "unknown-manufacturer"
    SERIAL_NOT_IN_MANIFEST = "serial-not-in-manifest"
    UNKNOWN_DEVICE = "unknown-device"


@dataclass(frozen=True)
class EnrollmentRequest:
    """A first enrollment that was not allowed outright and waits for an admin.

    ``org_path`` is None when nothing ties the request to an org unit (an anonymous
    device, an unknown manufacturer): only root-scoped admins see those.
    """

    id: str
    device_id: str
    reason: HoldReason
    detail: str
    source: str
    presented: str
    csr_pem: str
    csr_sha256: str
    public_key_sha256: str
    status: RequestStatus
    created_at: datetime
    last_seen_at: datetime
    org_unit_id: str | None = None
    org_path: str | None = None
    manufacturer: str | None = None
    profile: str | None = None
    idevid_pem: str | None = None
    polls: int = 0
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_note: str | None = None
    certificate_serial: str | None = None


@dataclass(frozen=True)
class Held:
    """RFC 7030 §4.2.3: the request is queued; the client retries with the same CSR."""

    request: EnrollmentRequest
    retry_after_seconds: int


#: what a first contact without a claim token comes to
FirstContactOutcome = CertificateRecord | Held


@dataclass(frozen=True)
class Transfer:
    """What an ownership transfer did."""

    device_id: str
    from_org: str
    to_org: str
    credentials_revoked: int
    groups_left: list[str]
    claim: ClaimToken
    claim_token: str
