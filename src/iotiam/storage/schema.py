"""Table definitions (SQLAlchemy Core). Alembic migrations create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, hands back aware UTC, refuses naive input."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to naive UTC for storage."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to UtcDateTime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """Attach UTC to what the database returns."""
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


metadata = MetaData()

org_units = Table(
    "org_units",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("parent_id", String(128), ForeignKey("org_units.id"), nullable=True),
    Column("path", String(2048), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

device_types = Table(
    "device_types",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("device_class", String(32), nullable=False),
    Column("criticality", String(16), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("certificate_profile", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("certificate_lifetime_seconds", Integer, nullable=True),
    Column("grace_seconds", Integer, nullable=False, server_default="259200"),
    Column("max_credential_age_seconds", Integer, nullable=False, server_default="2592000"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("type_name", String(128), ForeignKey("device_types.name"), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("state", String(32), nullable=False),
    Column("site", String(256), nullable=True),
    Column("location", String(256), nullable=True),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    #: access tokens issued until this instant are dead (quarantine, suspension, revocation)
    Column("tokens_not_before", UtcDateTime(), nullable=True),
    Index("ix_devices_org_path_id", "org_path", "id"),
    # the broker sync asks "what changed since" ten times a second
    Index("ix_devices_updated_at", "updated_at"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(128), ForeignKey("groups.id"), nullable=False),
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=False),
    PrimaryKeyConstraint("group_id", "device_id"),
    Index("ix_group_members_device", "device_id"),
)

cas = Table(
    "cas",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("certificate_pem", Text, nullable=False),
    Column("encrypted_key_pem", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

certificates = Table(
    "certificates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer_id", String(64), ForeignKey("cas.id"), nullable=False),
    Column("serial", String(42), nullable=False),
    Column("device_id", String(128), nullable=True),
    Column("org_unit_id", String(128), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("profile", String(64), nullable=False),
    Column("subject", String(1024), nullable=False),
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("fingerprint_sha256", String(64), nullable=True),
    Column("pem", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    # SHA-256 of the SubjectPublicKeyInfo: refuses a replayed CSR / a key certified twice
    Column("public_key_sha256", String(64), nullable=True),
    # G1: the database itself refuses a second certificate with the same serial
    UniqueConstraint("issuer_id", "serial", name="uq_certificates_issuer_serial"),
    Index("ix_certificates_device", "device_id"),
    Index("ix_certificates_serial", "serial"),
    Index("ix_certificates_revoked", "issuer_id", "status", "not_after"),
    Index("ix_certificates_org_path", "org_path", "created_at"),
    Index("ix_certificates_public_key", "public_key_sha256"),
    Index("ix_certificates_revoked_at", "revoked_at"),
)

crls = Table(
    "crls",
    metadata,
    Column("issuer_id", String(64), ForeignKey("cas.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("this_update", UtcDateTime(), nullable=False),
    Column("next_update", UtcDateTime(), nullable=False),
    Column("revocation_watermark", Integer, nullable=False),
    Column("der", LargeBinary, nullable=False),
    PrimaryKeyConstraint("issuer_id", "number"),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", Integer, nullable=False),
)

#: audit record numbers: 64-bit (at 2,000 audited tokens/s a 32-bit number lasts 12 days);
#: INTEGER on SQLite, which is 64-bit there and keeps the primary key the rowid
AuditSeq = BigInteger().with_variant(Integer(), "sqlite")

audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", AuditSeq, primary_key=True, autoincrement=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("tag", String(64), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("subject", String(1024), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_org_path_seq", "org_path", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", AuditSeq, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("mac", String(64), nullable=False),
    # the Merkle compact range over records 1..seq (audit/merkle.py), at most 64 hashes
    Column("frontier", Text, nullable=True),
)

admin_tokens = Table(
    "admin_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("is_bootstrap", Boolean, nullable=False, default=False),
)

claim_tokens = Table(
    "claim_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    Index("ix_claim_tokens_device", "device_id"),
)

psks = Table(
    "psks",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("identity", String(128), nullable=False),
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    # AES-256-GCM ciphertext (credentials/sealing.py); the key itself is never stored
    Column("encrypted_key", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("replaced_by", String(32), nullable=True),
    Index("ix_psks_device", "device_id"),
    Index("ix_psks_status_org", "status", "org_path"),
    Index("ix_psks_revoked_at", "revoked_at"),
)

manufacturers = Table(
    "manufacturers",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("device_type", String(128), ForeignKey("device_types.name"), nullable=False),
    Column("certificate_pem", Text, nullable=False),
    Column("subject", String(1024), nullable=False),
    Column("fingerprint_sha256", String(64), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    UniqueConstraint("fingerprint_sha256", name="uq_manufacturers_fingerprint"),
    Index("ix_manufacturers_org_path", "org_path"),
)

manifest_entries = Table(
    "manifest_entries",
    metadata,
    Column("manufacturer", String(128), ForeignKey("manufacturers.name"), nullable=False),
    # the IDevID serialNumber, which becomes the device id: one manufacturer per serial
    Column("serial", String(128), primary_key=True),
    Column("public_key_sha256", String(64), nullable=True),
    Column("imported_at", UtcDateTime(), nullable=False),
    Column("enrolled_at", UtcDateTime(), nullable=True),
    Index("ix_manifest_entries_manufacturer", "manufacturer"),
)

enrollment_requests = Table(
    "enrollment_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("device_id", String(128), nullable=False),
    Column("org_unit_id", String(128), nullable=True),
    Column("org_path", String(2048), nullable=True),
    Column("manufacturer", String(128), nullable=True),
    Column("reason", String(64), nullable=False),
    Column("detail", String(1024), nullable=False),
    Column("source", String(128), nullable=False),
    Column("presented", String(2048), nullable=False),
    Column("profile", String(64), nullable=True),
    Column("csr_pem", Text, nullable=False),
    # RFC 7030 §4.2.3: a client polls with the same CSR; this finds its request
    Column("csr_sha256", String(64), nullable=False),
    Column("public_key_sha256", String(64), nullable=False),
    Column("idevid_pem", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("polls", Integer, nullable=False, default=0),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decided_by", String(256), nullable=True),
    Column("decision_note", String(500), nullable=True),
    Column("certificate_serial", String(42), nullable=True),
    UniqueConstraint("csr_sha256", name="uq_enrollment_requests_csr"),
    Index("ix_enrollment_requests_status_source", "status", "source"),
    Index("ix_enrollment_requests_status_created", "status", "created_at"),
    Index("ix_enrollment_requests_device", "device_id"),
)

policies = Table(
    "policies",
    metadata,
    Column("name", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    # only admins whose scope contains the owner's path may change it
    Column("owner_path", String(2048), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    PrimaryKeyConstraint("name", "version", name="pk_policies"),
)

policy_attachments = Table(
    "policy_attachments",
    metadata,
    Column("policy", String(128), nullable=False),
    Column("target_kind", String(32), nullable=False),
    Column("target_id", String(128), nullable=False),
    Column("scope", String(2048), nullable=False),
    PrimaryKeyConstraint("policy", "target_kind", "target_id", name="pk_policy_attachments"),
)

sites = Table(
    "sites",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("timezone", String(64), nullable=False),
    # JSON list of CIDR networks
    Column("networks", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    # one client per device; NULL for service clients
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=True),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    # JSON lists
    Column("auth_methods", Text, nullable=False),
    Column("grant_types", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audiences", Text, nullable=False),
    # JSON JWK set of public keys, or NULL
    Column("jwks", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    UniqueConstraint("device_id", name="uq_oauth_clients_device"),
    Index("ix_oauth_clients_org_path", "org_path", "client_id"),
)

oauth_signing_keys = Table(
    "oauth_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("public_jwk", Text, nullable=False),
    # PKCS#8 encrypted with the CA passphrase, like the CA keys
    Column("encrypted_key_pem", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("retired_at", UtcDateTime(), nullable=True),
    Column("publish_until", UtcDateTime(), nullable=True),
)

oauth_assertion_jtis = Table(
    "oauth_assertion_jtis",
    metadata,
    Column("client_id", String(128), nullable=False),
    Column("jti", String(256), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    # RFC 7523 §3: a jti is used once; the primary key refuses the second use
    PrimaryKeyConstraint("client_id", "jti", name="pk_oauth_assertion_jtis"),
    Index("ix_oauth_assertion_jtis_expires_at", "expires_at"),
)

oauth_revoked_tokens = Table(
    "oauth_revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_oauth_revoked_tokens_expires_at", "expires_at"),
)

oauth_device_codes = Table(
    "oauth_device_codes",
    metadata,
    Column("device_code_hash", String(64), primary_key=True),
    Column("user_code", String(16), nullable=False),
    Column("client_id", String(128), ForeignKey("oauth_clients.client_id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audience", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("last_polled_at", UtcDateTime(), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decided_by", String(256), nullable=True),
    UniqueConstraint("user_code", name="uq_oauth_device_codes_user_code"),
    Index("ix_oauth_device_codes_status_org", "status", "org_path"),
)

# -- firmware attestation (migration 0008) --------------------------------------------------

firmware_signers = Table(
    "firmware_signers",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("public_key_pem", Text, nullable=False),
    # hex SHA-256 of the SubjectPublicKeyInfo (a metadata JWS may name it as kid)
    Column("key_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    # set once, when the signer is revoked (migration 0011)
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revoked_by", String(256), nullable=True),
    UniqueConstraint("org_unit_id", "name", name="uq_firmware_signers_org_name"),
    UniqueConstraint("org_unit_id", "key_id", name="uq_firmware_signers_org_key"),
    Index("ix_firmware_signers_org_path", "org_path"),
)

firmware_images = Table(
    "firmware_images",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("device_type", String(128), ForeignKey("device_types.name"), nullable=False),
    Column("version", String(64), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("signer_id", String(16), ForeignKey("firmware_signers.id"), nullable=False),
    # the signed metadata as submitted: the proof, re-verifiable later
    Column("metadata_jws", Text, nullable=False),
    Column("released_at", UtcDateTime(), nullable=True),
    Column("notes", Text, nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    UniqueConstraint("org_unit_id", "device_type", "version",
                     name="uq_firmware_images_org_type_version"),
    Index("ix_firmware_images_type_version", "device_type", "version"),
    Index("ix_firmware_images_org_path", "org_path"),
)

firmware_rules = Table(
    "firmware_rules",
    metadata,
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("device_type", String(128), ForeignKey("device_types.name"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("min_version", String(64), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(256), nullable=False),
    PrimaryKeyConstraint("org_unit_id", "device_type", name="pk_firmware_rules"),
)

attestation_nonces = Table(
    "attestation_nonces",
    metadata,
    # SHA-256 of the nonce: the nonce itself is never stored
    Column("nonce_hash", String(64), primary_key=True),
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    Index("ix_attestation_nonces_device_expires", "device_id", "expires_at"),
)

device_firmware = Table(
    "device_firmware",
    metadata,
    Column("device_id", String(128), ForeignKey("devices.id"), primary_key=True),
    Column("firmware_version", String(64), nullable=False),
    Column("firmware_hash", String(64), nullable=False),
    Column("image_id", String(16), ForeignKey("firmware_images.id"), nullable=True),
    Column("compliant", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    # JSON list of {"name", "digest"}
    Column("measurements", Text, nullable=False),
    Column("attested_at", UtcDateTime(), nullable=False),
    Index("ix_device_firmware_image", "image_id"),
)

# -- detection and response (migration 0009) ------------------------------------------------

findings = Table(
    "findings",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("device_id", String(128), nullable=True),
    Column("device_type", String(128), nullable=True),
    Column("org_path", String(2048), nullable=False),
    Column("type", String(64), nullable=False),
    Column("severity", Integer, nullable=False),
    Column("state", String(32), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("detector", String(128), nullable=False),
    Column("summary", Text, nullable=False),
    Column("evidence", Text, nullable=False),
    Column("event_at", UtcDateTime(), nullable=False),
    Column("raised_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=True),
    Column("repeats", Integer, nullable=False, default=0),
    Column("actions", Text, nullable=False, default="[]"),
    Column("note", Text, nullable=True),
    Column("updated_by", String(256), nullable=True),
    Index("ix_findings_org_path_id", "org_path", "id"),
    # "the live finding of this device and type" on every finding reported
    Index("ix_findings_device_type_state", "device_id", "type", "state"),
)

mitigations = Table(
    "mitigations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("finding_id", String(40), ForeignKey("findings.id"), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("previous_state", String(32), nullable=True),
    Column("applied_at", UtcDateTime(), nullable=False),
    Column("lifted_at", UtcDateTime(), nullable=True),
    Column("lifted_by", String(256), nullable=True),
    Index("ix_mitigations_device_lifted", "device_id", "lifted_at"),
)

detection_modes = Table(
    "detection_modes",
    metadata,
    Column("device_type", String(128), ForeignKey("device_types.name"), primary_key=True),
    Column("mode", String(16), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("updated_by", String(256), nullable=False),
)

detection_documents = Table(
    "detection_documents",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

device_trust = Table(
    "device_trust",
    metadata,
    Column("device_id", String(128), ForeignKey("devices.id"), primary_key=True),
    Column("score", Integer, nullable=False),
    Column("firmware_compliant", Boolean, nullable=True),
    Column("factors", Text, nullable=False),
    Column("computed_at", UtcDateTime(), nullable=False),
)
