"""Audit record numbers are 64-bit

``audit_records.seq`` and ``audit_head.seq`` were 32-bit on PostgreSQL: at 2,000
audited tokens a second they would run out in twelve days. SQLite's INTEGER is already
64-bit (and is the rowid there), so only PostgreSQL changes.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_COLUMNS = (("audit_records", "seq"), ("audit_head", "seq"))


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=False)
