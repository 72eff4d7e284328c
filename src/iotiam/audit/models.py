"""Audit records and the closed set of event tags (``source:subject:action``)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from iotiam.errors import Forbidden, IamError, NotFound, Unauthenticated


class AuditTag(enum.StrEnum):
    """Every event iotiam audits. Grep a tag to find each place that emits it."""

    ORG_UNIT_CREATED = "admin:org-unit:created"
    DEVICE_TYPE_CREATED = "admin:device-type:created"
    DEVICE_TYPE_ROTATION_CHANGED = "admin:device-type:rotation-changed"
    DEVICE_REGISTERED = "admin:device:registered"
    DEVICE_STATE_CHANGED = "admin:device:state-changed"
    DEVICE_IMPORTED = "admin:device:imported"
    DEVICE_REGISTRATION_REFUSED = "admin:device:registration-refused"
    GROUP_CREATED = "admin:group:created"
    GROUP_MEMBER_ADDED = "admin:group:member-added"
    CERTIFICATE_ISSUED = "device:certificate:issued"
    CERTIFICATE_REFUSED = "device:certificate:refused"
    CERTIFICATE_REVOKED = "device:certificate:revoked"
    REVOCATION_REFUSED = "device:certificate:revocation-refused"
    REVOCATION_SET_STARTED = "admin:revocation-set:started"
    REVOCATION_SET_BATCH_REVOKED = "admin:revocation-set:batch-revoked"
    REVOCATION_SET_REFUSED = "admin:revocation-set:refused"
    REVOCATION_SET_DRILLED = "admin:revocation-set:drilled"
    CRL_PUBLISHED = "pki:crl:published"
    CA_CREATED = "pki:ca:created"
    CA_ROTATED = "admin:ca:rotated"
    CA_MIGRATION_REQUESTED = "admin:ca:migration-requested"
    CA_REVOKED = "admin:ca:revoked"
    CA_CERTIFICATES_REVOKED = "admin:ca:certificates-revoked"
    CA_CHANGE_REFUSED = "admin:ca:refused"
    CA_COMPROMISE_DRILLED = "admin:ca:compromise-drilled"
    SERVER_CERTIFICATE_REISSUED = "pki:server-certificate:reissued"
    BROKER_CERTIFICATE_REISSUED = "pki:broker-certificate:reissued"
    TOKEN_CREATED = "admin:token:created"  # noqa: S105
    TOKEN_REVOKED = "admin:token:revoked"  # noqa: S105
    ACCESS_DENIED = "admin:access:denied"
    REQUEST_REFUSED = "admin:request:refused"
    CLAIM_CREATED = "admin:claim:created"
    ENROLLMENT_SUCCEEDED = "device:enrollment:succeeded"
    ENROLLMENT_REFUSED = "device:enrollment:refused"
    REENROLLMENT_SUCCEEDED = "device:reenrollment:succeeded"
    REENROLLMENT_REFUSED = "device:reenrollment:refused"
    RECOVERY_SUCCEEDED = "device:recovery:succeeded"
    RECOVERY_REFUSED = "device:recovery:refused"
    PSK_ISSUED = "device:psk:issued"
    PSK_ROTATED = "device:psk:rotated"
    PSK_REVOKED = "device:psk:revoked"
    PSK_EXPORTED = "admin:psk:exported"
    #: a gateway child's next PSK made, valid beside its active one for the overlap
    PSK_NEXT_ISSUED = "device:psk:next-issued"
    #: a next PSK became the active one (the old one revoked)
    PSK_PROMOTED = "device:psk:promoted"
    MANUFACTURER_REGISTERED = "admin:manufacturer:registered"
    MANIFEST_IMPORTED = "admin:manufacturer:manifest-imported"
    #: a finding: an unknown device or manufacturer asked to enroll and was held
    ENROLLMENT_HELD = "device:enrollment:held"
    ENROLLMENT_APPROVED = "admin:enrollment:approved"
    ENROLLMENT_REJECTED = "admin:enrollment:rejected"
    DEVICE_TRANSFERRED = "admin:device:transferred"
    POLICY_WRITTEN = "admin:policy:written"
    POLICY_ATTACHED = "admin:policy:attached"
    POLICY_DETACHED = "admin:policy:detached"
    POLICY_REFUSED = "admin:policy:refused"
    SITE_SAVED = "admin:site:saved"
    INSTALLATION_INITIALIZED = "system:installation:initialized"
    OAUTH_CLIENT_CREATED = "admin:oauth-client:created"
    OAUTH_CLIENT_REVOKED = "admin:oauth-client:revoked"
    OAUTH_CLIENT_REFUSED = "admin:oauth-client:refused"
    OAUTH_TOKEN_ISSUED = "device:access-token:issued"  # noqa: S105
    OAUTH_TOKEN_REFUSED = "device:access-token:refused"  # noqa: S105
    OAUTH_TOKEN_REVOKED = "device:access-token:revoked"  # noqa: S105
    #: introspection or revocation of a token outside the caller's reach (G9)
    OAUTH_TOKEN_ACCESS_DENIED = "admin:access-token:denied"  # noqa: S105
    OAUTH_SIGNING_KEY_ROTATED = "pki:oauth-signing-key:rotated"
    OAUTH_DEVICE_CODE_REQUESTED = "device:device-code:requested"
    OAUTH_DEVICE_CODE_APPROVED = "admin:device-code:approved"
    OAUTH_DEVICE_CODE_DENIED = "admin:device-code:denied"
    FIRMWARE_SIGNER_REGISTERED = "admin:firmware-signer:registered"
    #: a signer stopped being trusted; its devices were judged again
    FIRMWARE_SIGNER_REVOKED = "admin:firmware-signer:revoked"
    FIRMWARE_REGISTERED = "admin:firmware:registered"
    #: a firmware signer, image or rule refused (unsigned metadata, unknown signer, ...)
    FIRMWARE_REFUSED = "admin:firmware:refused"
    FIRMWARE_RULE_SET = "admin:firmware-rule:set"
    ATTESTATION_CHALLENGED = "device:attestation:challenged"
    #: evidence verified; the details say whether the firmware is compliant and why
    ATTESTATION_VERIFIED = "device:attestation:verified"
    ATTESTATION_REFUSED = "device:attestation:refused"
    #: a device registered (or imported) under a gateway, with a PSK for it to hold
    GATEWAY_CHILD_ATTACHED = "admin:gateway-child:attached"
    #: a child moved to another gateway (re-keyed), or the move refused
    GATEWAY_CHILD_MOVED = "admin:gateway-child:moved"
    #: a child's PSK replaced by the rotation job: on schedule, or because its gateway
    #: lost its standing (the details say which, and the old and new PSK)
    GATEWAY_CHILD_REKEYED = "system:gateway-child:rekeyed"
    #: a gateway fetched its children's sealed keys, or was refused them
    GATEWAY_CHILDREN_DELIVERED = "device:gateway-children:delivered"
    #: a gateway reported a child's first connection with its next key (promoted), or
    #: the report refused
    GATEWAY_CHILD_KEY_USED = "device:gateway-child-key:used"
    #: a gateway's relayed action for a child, judged: permitted or refused (and why)
    GATEWAY_RELAY_DECIDED = "device:gateway-relay:decided"
    #: a gateway reported a child it may not speak for (a finding is raised too)
    GATEWAY_SIGHTING_REFUSED = "device:gateway-sighting:refused"
    FINDING_RAISED = "detection:finding:raised"
    FINDING_ESCALATED = "detection:finding:escalated"
    FINDING_UPDATED = "admin:finding:state-changed"
    DETECTION_MODE_SET = "admin:detection-mode:set"
    PLAYBOOK_SET = "admin:playbook:set"
    MITIGATION_APPLIED = "detection:mitigation:applied"
    MITIGATION_LIFTED = "admin:mitigation:lifted"
    #: a bulk event upload refused whole (not JSON, too large, no rights)
    EVENTS_REFUSED = "admin:events:refused"
    #: one batch of sightings imported (its count and the digest of its rows)
    SIGHTINGS_IMPORTED = "admin:sightings:imported"
    #: a discovery import refused whole (unknown source, not that format, no rights)
    DISCOVERY_IMPORT_REFUSED = "admin:discovery-import:refused"
    #: discovered assets brought under management: each is now a registered device
    ASSETS_ADOPTED = "admin:discovery-asset:adopted"
    #: the identity risk register was judged again in full
    RISK_REGISTER_REBUILT = "system:risk-register:rebuilt"
    #: an admin accepted one factor of a register entry, with a reason, until a date
    RISK_FACTOR_ACCEPTED = "admin:risk-factor:accepted"
    #: a person signed in to the web console (``details.via``: how they proved who they are)
    CONSOLE_SIGNED_IN = "admin:console-session:opened"
    CONSOLE_SIGN_IN_REFUSED = "admin:console-session:refused"
    CONSOLE_SIGNED_OUT = "admin:console-session:closed"


class Outcome(enum.StrEnum):
    """What happened to the audited request."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True)
