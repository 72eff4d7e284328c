"""policies, attachments, sites; indexes for the broker sync's change queries

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("owner_path", sa.String(length=2048), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("name", "version", name="pk_policies"),
    )
    op.create_table(
        "policy_attachments",
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("target_kind", sa.String(length=32), nullable=False),
        sa.Column("target_id", sa.String(length=128), nullable=False),
        sa.Column("scope", sa.String(length=2048), nullable=False),
        sa.PrimaryKeyConstraint("policy", "target_kind", "target_id",
                                name="pk_policy_attachments"),
    )
    op.create_table(
        "sites",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("networks", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index("ix_devices_updated_at", ["updated_at"], unique=False)
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.create_index("ix_certificates_revoked_at", ["revoked_at"], unique=False)
    with op.batch_alter_table("psks", schema=None) as batch_op:
        batch_op.create_index("ix_psks_revoked_at", ["revoked_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("psks", schema=None) as batch_op:
        batch_op.drop_index("ix_psks_revoked_at")
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index("ix_certificates_revoked_at")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index("ix_devices_updated_at")
    op.drop_table("sites")
    op.drop_table("policy_attachments")
    op.drop_table("policies")
