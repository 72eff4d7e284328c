"""Detection and response (migrations 0009, 0025): findings, mitigations, detection
modes and documents, device trust scores, event uploads and the findings they raised."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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
    #: what the finding folds under with its type (``Finding.subject``)
    Column("subject", String(300), nullable=False),
    #: the latest event folded into it (its episode's last, so far)
    Column("last_event_at", UtcDateTime(), nullable=True),
    Index("ix_findings_org_path_id", "org_path", "id"),
    Index("ix_findings_device_type_state", "device_id", "type", "state"),
    # "the live finding of this subject and type" on every finding reported
    Index("ix_findings_type_subject_state", "type", "subject", "state"),
)

event_batches = Table(
    "event_batches",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_path", String(2048), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("events", Integer, nullable=False),
    Index("ix_event_batches_created_at", "created_at"),
)

event_batch_findings = Table(
    "event_batch_findings",
    metadata,
    Column("batch_id", String(40), ForeignKey("event_batches.id"), primary_key=True),
    Column("finding_id", String(40), ForeignKey("findings.id"), primary_key=True),
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
