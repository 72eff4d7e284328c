"""Singleton terms: whether each singleton job's last leader ended its term cleanly

A replica that wins a job's advisory lock reads the job's row: a term released by a
leader that had ended the job first (``serve`` stopping) is taken up at once; a term
left open (a leader killed or cut off from the database) makes the winner wait the time
such a leader needs to notice and stop (``storage/pg_leadership.py``). SQLite has one
leader for good and never reads the table.

Revision ID: 0028
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "singleton_terms",
        sa.Column("job", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("began_at", sa.DateTime(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("singleton_terms")
