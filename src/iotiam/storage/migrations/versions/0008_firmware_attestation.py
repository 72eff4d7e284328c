"""Firmware signers, images, minimum rules, attestation nonces, device firmware status

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "firmware_signers",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("org_unit_id", sa.String(length=128), nullable=False),
        sa.Column("org_path", sa.String(length=2048), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_unit_id", "name", name="uq_firmware_signers_org_name"),
        sa.UniqueConstraint("org_unit_id", "key_id", name="uq_firmware_signers_org_key"),
    )
    with op.batch_alter_table("firmware_signers", schema=None) as batch_op:
        batch_op.create_index("ix_firmware_signers_org_path", ["org_path"], unique=False)

    op.create_table(
        "firmware_images",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("device_type", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("org_unit_id", sa.String(length=128), nullable=False),
        sa.Column("org_path", sa.String(length=2048), nullable=False),
        sa.Column("signer_id", sa.String(length=16), nullable=False),
        sa.Column("metadata_jws", sa.Text(), nullable=False),
        sa.Column("released_at", sa.DateTime(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["device_type"], ["device_types.name"]),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"]),
        sa.ForeignKeyConstraint(["signer_id"], ["firmware_signers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_unit_id", "device_type", "version",
                            name="uq_firmware_images_org_type_version"),
    )
    with op.batch_alter_table("firmware_images", schema=None) as batch_op:
        batch_op.create_index("ix_firmware_images_type_version", ["device_type", "version"],
                              unique=False)
        batch_op.create_index("ix_firmware_images_org_path", ["org_path"], unique=False)

    op.create_table(
        "firmware_rules",
        sa.Column("org_unit_id", sa.String(length=128), nullable=False),
        sa.Column("device_type", sa.String(length=128), nullable=False),
        sa.Column("org_path", sa.String(length=2048), nullable=False),
        sa.Column("min_version", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["device_type"], ["device_types.name"]),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"]),
        sa.PrimaryKeyConstraint("org_unit_id", "device_type", name="pk_firmware_rules"),
    )

    op.create_table(
        "attestation_nonces",
        sa.Column("nonce_hash", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("nonce_hash"),
    )
    with op.batch_alter_table("attestation_nonces", schema=None) as batch_op:
        batch_op.create_index("ix_attestation_nonces_device_expires",
                              ["device_id", "expires_at"], unique=False)

    op.create_table(
        "device_firmware",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("firmware_version", sa.String(length=64), nullable=False),
        sa.Column("firmware_hash", sa.String(length=64), nullable=False),
        sa.Column("image_id", sa.String(length=16), nullable=True),
        sa.Column("compliant", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("measurements", sa.Text(), nullable=False),
        sa.Column("attested_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.ForeignKeyConstraint(["image_id"], ["firmware_images.id"]),
        sa.PrimaryKeyConstraint("device_id"),
    )


def downgrade() -> None:
    op.drop_table("device_firmware")
    with op.batch_alter_table("attestation_nonces", schema=None) as batch_op:
        batch_op.drop_index("ix_attestation_nonces_device_expires")
    op.drop_table("attestation_nonces")
    op.drop_table("firmware_rules")
    with op.batch_alter_table("firmware_images", schema=None) as batch_op:
        batch_op.drop_index("ix_firmware_images_org_path")
        batch_op.drop_index("ix_firmware_images_type_version")
    op.drop_table("firmware_images")
    with op.batch_alter_table("firmware_signers", schema=None) as batch_op:
        batch_op.drop_index("ix_firmware_signers_org_path")
    op.drop_table("firmware_signers")
