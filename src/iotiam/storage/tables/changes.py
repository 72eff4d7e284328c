"""The change feed's table (``iotiam.changes``; read and written by ``change_table.py``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from iotiam.storage.tables.columns import UtcDateTime, metadata

ChangeId = BigInteger().with_variant(Integer(), "sqlite")

changes = Table(
    "changes",
    metadata,
    Column("id", ChangeId, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("ix_changes_recorded_at", "recorded_at"),
    # ids are never reused, even after every row was pruned
    sqlite_autoincrement=True,
)
