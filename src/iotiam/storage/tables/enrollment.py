"""Enrollment's tables: claim tokens, manufacturers and their manifests, the
requests waiting for a decision."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
    # the production batch the manifest named (a set revocation selects by it)
    Column("batch", String(128), nullable=True),
    Index("ix_manifest_entries_manufacturer", "manufacturer"),
    Index("ix_manifest_entries_batch", "manufacturer", "batch"),
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
