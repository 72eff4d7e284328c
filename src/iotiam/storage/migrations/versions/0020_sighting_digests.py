"""Sighting digests in a table of their own; full sighting rows only where they show a credential

Idempotency needs only a sighting's digest, and the only read of sighting rows is the
credentials seen (``iter_credentials_seen``): a compact table keyed by the 16-byte digest
(``WITHOUT ROWID`` on SQLite) records every sighting, and ``discovery_sightings`` keeps
the rows that carry a certificate, an issuer and serial, or a PSK identity, indexed by
each for a refresh's narrow read. The rows without one are dropped here (their digests
are kept); a downgrade cannot bring them back.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: what the narrow read of a refresh looks sightings up by (credentials_seen)
_CREDENTIAL_INDEXES = {
    "ix_discovery_sightings_certificate": ["certificate"],
    "ix_discovery_sightings_psk_identity": ["psk_identity"],
    "ix_discovery_sightings_issuer_serial": ["issuer", "serial"],
}


def upgrade() -> None:
    op.create_table(
        "discovery_sighting_digests",
        sa.Column("digest", sa.LargeBinary(16), primary_key=True),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO discovery_sighting_digests (digest) "
               "SELECT digest FROM discovery_sightings")
    op.execute("DELETE FROM discovery_sightings WHERE certificate IS NULL "
               "AND psk_identity IS NULL AND (issuer IS NULL OR serial IS NULL)")
    for name, columns in _CREDENTIAL_INDEXES.items():
        op.create_index(name, "discovery_sightings", columns)


def downgrade() -> None:
    for name in _CREDENTIAL_INDEXES:
        op.drop_index(name, "discovery_sightings")
    op.drop_table("discovery_sighting_digests")
