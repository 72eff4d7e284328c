"""Maintained counts for the inventory report and list totals

``device_counts`` (devices per org unit, type, state and site) is kept by triggers on
``devices``: every writer — one device, a bulk import's multi-row ``INSERT``, a state
change, a transfer — moves it in its own transaction, and none can forget to. On
PostgreSQL an insert or delete fires once per statement over its transition table (a
bulk import of 5,000 rows adds one grouped upsert, not 5,000), an update once per row
that changes a counted column; SQLite has only row triggers.
``device_credentials`` (one row per certificate holder) and ``device_credential_days``
(those rows counted per day of each instant) are kept by the certificate store and the
transfer (storage/credential_standing.py).

All three are filled from the existing rows in set-based SQL (``fleet_counts.recount``, the
same function ``iotiam db recount`` runs).

Revision ID: 0022
Revises: 0020
"""

# the DDL below is put together from this file's own constants, never from input
# ruff: noqa: S608

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from iotiam.storage.fleet_counts import recount

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None

_STANDING_INDEXES = {
    "ix_device_credentials_org_path": "org_path",
    "ix_device_credentials_not_before": "newest_not_before",
    "ix_device_credentials_not_after": "newest_not_after",
    "ix_device_credentials_renew_by": "renew_by",
    "ix_device_credentials_issued_until": "issued_until",
    "ix_device_credentials_key_since": "key_since",
}
_DAYS = ("not_before", "not_after", "renew_by", "issued_until", "key_since")
_KEY = "org_path, type_name, state, site"
_BUMP = f"ON CONFLICT ({_KEY}) DO UPDATE SET n = device_counts.n + EXCLUDED.n"

_PG = [
    f"""CREATE FUNCTION device_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO device_counts ({_KEY}, n)
  SELECT org_path, type_name, state, COALESCE(site, ''), COUNT(*) FROM new_devices
  GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 {_BUMP};
  RETURN NULL;
END $$""",
    # per row, and only when a counted column changes (the WHEN clause is evaluated
    # without calling the function): issuance touches updated_at of thousands of
    # devices a second and must not pay for counts it does not move
    f"""CREATE FUNCTION device_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- the two keys in one order in every transaction: two opposite moves cannot deadlock
  IF ROW(OLD.org_path, OLD.type_name, OLD.state, COALESCE(OLD.site, ''))
     < ROW(NEW.org_path, NEW.type_name, NEW.state, COALESCE(NEW.site, '')) THEN
    INSERT INTO device_counts ({_KEY}, n) VALUES (OLD.org_path, OLD.type_name, OLD.state,
      COALESCE(OLD.site, ''), -1) {_BUMP};
    INSERT INTO device_counts ({_KEY}, n) VALUES (NEW.org_path, NEW.type_name, NEW.state,
      COALESCE(NEW.site, ''), 1) {_BUMP};
  ELSE
    INSERT INTO device_counts ({_KEY}, n) VALUES (NEW.org_path, NEW.type_name, NEW.state,
      COALESCE(NEW.site, ''), 1) {_BUMP};
    INSERT INTO device_counts ({_KEY}, n) VALUES (OLD.org_path, OLD.type_name, OLD.state,
      COALESCE(OLD.site, ''), -1) {_BUMP};
  END IF;
  RETURN NULL;
END $$""",
    f"""CREATE FUNCTION device_counts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO device_counts ({_KEY}, n)
  SELECT org_path, type_name, state, COALESCE(site, ''), -COUNT(*) FROM old_devices
  GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 {_BUMP};
  RETURN NULL;
END $$""",
    "CREATE TRIGGER devices_counted_insert AFTER INSERT ON devices REFERENCING NEW TABLE "
    "AS new_devices FOR EACH STATEMENT EXECUTE FUNCTION device_counts_inserted()",
    "CREATE TRIGGER devices_counted_update AFTER UPDATE OF org_path, type_name, state, site "
    "ON devices FOR EACH ROW WHEN ((OLD.org_path, OLD.type_name, OLD.state, OLD.site) "
    "IS DISTINCT FROM (NEW.org_path, NEW.type_name, NEW.state, NEW.site)) "
    "EXECUTE FUNCTION device_counts_updated()",
    "CREATE TRIGGER devices_counted_delete AFTER DELETE ON devices REFERENCING OLD TABLE "
    "AS old_devices FOR EACH STATEMENT EXECUTE FUNCTION device_counts_deleted()",
]
_PG_DROP = [
    "DROP TRIGGER devices_counted_insert ON devices",
    "DROP TRIGGER devices_counted_update ON devices",
    "DROP TRIGGER devices_counted_delete ON devices",
    "DROP FUNCTION device_counts_inserted()",
    "DROP FUNCTION device_counts_updated()",
    "DROP FUNCTION device_counts_deleted()",
]


