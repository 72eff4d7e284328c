"""pre-shared keys

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "psks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("org_path", sa.String(length=2048), nullable=False),
        sa.Column("encrypted_key", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("revocation_reason", sa.String(length=32), nullable=True),
        sa.Column("replaced_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("psks", schema=None) as batch_op:
        batch_op.create_index("ix_psks_device", ["device_id"], unique=False)
        batch_op.create_index("ix_psks_status_org", ["status", "org_path"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("psks", schema=None) as batch_op:
        batch_op.drop_index("ix_psks_status_org")
        batch_op.drop_index("ix_psks_device")

    op.drop_table("psks")
