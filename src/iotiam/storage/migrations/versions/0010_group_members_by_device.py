"""Group memberships indexed by device

A device's groups are read for every policy subject (token requests, broker ACLs,
decisions); the primary key leads with the group, so without this index each such
read scanned every membership of the fleet.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_group_members_device", "group_members", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_group_members_device", table_name="group_members")
