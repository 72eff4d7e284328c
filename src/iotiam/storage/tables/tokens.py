"""The OAuth server's tables: clients, signing keys, used assertion ids, revoked
access tokens and device-authorization codes."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from iotiam.storage.tables.columns import UtcDateTime, metadata

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    # one client per device; NULL for service clients
    Column("device_id", String(128), ForeignKey("devices.id"), nullable=True),
    Column("org_unit_id", String(128), ForeignKey("org_units.id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    # JSON lists
    Column("auth_methods", Text, nullable=False),
    Column("grant_types", Text, nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audiences", Text, nullable=False),
    # JSON JWK set of public keys, or NULL
    Column("jwks", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    UniqueConstraint("device_id", name="uq_oauth_clients_device"),
    Index("ix_oauth_clients_org_path", "org_path", "client_id"),
)

oauth_signing_keys = Table(
    "oauth_signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("public_jwk", Text, nullable=False),
    # PKCS#8 encrypted with the CA passphrase, like the CA keys
    Column("encrypted_key_pem", Text, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("retired_at", UtcDateTime(), nullable=True),
    Column("publish_until", UtcDateTime(), nullable=True),
)

oauth_assertion_jtis = Table(
    "oauth_assertion_jtis",
    metadata,
    Column("client_id", String(128), nullable=False),
    Column("jti", String(256), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    # RFC 7523 §3: a jti is used once; the primary key refuses the second use
    PrimaryKeyConstraint("client_id", "jti", name="pk_oauth_assertion_jtis"),
    Index("ix_oauth_assertion_jtis_expires_at", "expires_at"),
)

oauth_revoked_tokens = Table(
    "oauth_revoked_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("client_id", String(128), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_oauth_revoked_tokens_expires_at", "expires_at"),
)

oauth_device_codes = Table(
    "oauth_device_codes",
    metadata,
    Column("device_code_hash", String(64), primary_key=True),
    Column("user_code", String(16), nullable=False),
    Column("client_id", String(128), ForeignKey("oauth_clients.client_id"), nullable=False),
    Column("org_path", String(2048), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("audience", String(512), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("interval_seconds", Integer, nullable=False),
    Column("last_polled_at", UtcDateTime(), nullable=True),
    Column("decided_at", UtcDateTime(), nullable=True),
    Column("decided_by", String(256), nullable=True),
    UniqueConstraint("user_code", name="uq_oauth_device_codes_user_code"),
    Index("ix_oauth_device_codes_status_org", "status", "org_path"),
)
