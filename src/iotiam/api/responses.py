"""Typed answers of the core resources, for the OpenAPI document and for checking them.

Routes render domain objects to dicts (``schemas.render_*``); declaring one of these as a
route's ``response_model`` documents the shape (so that clients and schemathesis'
response checks know it) and validates each answer against it on the way out. Extra keys
are allowed and kept: a model names what is always there, not all that may be.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from iotiam.inventory.models import Criticality, DeviceClass, DeviceState, OrgUnitKind
from iotiam.kernel import Role
from iotiam.pki.models import CertificateStatus


class Out(BaseModel):
    """Base of the answers: known fields typed, further fields passed through."""

    model_config = ConfigDict(extra="allow")


class OrgUnitOut(Out):
    """An org unit."""

    id: str
    name: str
    kind: OrgUnitKind
    parent: str | None
    path: str
    created_at: str


class RotationOut(Out):
    """A device type's rotation policy."""

    certificate_lifetime_seconds: int | None
    grace_seconds: int
    max_credential_age_seconds: int


class DeviceTypeOut(Out):
    """A device type."""

    name: str
    device_class: DeviceClass
    criticality: Criticality
    description: str
    certificate_profile: str | None
    rotation: RotationOut


class DeviceOut(Out):
    """A device."""

    id: str
    type: str
    org: str | None
    state: DeviceState
    site: str | None
    location: str | None
    attributes: dict[str, str]
    created_at: str
    updated_at: str
    #: the gateway the device is registered under (absent in lists)
    via: str | None = None


class GroupOut(Out):
    """A group and its members."""

    id: str
    name: str
    org: str | None
    description: str
    members: list[str]


class CertificateOut(Out):
    """A certificate record (``pem`` where the answer carries it)."""

    serial: str
    issuer: str
    device: str | None
    org: str | None
    profile: str | None
    subject: str
    not_before: str
    not_after: str
    status: CertificateStatus
    sha256: str | None
    revoked_at: str | None
    revocation_reason: str | None


class TokenOut(Out):
    """An admin token (never its secret, except once in the answer that creates it)."""

    id: str
    name: str
    role: Role
    org: str | None
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None


class AuditRecordOut(Out):
    """An audit record, as in the JSON-lines export."""

    seq: int
    at: str
    tag: str
    actor: str
    org_path: str
    subject: str
    outcome: str
    reason: str | None
    details: dict[str, Any] | None
    prev_hash: str
    hash: str


class WhoamiOut(Out):
    """The caller."""

    name: str
    role: Role
    org: str | None
    org_path: str


class OrgUnitList(Out):
    """Org units."""

    items: list[OrgUnitOut]


class DeviceTypeList(Out):
    """Device types."""

    items: list[DeviceTypeOut]


class DevicePage(Out):
    """A page of devices; ``next`` is the ``after`` of the next page."""

    items: list[DeviceOut]
    next: str | None


class GroupList(Out):
    """Groups."""

    items: list[GroupOut]


class CertificateList(Out):
    """Certificates."""

    items: list[CertificateOut]


class TokenList(Out):
    """Admin tokens."""

    items: list[TokenOut]


class AuditPage(Out):
    """A page of audit records; ``next`` is the ``after`` of the next page."""

    items: list[AuditRecordOut]
    next: int | None


class SiteOut(Out):
    """A site: its time zone and networks."""

    name: str
    timezone: str
    networks: list[str]


class PolicyWriteOut(Out):
    """A stored policy version with its lint findings and the diff to the previous one."""

    name: str
    version: int
    findings: list[dict[str, Any]]
    diff: list[str]


class ReadinessCheckOut(Out):
    """One readiness check's answer; further fields are what it reports besides (the
    singleton jobs led, how long ago the change feed read)."""

    ready: bool
    detail: str


class ReadinessOut(Out):
    """Every readiness check passed (a 503 problem carries the same ``checks``)."""

    status: str
    checks: dict[str, ReadinessCheckOut]


class ImportRowOut(Out):
    """One row of a bulk import: the device it registered, or why it did not."""

    row: int
    device: str | None
    ok: bool
    error: str | None


class ImportOut(Out):
    """A bulk import's answer: counts and one result per row, in row order."""

    imported: int
    failed: int
    results: list[ImportRowOut]

