"""Policies, where they are attached, and the sites their conditions name."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
