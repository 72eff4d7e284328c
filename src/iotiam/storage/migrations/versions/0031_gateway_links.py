"""Gateway links: each child device's gateway (docs/gateways.md)

Revision ID: 0031
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_links",
        sa.Column("child_id", sa.String(128), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("gateway_id", sa.String(128), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("linked_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_gateway_links_gateway", "gateway_links", ["gateway_id", "child_id"])


def downgrade() -> None:
    op.drop_index("ix_gateway_links_gateway", table_name="gateway_links")
    op.drop_table("gateway_links")