def _sqlite_bump(row: str, delta: int) -> str:
    return (f"INSERT INTO device_counts ({_KEY}, n) VALUES ({row}.org_path, {row}.type_name, "
            f"{row}.state, COALESCE({row}.site, ''), {delta}) {_BUMP};")


_SQLITE = [
    f"""CREATE TRIGGER devices_counted_insert AFTER INSERT ON devices BEGIN
  {_sqlite_bump("NEW", 1)}
END""",
    f"""CREATE TRIGGER devices_counted_update AFTER UPDATE OF {_KEY} ON devices
WHEN OLD.org_path IS NOT NEW.org_path OR OLD.type_name IS NOT NEW.type_name
  OR OLD.state IS NOT NEW.state OR OLD.site IS NOT NEW.site
BEGIN
  {_sqlite_bump("OLD", -1)}
  {_sqlite_bump("NEW", 1)}
END""",
    f"""CREATE TRIGGER devices_counted_delete AFTER DELETE ON devices BEGIN
  {_sqlite_bump("OLD", -1)}
END""",
]
_SQLITE_DROP = [
    "DROP TRIGGER devices_counted_insert",
    "DROP TRIGGER devices_counted_update",
    "DROP TRIGGER devices_counted_delete",
]


def upgrade() -> None:
    op.create_table(
        "device_counts",
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("type_name", sa.String(128), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("site", sa.String(256), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_path", "type_name", "state", "site"),
    )
    op.create_table(
        "device_credentials",
        sa.Column("device_id", sa.String(128), primary_key=True),
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("type_name", sa.String(128), nullable=False),
        sa.Column("newest_not_before", sa.DateTime(), nullable=True),
        sa.Column("newest_not_after", sa.DateTime(), nullable=True),
        sa.Column("renew_by", sa.DateTime(), nullable=True),
        sa.Column("issued_until", sa.DateTime(), nullable=True),
        sa.Column("key_since", sa.DateTime(), nullable=True),
    )
    for name, column in _STANDING_INDEXES.items():
        op.create_index(name, "device_credentials", [column])
    op.create_table(
        "device_credential_days",
        sa.Column("org_path", sa.String(2048), nullable=False),
        sa.Column("type_name", sa.String(128), nullable=False),
        *[sa.Column(f"{day}_day", sa.Integer(), nullable=False) for day in _DAYS],
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_path", "type_name", *[f"{day}_day" for day in _DAYS]),
    )
    conn = op.get_bind()
    for statement in _PG if conn.dialect.name == "postgresql" else _SQLITE:
        op.execute(statement)
    recount(conn)


def downgrade() -> None:
    conn = op.get_bind()
    for statement in _PG_DROP if conn.dialect.name == "postgresql" else _SQLITE_DROP:
        op.execute(statement)
    op.drop_table("device_credential_days")
    for name in _STANDING_INDEXES:
        op.drop_index(name, "device_credentials")
    op.drop_table("device_credentials")
    op.drop_table("device_counts")
