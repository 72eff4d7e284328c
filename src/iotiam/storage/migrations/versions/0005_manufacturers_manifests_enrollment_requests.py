"""manufacturers, manifests and enrollment requests

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "manufacturers",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("org_unit_id", sa.String(length=128), nullable=False),
        sa.Column("org_path", sa.String(length=2048), nullable=False),
        sa.Column("device_type", sa.String(length=128), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=1024), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_after", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(["device_type"], ["device_types.name"]),
        sa.ForeignKeyConstraint(["org_unit_id"], ["org_units.id"]),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("fingerprint_sha256", name="uq_manufacturers_fingerprint"),
    )
    with op.batch_alter_table("manufacturers", schema=None) as batch_op:
        batch_op.create_index("ix_manufacturers_org_path", ["org_path"], unique=False)

    op.create_table(
        "manifest_entries",
        sa.Column("manufacturer", sa.String(length=128), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=True),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["manufacturer"], ["manufacturers.name"]),
        sa.PrimaryKeyConstraint("serial"),
    )
    with op.batch_alter_table("manifest_entries", schema=None) as batch_op:
        batch_op.create_index("ix_manifest_entries_manufacturer", ["manufacturer"],
                              unique=False)

    op.create_table(
        "enrollment_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("org_unit_id", sa.String(length=128), nullable=True),
        sa.Column("org_path", sa.String(length=2048), nullable=True),
        sa.Column("manufacturer", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.String(length=1024), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("presented", sa.String(length=2048), nullable=False),
        sa.Column("profile", sa.String(length=64), nullable=True),
        sa.Column("csr_pem", sa.Text(), nullable=False),
        sa.Column("csr_sha256", sa.String(length=64), nullable=False),
        sa.Column("public_key_sha256", sa.String(length=64), nullable=False),
        sa.Column("idevid_pem", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decision_note", sa.String(length=500), nullable=True),
        sa.Column("certificate_serial", sa.String(length=42), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("csr_sha256", name="uq_enrollment_requests_csr"),
    )
    with op.batch_alter_table("enrollment_requests", schema=None) as batch_op:
        batch_op.create_index("ix_enrollment_requests_device", ["device_id"], unique=False)
        batch_op.create_index("ix_enrollment_requests_status_created",
                              ["status", "created_at"], unique=False)
        batch_op.create_index("ix_enrollment_requests_status_source",
                              ["status", "source"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("enrollment_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_enrollment_requests_status_source")
        batch_op.drop_index("ix_enrollment_requests_status_created")
        batch_op.drop_index("ix_enrollment_requests_device")
    op.drop_table("enrollment_requests")

    with op.batch_alter_table("manifest_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_manifest_entries_manufacturer")
    op.drop_table("manifest_entries")

    with op.batch_alter_table("manufacturers", schema=None) as batch_op:
        batch_op.drop_index("ix_manufacturers_org_path")
    op.drop_table("manufacturers")
