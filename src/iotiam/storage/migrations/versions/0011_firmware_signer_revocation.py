"""Firmware signer revocation

A signer whose key leaked is revoked: when and by whom. Nothing it signed counts any
more; the row stays, so its images and the audit trail still name it. Revoking finds
the devices that attested one of its images through the new index on
``device_firmware.image_id``.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("firmware_signers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("revoked_by", sa.String(length=256), nullable=True))
    op.create_index("ix_device_firmware_image", "device_firmware", ["image_id"])


def downgrade() -> None:
    op.drop_index("ix_device_firmware_image", table_name="device_firmware")
    with op.batch_alter_table("firmware_signers", schema=None) as batch_op:
        batch_op.drop_column("revoked_by")
        batch_op.drop_column("revoked_at")
