"""Findings fold by episode, and uploads see the findings their events raised

``findings.subject`` is what a finding folds under with its type (the device; with none,
the source address it names; else the fleet), ``last_event_at`` the time of the latest
event folded into it: a finding whose event comes after the episode's calm is a new one.
``event_batches`` are the uploads of ``POST /v1/events`` and ``event_batch_findings``
the findings (new, repeated or escalated) that each one's events raised.

Revision ID: 0025
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("subject", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("last_event_at", sa.DateTime(), nullable=True))
    # the findings before this were folded per device (or fleet-wide) and type
    op.execute("UPDATE findings SET last_event_at = event_at, subject = CASE WHEN "
               "device_id IS NULL THEN 'fleet' ELSE 'device:' || device_id END")
    with op.batch_alter_table("findings") as batch:
        batch.alter_column("subject", existing_type=sa.String(length=300), nullable=False)
    op.create_index("ix_findings_type_subject_state", "findings",
                    ["type", "subject", "state"])
    op.create_table(
        "event_batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_path", sa.String(length=2048), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_event_batches_created_at", "event_batches", ["created_at"])
    op.create_table(
        "event_batch_findings",
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("finding_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["event_batches.id"]),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.id"]),
        sa.PrimaryKeyConstraint("batch_id", "finding_id"),
    )


def downgrade() -> None:
    op.drop_table("event_batch_findings")
    op.drop_index("ix_event_batches_created_at", table_name="event_batches")
    op.drop_table("event_batches")
    op.drop_index("ix_findings_type_subject_state", table_name="findings")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("last_event_at")
        batch.drop_column("subject")
