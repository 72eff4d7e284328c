"""Audit Merkle tree

The audit head keeps the Merkle compact range over the records (RFC 9162 tree, see
``iotiam.audit.merkle``) so that each append costs O(log n) hashes and a checkpoint
needs no pass over the chain. Existing heads get NULL: the first append after the
upgrade rebuilds it from the records once.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("frontier", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("frontier")
