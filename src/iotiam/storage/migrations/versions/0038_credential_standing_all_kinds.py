"""The credential standing counts PSK and OAuth client holders too (docs/console.md)

``device_credentials`` held a row per certificate holder only, so a device whose only
credential is a PSK or an OAuth client was reported with no credential. The rows and
their day buckets are rebuilt from every kind (``fleet_counts.recount``'s rebuild, what
``iotiam db recount`` runs); the schema does not change.

Revision ID: 0038
Revises: 0037
"""

from __future__ import annotations

from alembic import op

from iotiam.storage.credential_standing import rebuild_standing

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rebuild_standing(op.get_bind())


def downgrade() -> None:
    # the rows are derived: the older code reads them as they are and rewrites a
    # holder's row on its next certificate write (``iotiam db recount`` rebuilds all)
    pass
