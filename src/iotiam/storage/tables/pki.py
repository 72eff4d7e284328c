"""The PKI's tables: CAs, the certificates they issued, CRLs and the serial counters."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
