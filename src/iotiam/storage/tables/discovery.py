"""Discovery's tables: sightings, discovered assets, identifier bindings, device presence.

Every sighting's digest is kept (idempotency); a sighting's full row only when it shows
a credential, the one thing read back of sightings (migration 0020).

Times are seconds since the epoch (``Float``), as in ``discovery/models.py``: an import
writes a million of them. The registered identities are read from the inventory, PKI
and PSK tables; the indexes those lookups need are declared here, on those tables
(migration 0016, 0023); the device-attribute ones are expressions over the JSON
attributes, which the migrations write out per backend.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    cast,
    func,
)
from sqlalchemy.sql.elements import ColumnElement

from iotiam.storage.tables import credentials, inventory, pki
from iotiam.storage.tables.columns import metadata

SightingId = BigInteger().with_variant(Integer(), "sqlite")

#: every sighting ever stored, by ``scoped_digests`` (its ``Sighting.digest()`` under the
#: org path it was imported under): what makes each org's imports idempotent
sighting_digests = Table(
    "discovery_sighting_digests",
    metadata,
    Column("digest", LargeBinary(16), primary_key=True),
    sqlite_with_rowid=False,
)

#: the sightings that show a credential (a certificate, an issuer and serial, a PSK
#: identity), in full: what the risk register reads back (``iter_credentials_seen``);
#: the others are only their digest
sightings = Table(
    "discovery_sightings",
    metadata,
    Column("id", SightingId, primary_key=True, autoincrement=True),
    #: ``scoped_digests``, as in ``discovery_sighting_digests``: the same observation is
    #: stored once per org path
    Column("digest", LargeBinary(16), nullable=False, unique=True),
    Column("org_path", String(2048), nullable=False),
    Column("source", String(64), nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("site", String(256), nullable=True),
    Column("network", String(256), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("mac", String(17), nullable=True),
    Column("hostname", String(256), nullable=True),
    Column("client_id", String(256), nullable=True),
    Column("username", String(256), nullable=True),
    Column("certificate", String(64), nullable=True),
    Column("issuer", String(256), nullable=True),
    Column("serial", String(256), nullable=True),
    Column("subject", String(256), nullable=True),
    Column("not_after", Float, nullable=True),
    Column("key", String(256), nullable=True),
    Column("signature_hash", String(256), nullable=True),
    Column("psk_identity", String(256), nullable=True),
    Column("vendor", String(256), nullable=True),
    Column("model", String(256), nullable=True),
    Column("open_ports", Text, nullable=True),
    Column("detail", String(256), nullable=True),
    Column("device_id", String(128), nullable=True),
    Column("asset_id", String(32), nullable=True),
    Column("basis", String(16), nullable=False),
    Column("confidence", Float, nullable=False),
    # a merge moves an asset's sightings to the asset it joined
    Index("ix_discovery_sightings_asset", "asset_id"),
    #: a refresh reads the sightings of its devices' own credentials by value
    #: (``discovery_reads.credentials_seen``)
    Index("ix_discovery_sightings_certificate", "certificate"),
    Index("ix_discovery_sightings_psk_identity", "psk_identity"),
    Index("ix_discovery_sightings_issuer_serial", "issuer", "serial"),
)

assets = Table(
    "discovery_assets",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("org_path", String(2048), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    #: sorted source names, comma-separated
    Column("sources", String(1024), nullable=False),
    Column("sightings", Integer, nullable=False),
    Column("site", String(256), nullable=True),
    Column("network", String(256), nullable=True),
    Column("ip", String(64), nullable=True),
    Column("mac", String(17), nullable=True),
    Column("hostname", String(256), nullable=True),
    Column("vendor", String(256), nullable=True),
    Column("model", String(256), nullable=True),
    Column("open_ports", Text, nullable=True),
    Column("device_id", String(128), nullable=True),
    Index("ix_discovery_assets_org_path_id", "org_path", "id"),
)

bindings = Table(
    "discovery_identifiers",
    metadata,
    Column("kind", String(16), nullable=False),
    #: the identifier's value; an IP as ``site|ip`` (``models.ip_key``)
    Column("value", String(600), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("asset_id", String(32), nullable=True),
    Column("device_id", String(128), nullable=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    PrimaryKeyConstraint("kind", "value", "org_path"),
    Index("ix_discovery_identifiers_asset", "asset_id"),
)

presence = Table(
    "discovery_presence",
    metadata,
    Column("device_id", String(128), primary_key=True),
    Column("org_path", String(2048), nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("sources", String(1024), nullable=False),
    Column("sightings", BigInteger, nullable=False),
    #: JSON ``[[site, ip, last seen], ...]``
    Column("places", Text, nullable=False),
    Index("ix_discovery_presence_org_path", "org_path", "device_id"),
)

# the registered identities' lookups (``storage/registered_identities.py``)
Index("ix_certificates_fingerprint", pki.certificates.c.fingerprint_sha256)
Index("ix_psks_identity", credentials.psks.c.identity)
#: the device attributes sightings match, each indexed in the one spelling a lookup
#: asks for (migration 0023): an address lower-cased, a MAC also without separators, a
#: host name also without trailing dots
DEVICE_ATTRIBUTES = ("mac", "hostname", "ip")


def _attribute(name: str) -> ColumnElement[str]:
    return func.lower(cast(inventory.devices.c.attributes, JSON)[name].as_string())


Index("ix_devices_attribute_ip", _attribute("ip"))
Index("ix_devices_mac_spelled", func.replace(func.replace(func.replace(
    _attribute("mac"), ":", ""), "-", ""), ".", ""))
Index("ix_devices_hostname_spelled", func.rtrim(_attribute("hostname"), "."))
