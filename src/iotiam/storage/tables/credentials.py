"""Pre-shared keys (the credentials domain)."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Table,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
