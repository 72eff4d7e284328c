"""Firmware attestation (migration 0008): signers, images, rules, nonces and what
each device last attested."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
