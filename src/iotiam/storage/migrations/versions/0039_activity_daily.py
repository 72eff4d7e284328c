"""Enrollments and revocations by day, kept from the audit log (docs/console.md)

``activity_daily`` holds the tallies the console's overview charts, ``activity_cursor``
the last audit record counted; the tally job (``audit.activity``) fills both from the
start of the log after this migration, a bounded batch per transaction.

Revision ID: 0039
Revises: 0038
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "activity_daily",
        sa.Column("org_path", sa.String(2048), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "activity_cursor",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", _SEQ, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("activity_cursor")
    op.drop_table("activity_daily")
