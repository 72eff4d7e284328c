"""The inventory's tables: org units, device types, devices and groups."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

org_units = Table(
    "org_units",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("parent_id", String(128), ForeignKey("org_units.id"), nullable=True),
    Column("path", String(2048), nullable=False, unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

device_types = Table(
    "device_types",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("device_class", String(32), nullable=False),
    Column("criticality", String(16), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("certificate_profile", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("certificate_lifetime_seconds", Integer, nullable=True),
    Column("grace_seconds", Integer, nullable=False, server_default="259200"),
    Column("max_credential_age_seconds", Integer, nullable=False, server_default="2592000"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("type_name", String(128), ForeignKey("device_types.name"), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("state", String(32), nullable=False),
    Column("site", String(256), nullable=True),
    Column("location", String(256), nullable=True),
    Column("attributes", Text, nullable=False, default="{}"),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    #: access tokens issued until this instant are dead (quarantine, suspension, revocation)
    Column("tokens_not_before", UtcDateTime(), nullable=True),
    Index("ix_devices_org_path_id", "org_path", "id"),
    # the broker sync asks "what changed since" ten times a second
    Index("ix_devices_updated_at", "updated_at"),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", String(128), ForeignKey("groups.id"), nullable=False),
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=False),
    PrimaryKeyConstraint("group_id", "device_id"),
    Index("ix_group_members_device", "device_id"),
)

#: devices per (org unit, type, state, site), kept by triggers on ``devices`` in the
#: writing transaction (migration 0022): the report and list totals read these rows,
#: never the million device rows; ``site`` is ``''`` for none (a key column)
device_counts = Table(
    "device_counts",
    metadata,
    Column("org_path", String(2048), nullable=False),
    Column("type_name", String(128), nullable=False),
    Column("state", String(32), nullable=False),
    Column("site", String(256), nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("org_path", "type_name", "state", "site"),
)

#: one row per device that holds (or held) a certificate: what its credential status
#: and key age are judged from at any time, so that the report reads one narrow row per
#: device instead of three certificates (storage/credential_standing.py keeps it)
device_credentials = Table(
    "device_credentials",
    metadata,
    Column("device_id", String(128), primary_key=True),
    Column("org_path", String(2048), nullable=False),
    Column("type_name", String(128), nullable=False),
    # the issued certificate with the newest notBefore, NULL when none is issued
    Column("newest_not_before", UtcDateTime(), nullable=True),
    Column("newest_not_after", UtcDateTime(), nullable=True),
    Column("renew_by", UtcDateTime(), nullable=True),
    # the latest notAfter of any issued certificate (an older one may outlive the newest)
    Column("issued_until", UtcDateTime(), nullable=True),
    # when the newest certificate's key was first certified; NULL: no key hash recorded
    Column("key_since", UtcDateTime(), nullable=True),
    Index("ix_device_credentials_org_path", "org_path"),
    # the report reads exactly only the rows whose instants fall on a threshold's day
    Index("ix_device_credentials_not_before", "newest_not_before"),
    Index("ix_device_credentials_not_after", "newest_not_after"),
    Index("ix_device_credentials_renew_by", "renew_by"),
    Index("ix_device_credentials_issued_until", "issued_until"),
    Index("ix_device_credentials_key_since", "key_since"),
)

#: ``device_credentials`` counted per org unit, type and the UTC day of each instant
#: (``NO_DAY`` for none): the report judges a whole day-bucket at once and reads rows only
#: for the buckets whose day is a threshold's (storage/credential_days.py)
device_credential_days = Table(
    "device_credential_days",
    metadata,
    Column("org_path", String(2048), nullable=False),
    Column("type_name", String(128), nullable=False),
    Column("not_before_day", Integer, nullable=False),
    Column("not_after_day", Integer, nullable=False),
    Column("renew_by_day", Integer, nullable=False),
    Column("issued_until_day", Integer, nullable=False),
    Column("key_since_day", Integer, nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("org_path", "type_name", "not_before_day", "not_after_day",
                         "renew_by_day", "issued_until_day", "key_since_day"),
)
