"""Discovery: sightings, discovered assets, identifier bindings, device presence

The lookups of registered identities get their indexes: certificates by fingerprint,
PSKs by identity, and devices by the ``mac``, ``hostname`` and ``ip`` attributes (an
expression index over the JSON attributes, written for each backend; the queries in
``storage/registered_identities.py`` use exactly these expressions).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

ATTRIBUTES = ("mac", "hostname", "ip")


def attribute_expression(dialect: str, name: str) -> str:
    """The indexed expression of a device attribute (lower-cased text)."""
    if dialect == "postgresql":
        return f"lower((attributes::json) ->> '{name}')"
    return f"lower(json_extract(attributes, '$.{name}'))"


def upgrade() -> None:
    op.create_table(
        "discovery_sightings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  primary_key=True, autoincrement=True),
        sa.Column("digest", sa.LargeBinary(16), nullable=False, unique=True),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        *(sa.Column(name, sa.String(size), nullable=True) for name, size in (
            ("site", 256), ("network", 256), ("ip", 64), ("mac", 17), ("hostname", 256),
            ("client_id", 256), ("username", 256), ("certificate", 64), ("issuer", 256),
            ("serial", 256), ("subject", 256))),
        sa.Column("not_after", sa.Float(), nullable=True),
        *(sa.Column(name, sa.String(256), nullable=True) for name in (
            "key", "signature_hash", "psk_identity", "vendor", "model")),
        sa.Column("open_ports", sa.Text(), nullable=True),
        sa.Column("detail", sa.String(256), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("asset_id", sa.String(32), nullable=True),
        sa.Column("basis", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
    )
    op.create_index("ix_discovery_sightings_asset", "discovery_sightings", ["asset_id"])
    op.create_table(
        "discovery_assets",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("sources", sa.String(1024), nullable=False),
        sa.Column("sightings", sa.Integer(), nullable=False),
        *(sa.Column(name, sa.String(size), nullable=True) for name, size in (
            ("site", 256), ("network", 256), ("ip", 64), ("mac", 17), ("hostname", 256),
            ("vendor", 256), ("model", 256))),
        sa.Column("open_ports", sa.Text(), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
    )
    op.create_index("ix_discovery_assets_org_path_id", "discovery_assets", ["org_path", "id"])
    op.create_table(
        "discovery_identifiers",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(600), nullable=False),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("asset_id", sa.String(32), nullable=True),
        sa.Column("device_id", sa.String(128), nullable=True),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", "org_path"),
    )
    op.create_index("ix_discovery_identifiers_asset", "discovery_identifiers", ["asset_id"])
    op.create_table(
        "discovery_presence",
        sa.Column("device_id", sa.String(128), primary_key=True),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("first_seen", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("sources", sa.String(1024), nullable=False),
        sa.Column("sightings", sa.BigInteger(), nullable=False),
        sa.Column("places", sa.Text(), nullable=False),
    )
    op.create_index("ix_discovery_presence_org_path", "discovery_presence",
                    ["org_path", "device_id"])
    op.create_index("ix_certificates_fingerprint", "certificates", ["fingerprint_sha256"])
    op.create_index("ix_psks_identity", "psks", ["identity"])
    dialect = op.get_bind().dialect.name
    for name in ATTRIBUTES:
        op.execute(f"CREATE INDEX ix_devices_attribute_{name} ON devices "
                   f"({attribute_expression(dialect, name)})")


def downgrade() -> None:
    for name in ATTRIBUTES:
        op.execute(f"DROP INDEX ix_devices_attribute_{name}")
    op.drop_index("ix_psks_identity", table_name="psks")
    op.drop_index("ix_certificates_fingerprint", table_name="certificates")
    for table in ("discovery_presence", "discovery_identifiers", "discovery_assets",
                  "discovery_sightings"):
        op.drop_table(table)
