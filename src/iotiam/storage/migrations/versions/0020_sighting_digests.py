"""Sighting digests in a table of their own; full sighting rows only where they show a credential

Idempotency needs only a sighting's digest, and the only read of sighting rows is the
credentials seen (``iter_credentials_seen``): a compact table keyed by the 16-byte digest
(``WITHOUT ROWID`` on SQLite) records every sighting, and ``discovery_sightings`` keeps
the rows that carry a certificate, an issuer and serial, or a PSK identity, indexed by
each for a refresh's narrow read. The rows without one are dropped here (their digests
are kept); a downgrade cannot bring them back.

The digests are computed again, not copied: the digest function changed since those rows
were stored (``Sighting.digest`` hashes a marshal encoding), and what an import claims is
a sighting's digest under the org path it was imported under (``scoped_digests``, G9).
Every row is rebuilt into the ``Sighting`` its source yielded and keyed with the very
function the write path uses, so that a file imported before the upgrade is a duplicate
after it; the rows kept get the same key in their own ``digest`` column (a downgrade
leaves them with it).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from alembic import op

# the domain's digest itself, not a copy frozen here: this migration must produce what
# the write path claims (a copy would drift the way the stored digests did)
from iotiam.discovery.models import Sighting, scoped_digests

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


#: rows read, keyed and written at a time (the table may hold millions)
BATCH = 5000
#: a sighting's fields, each stored in the column of its name
_FIELDS = tuple(f.name for f in fields(Sighting))
_CREDENTIAL = ("certificate IS NOT NULL OR psk_identity IS NOT NULL "
               "OR (issuer IS NOT NULL AND serial IS NOT NULL)")
_READ = sa.text(f"SELECT id, org_path, {', '.join(_FIELDS)}, {_CREDENTIAL} "  # noqa: S608
                "FROM discovery_sightings WHERE id > :after ORDER BY id LIMIT :batch")
_CLAIM = sa.text("INSERT INTO discovery_sighting_digests (digest) VALUES (:key) "
                 "ON CONFLICT DO NOTHING")
# a second row rebuilt into the same sighting keeps its old digest, and goes below
_REKEY = sa.text("UPDATE discovery_sightings SET digest = :key WHERE id = :id AND NOT "
                 "EXISTS (SELECT 1 FROM discovery_sightings WHERE digest = :key)")


def upgrade() -> None:
    op.create_table(
        "discovery_sighting_digests",
        sa.Column("digest", sa.LargeBinary(16), primary_key=True),
        sqlite_with_rowid=False,
    )
    conn = op.get_bind()
    after = 0
    while rows := conn.execute(_READ, {"after": after, "batch": BATCH}).all():
        keys = [(row[0], scoped_digests(row[1], [_sighting(row[2:-1]).digest()])[0], row[-1])
                for row in rows]
        conn.execute(_CLAIM, [{"key": key} for _, key, _ in keys])
        rekeyed = [{"id": id_, "key": key} for id_, key, credential in keys if credential]
        if rekeyed:
            conn.execute(_REKEY, rekeyed)
        after = rows[-1][0]
    # what is left with an old digest: the rows without a credential, and duplicates
    # (an anti-join: NOT IN over a million keys is a nested loop on PostgreSQL)
    op.execute("DELETE FROM discovery_sightings WHERE NOT EXISTS (SELECT 1 FROM "
               "discovery_sighting_digests "
               "WHERE discovery_sighting_digests.digest = discovery_sightings.digest)")
    for name, columns in _CREDENTIAL_INDEXES.items():
        op.create_index(name, "discovery_sightings", columns)


def _sighting(values: Any) -> Sighting:
    """The sighting a row was stored from, as its source yielded it."""
    found = dict(zip(_FIELDS, values, strict=True))
    ports = found["open_ports"]  # "22,443" (discovery_store._ports), NULL for none
    found["open_ports"] = tuple(int(p) for p in ports.split(",")) if ports else ()
    return Sighting(**found)


def downgrade() -> None:
    for name in _CREDENTIAL_INDEXES:
        op.drop_index(name, "discovery_sightings")
    op.drop_table("discovery_sighting_digests")
