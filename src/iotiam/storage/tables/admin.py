"""Administrator API tokens."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    String,
    Table,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
