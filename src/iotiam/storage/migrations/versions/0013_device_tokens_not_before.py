"""Device tokens_not_before

The instant a device last stopped being trusted (quarantine, suspension, decommission,
all its credentials revoked): introspection refuses its access tokens issued until
then, so lifting a quarantine does not bring them back.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokens_not_before", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_column("tokens_not_before")
