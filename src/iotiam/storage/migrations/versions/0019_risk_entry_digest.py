"""Risk entries carry the digest of their content: a rebuild rewrites only what changed

Revision ID: 0019
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
# 0018 (discovery) is another branch's; set to "0018" when both are merged
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: the rows written before have none, and are rewritten by the next rebuild
    with op.batch_alter_table("risk_entries") as batch:
        batch.add_column(sa.Column("digest", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("risk_entries") as batch:
        batch.drop_column("digest")
