"""Pre-shared keys and the common credential view."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class CredentialKind(enum.StrEnum):
    """Kinds of device credentials iotiam manages."""

    CERTIFICATE = "certificate"
    PSK = "psk"


class PskStatus(enum.StrEnum):
    """A PSK is active until rotated away or revoked; a gateway child's scheduled
    rotation first makes a ``next`` one, valid beside the active one until promoted."""

    ACTIVE = "active"
    REVOKED = "revoked"
    NEXT = "next"


@dataclass(frozen=True)
class Psk:
    """A TLS-PSK identity for a constrained device; the key is stored encrypted."""

    id: str
    identity: str
    device_id: str
    org_path: str
    encrypted_key: bytes
    status: PskStatus
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None = None
    revocation_reason: str | None = None
    replaced_by: str | None = None


@dataclass(frozen=True)
class CredentialView:
    """One row of a device's credential list, whatever the kind."""

    kind: CredentialKind
    id: str
    device_id: str
    status: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
