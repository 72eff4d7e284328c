"""Request bodies (pydantic) and the renderers that turn domain objects into JSON."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from iotiam.admin.models import AdminToken
from iotiam.audit.export import to_jsonl
from iotiam.audit.models import AuditRecord
from iotiam.inventory.models import (
    MAX_STATE_REASON,
    Criticality,
    Device,
    DeviceClass,
    DeviceState,
    DeviceType,
    Group,
    OrgUnit,
    OrgUnitKind,
)
from iotiam.kernel import Role
from iotiam.pki.models import CertificateRecord

#: the largest integer any field or query parameter takes: the largest every JSON
#: implementation holds exactly (RFC 7493 §2.2), and well inside the 64 bits SQLite and
#: PostgreSQL store. Python's int has no bound of its own, so an integer without a maximum
#: meets ``OverflowError`` somewhere (a ``timedelta``, a database bind).
MAX_JSON_INT = 2**53 - 1


class Body(BaseModel):
    """Base for request bodies: unknown fields are an error, not silently dropped.

    Integers are ``StrictInt`` and booleans ``StrictBool``: JSON keeps ``false``, ``0``,
    ``1.0`` and ``"1"`` apart, and so does the API (a ``false`` TTL is a client bug, not 0).
    Enums and datetimes still come from their JSON strings.
    """

    model_config = ConfigDict(extra="forbid")


class DeviceIn(Body):
    """Register a device."""

    id: str = Field(max_length=128)
    type: str = Field(max_length=128)
    org: str | None = Field(default=None, max_length=128)
    site: str | None = Field(default=None, max_length=256)
    location: str | None = Field(default=None, max_length=256)
    attributes: dict[str, str] = Field(default_factory=dict)
    #: the gateway the device is registered under (docs/gateways.md)
    via: str | None = Field(default=None, max_length=128)


class StateChangeIn(Body):
    """Move a device to another lifecycle state."""

    state: DeviceState
    reason: str = Field(default="", max_length=MAX_STATE_REASON)


class ImportRowIn(Body):
    """One row of a bulk import, with its row number in the source file."""

    row: StrictInt = Field(ge=0, le=MAX_JSON_INT)
    data: dict[str, Any]


class ImportIn(Body):
    """A chunk of a bulk import."""

    rows: list[ImportRowIn] = Field(max_length=5000)


class OrgUnitIn(Body):
    """Create an org unit."""

    id: str = Field(max_length=128)
    name: str = Field(default="", max_length=256)
    kind: OrgUnitKind
    parent: str = Field(max_length=128)


class DeviceTypeIn(Body):
    """Create a device type."""

    name: str = Field(max_length=128)
    device_class: DeviceClass
    criticality: Criticality = Criticality.MEDIUM
    description: str = Field(default="", max_length=1000)
    certificate_profile: str | None = None


class RotationIn(Body):
    """A device type's rotation policy (the bounds of ``inventory.models.RotationPolicy``)."""

    certificate_lifetime_seconds: StrictInt | None = Field(default=None, ge=30,
                                                           le=825 * 86400)
    grace_seconds: StrictInt = Field(default=3 * 86400, ge=0, le=90 * 86400)
    max_credential_age_seconds: StrictInt = Field(default=30 * 86400, ge=60,
                                                  le=3650 * 86400)


class GroupIn(Body):
    """Create a group."""

    id: str = Field(max_length=128)
    name: str = Field(default="", max_length=256)
    org: str | None = None
    description: str = Field(default="", max_length=1000)


class GroupMemberIn(Body):
    """Add a device to a group."""

    device: str = Field(max_length=128)


class CertificateIn(Body):
    """Issue a certificate for a device from a PKCS#10 CSR."""

    device: str = Field(max_length=128)
    csr: str = Field(max_length=32 * 1024)
    profile: str | None = None


class RevokeIn(Body):
    """Revoke with an RFC 5280 reason."""

    reason: str = Field(default="unspecified", max_length=64)


class ClaimIn(Body):
    """Create a one-time claim token."""

    ttl_seconds: StrictInt = Field(default=600, ge=30, le=30 * 86400)


class BatchClaimIn(Body):
    """One-time claim tokens for many devices."""

    devices: list[str] = Field(min_length=1, max_length=1000)
    ttl_seconds: StrictInt = Field(default=600, ge=30, le=30 * 86400)


class TokenIn(Body):
    """Create an admin token."""

    name: str = Field(max_length=200)
    role: Role
    org: str | None = None
    ttl_seconds: StrictInt | None = Field(default=None, gt=0, le=10 * 365 * 86400)


def render_org_unit(unit: OrgUnit) -> dict[str, Any]:
    """JSON for an org unit."""
    return {"id": unit.id, "name": unit.name, "kind": str(unit.kind), "parent": unit.parent_id,
            "path": unit.path, "created_at": unit.created_at.isoformat()}


def render_device_type(t: DeviceType) -> dict[str, Any]:
    """JSON for a device type."""
    lifetime = t.rotation.certificate_lifetime
    return {"name": t.name, "device_class": str(t.device_class),
            "criticality": str(t.criticality), "description": t.description,
            "certificate_profile": t.certificate_profile,
            "rotation": {
                "certificate_lifetime_seconds": int(lifetime.total_seconds()) if lifetime
                else None,
                "grace_seconds": int(t.rotation.grace_period.total_seconds()),
                "max_credential_age_seconds": int(t.rotation.max_credential_age.total_seconds()),
            }}


def render_device(d: Device) -> dict[str, Any]:
    """JSON for a device."""
    return {"id": d.id, "type": d.type_name, "org": d.org_unit_id, "state": str(d.state),
            "site": d.site, "location": d.location, "attributes": d.attributes,
            "created_at": d.created_at.isoformat(), "updated_at": d.updated_at.isoformat()}


def render_group(g: Group, members: list[str]) -> dict[str, Any]:
    """JSON for a group with its members."""
    return {"id": g.id, "name": g.name, "org": g.org_unit_id, "description": g.description,
            "members": members}


def render_certificate(c: CertificateRecord, *, with_pem: bool = True) -> dict[str, Any]:
    """JSON for a certificate record."""
    body: dict[str, Any] = {
        "serial": c.serial_hex,
        "issuer": c.issuer_id,
        "device": c.device_id,
        "org": c.org_unit_id,
        "profile": c.profile,
        "subject": c.subject,
        "not_before": c.not_before.isoformat(),
        "not_after": c.not_after.isoformat(),
        "status": str(c.status),
        "sha256": c.fingerprint_sha256,
        "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
        "revocation_reason": str(c.revocation_reason) if c.revocation_reason else None,
    }
    if with_pem:
        body["pem"] = c.pem
    return body


def render_token(t: AdminToken) -> dict[str, Any]:
    """JSON for an admin token (never the secret)."""
    return {"id": t.id, "name": t.name, "role": str(t.role), "org": t.org_unit_id,
            "created_at": t.created_at.isoformat(), "created_by": t.created_by,
            "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}


def render_audit(r: AuditRecord) -> dict[str, Any]:
    """JSON for an audit record (the same fields as the JSON-lines export)."""
    body: dict[str, Any] = json.loads(to_jsonl(r))
    return body