class AuditDraft:
    """An event to append; the chain fills in sequence, time and hashes."""

    tag: AuditTag
    actor: str
    org_path: str
    subject: str
    outcome: Outcome = Outcome.SUCCESS
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def refused(draft: AuditDraft, error: IamError) -> AuditDraft:
    """The record of a refusal: denied (who may not, or what is not theirs) or failed."""
    denied = isinstance(error, Forbidden | Unauthenticated | NotFound)
    return replace(draft, outcome=Outcome.DENIED if denied else Outcome.FAILURE,
                   reason=error.detail[:500])


@dataclass(frozen=True)
class AuditRecord:
    """One link of the hash chain."""

    seq: int
    at: datetime
    tag: str
    actor: str
    org_path: str
    subject: str
    outcome: str
    reason: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class ChainHead:
    """The latest sequence number and hash, MAC'd with a key kept outside the database."""

    seq: int
    hash: str
    mac: str
    #: the Merkle compact range over records 1..seq (``Frontier.encode``); None on a head
    #: written before the tree existed (rebuilt from the records on the next append)
    frontier: str | None = None


@dataclass(frozen=True)
class VerifyReport:
    """Result of ``audit verify``."""

    ok: bool
    records: int
    head_seq: int
    problem: str | None = None
    first_bad_seq: int | None = None
    #: size of the latest signed checkpoint the chain was compared to (0: none)
    checkpoint_size: int = 0
    checkpoint_at: datetime | None = None


@dataclass(frozen=True)
class StoredCheckpoint:
    """A signed checkpoint as kept outside the database, with the state to extend it."""

    note: str
    at: datetime
    size: int
    #: the compact range of the tree it signed, and the hash of its last record, so the
    #: next checkpoint extends exactly this tree
    frontier: str
    last_hash: str
