"""The change feed's table

Every published change (``iotiam.changes``) gets a row with an increasing id, written
in the transaction of the change itself; the feeds read it by id
(``storage/change_table.py``).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_changes_recorded_at", "changes", ["recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_changes_recorded_at", table_name="changes")
    op.drop_table("changes")
