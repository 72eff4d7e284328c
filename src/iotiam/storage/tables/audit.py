"""The audit chain: its records and the MAC-protected head."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

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

#: enrollments and revocations by day (``audit.activity``, migration 0039): kept from the
#: audit log by the tally job, each count at its org path and every ancestor's; a page
#: view reads 30 days of the caller's own path (a range of the key)
activity_daily = Table(
    "activity_daily",
    metadata,
    Column("org_path", String(2048), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
)

#: the last audit sequence number the tallies count (one row, id 1)
activity_cursor = Table(
    "activity_cursor",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", AuditSeq, nullable=False),
)
