"""The identity risk register: entries, their factors, tallies, acceptances, rebuild counts

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "risk_entries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("subject", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(512), nullable=False),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("site", sa.String(256), nullable=True),
        sa.Column("type", sa.String(128), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("factors", sa.Text(), nullable=False),
        sa.Column("criticality", sa.String(16), nullable=True),
        sa.Column("device_class", sa.String(32), nullable=True),
        sa.Column("can_write", sa.Boolean(), nullable=False),
        sa.Column("holder", sa.String(128), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_risk_entries_score_id", "risk_entries", [sa.text("score DESC"), "id"])
    op.create_index("ix_risk_entries_site_score_id", "risk_entries",
                    ["site", sa.text("score DESC"), "id"])
    op.create_index("ix_risk_entries_org_path", "risk_entries", ["org_path"])
    op.create_index("ix_risk_entries_holder", "risk_entries", ["holder"])
    op.create_table(
        "risk_entry_factors",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("factor", sa.String(48), primary_key=True),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("site", sa.String(256), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
    )
    op.create_index("ix_risk_entry_factors_factor", "risk_entry_factors",
                    ["factor", sa.text("score DESC"), "entry_id", "org_path"])
    op.create_index("ix_risk_entry_factors_site", "risk_entry_factors",
                    ["factor", "site", sa.text("score DESC"), "entry_id", "org_path"])
    op.create_table(
        "risk_tallies",
        sa.Column("org_path", sa.String(2048), primary_key=True),
        sa.Column("site", sa.String(256), primary_key=True),
        sa.Column("factor", sa.String(48), primary_key=True),
        sa.Column("severity", sa.Integer(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "risk_acceptances",
        sa.Column("entry_id", sa.String(64), primary_key=True),
        sa.Column("factor", sa.String(48), primary_key=True),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("accepted_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_risk_acceptances_expires_at", "risk_acceptances", ["expires_at"])
    op.create_table(
        "risk_rebuilds",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "risk_counts",
        sa.Column("rebuild", sa.Integer(), primary_key=True),
        sa.Column("org_path", sa.String(2048), primary_key=True),
        sa.Column("key", sa.String(48), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("risk_counts")
    op.drop_table("risk_rebuilds")
    op.drop_index("ix_risk_acceptances_expires_at", table_name="risk_acceptances")
    op.drop_table("risk_acceptances")
    op.drop_table("risk_tallies")
    op.drop_index("ix_risk_entry_factors_site", table_name="risk_entry_factors")
    op.drop_index("ix_risk_entry_factors_factor", table_name="risk_entry_factors")
    op.drop_table("risk_entry_factors")
    for name in ("holder", "org_path", "site_score_id", "score_id"):
        op.drop_index(f"ix_risk_entries_{name}", table_name="risk_entries")
    op.drop_table("risk_entries")
