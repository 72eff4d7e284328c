"""Manifest batch: the production batch a manufacturer's manifest names for a serial

Manifests carried a ``batch`` column that was dropped on import; a set revocation
selects by it (``batch=2026-07``, docs/revocation.md), so it is kept now.

Revision ID: 0030
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("manifest_entries") as batch:
        batch.add_column(sa.Column("batch", sa.String(128), nullable=True))
    op.create_index("ix_manifest_entries_batch", "manifest_entries", ["manufacturer", "batch"])


def downgrade() -> None:
    op.drop_index("ix_manifest_entries_batch", table_name="manifest_entries")
    with op.batch_alter_table("manifest_entries") as batch:
        batch.drop_column("batch")
