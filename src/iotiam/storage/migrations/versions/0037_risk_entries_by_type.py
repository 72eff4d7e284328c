"""The risk register's entries by type, in the register's order (docs/risk-register.md)

Revision ID: 0037
Revises: 0031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0037"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_risk_entries_type_score_id", "risk_entries",
                    ["type", sa.text("score DESC"), "id", "org_path"])


def downgrade() -> None:
    op.drop_index("ix_risk_entries_type_score_id", table_name="risk_entries")
