"""rotation policy per device type

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_types", schema=None) as batch_op:
        batch_op.add_column(sa.Column("certificate_lifetime_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("grace_seconds", sa.Integer(), server_default="259200", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "max_credential_age_seconds", sa.Integer(), server_default="2592000", nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("device_types", schema=None) as batch_op:
        batch_op.drop_column("max_credential_age_seconds")
        batch_op.drop_column("grace_seconds")
        batch_op.drop_column("certificate_lifetime_seconds")
