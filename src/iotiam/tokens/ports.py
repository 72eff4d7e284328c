"""Storage (and key custody) the authorization server needs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.inventory.ports import DeviceReader, OrgUnitStore
from iotiam.pki.models import CertificateRecord
from iotiam.pki.ports import CertificateStore
from iotiam.policy.models import DevicePosture
from iotiam.tokens.models import (
    DeviceCode,
    DeviceCodeStatus,
    OAuthClient,
    RevokedToken,
    StoredSigningKey,
)


class OAuthClientStore(Protocol):
    """Registered OAuth2 clients."""

    def add(self, client: OAuthClient) -> None:
        """Insert a client (Conflict if the id, or the device's client, exists)."""
        ...

    def get(self, client_id: str) -> OAuthClient | None:
        """One client by id."""
        ...

    def for_device(self, device_id: str) -> OAuthClient | None:
        """The client bound to a device, if any."""
        ...

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, OAuthClient]:
        """The client of each of these devices that has one, by device id (one read)."""
        ...

    def list_under(self, *, org_path: str, limit: int = 1000) -> list[OAuthClient]:
        """Clients under ``org_path``, by id."""
        ...

    def revoke(self, client_id: str, at: datetime) -> None:
        """Mark a client revoked (final)."""
        ...

    def get_many(self, client_ids: Sequence[str]) -> dict[str, OAuthClient]:
        """The registered clients among these ids, by id (one query per few hundred)."""
        ...

    def presented_certificates(self, issuer_id: str, serials: Sequence[int]
                               ) -> dict[int, CertificateRecord]:
        """``presented_certificate`` for many serials of one issuer, by serial."""
        ...

    def device_standings(self, device_ids: Sequence[str]
                         ) -> dict[str, tuple[list[str], DevicePosture | None]]:
        """``device_standing`` for many devices, by id (registered devices only)."""
        ...

    def device_standing(self, device_id: str) -> tuple[list[str], DevicePosture | None]:
        """Group ids and stored posture of a device (its client's policy subject needs
        them: scopes may be conditioned on the trust score or the firmware verdict)."""
        ...

    def presented_certificate(self, issuer_id: str, serial: int) -> CertificateRecord | None:
        """The certificate a client presents for ``tls_client_auth``, without its PEM."""
        ...


class SigningKeyStore(Protocol):
    """Access-token signing keys."""

    def add(self, key: StoredSigningKey) -> None:
        """Store a new key."""
        ...

    def list_all(self) -> list[StoredSigningKey]:
        """Every key, oldest first."""
        ...

    def retire(self, kid: str, at: datetime, publish_until: datetime) -> None:
        """Stop signing with ``kid``; keep it in the JWKS until ``publish_until``."""
        ...


class KeyVault(Protocol):
    """Where new access-token signing keys are made and kept instead of the database
    (a PKCS#11 token: ``iotiam.hsm.token_keys``); none, and they are stored encrypted."""

    def create(self) -> tuple[ec.EllipticCurvePublicKey, str]:
        """A new P-256 key pair: its public key, and the reference stored in place of
        the encrypted private key."""
        ...

    def signer(self, reference: str) -> Callable[[bytes], bytes]:
        """DER ECDSA P-256 / SHA-256 signatures with the key ``reference`` names."""
        ...


class AssertionJtiStore(Protocol):
    """``jti`` values of client assertions already used (RFC 7523 §3 item 7)."""

    def use(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a jti; False if this client used it before (the insert is the lock)."""
        ...

    def purge(self, before: datetime) -> int:
        """Forget entries whose assertion expired before ``before``."""
        ...


class TokenDenyList(Protocol):
    """Access tokens revoked before they expired (RFC 7009)."""

    def add(self, entry: RevokedToken) -> None:
        """Deny a token (idempotent)."""
        ...

    def is_denied(self, jti: str) -> bool:
        """Whether a token was revoked."""
        ...

    def purge(self, before: datetime) -> int:
        """Forget entries of tokens that expired before ``before``."""
        ...


class DeviceCodeStore(Protocol):
    """RFC 8628 device authorizations."""

    def add(self, code: DeviceCode) -> None:
        """Store a new device code (Conflict on a user code in use)."""
        ...

    def by_hash(self, device_code_hash: str) -> DeviceCode | None:
        """One by the hash of its device code."""
        ...

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        """One by its user code."""
        ...

    def pending_under(self, *, org_path: str, now: datetime) -> list[DeviceCode]:
        """Unexpired pending codes under ``org_path``, oldest first."""
        ...

    def decide(self, device_code_hash: str, status: DeviceCodeStatus, at: datetime,
               by: str) -> bool:
        """Approve or deny a pending code; False if it is no longer pending."""
        ...

    def polled(self, device_code_hash: str, at: datetime, interval_seconds: int) -> None:
        """Record a poll (and a grown interval after slow_down)."""
        ...

    def redeem(self, device_code_hash: str, at: datetime) -> bool:
        """Approved → used, exactly once (the row update is the lock, like G8)."""
        ...


class TokensUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores the authorization server works with, inside one transaction: its own,
    and the devices, org units and certificates its clients stand on (read)."""

    @property
    def changes(self) -> ChangeRecorder:
        """Publishes what changed when the transaction commits (``iotiam.changes``)."""
        ...

    @property
    def oauth_clients(self) -> OAuthClientStore:
        """OAuth2 clients."""
        ...

    @property
    def oauth_signing_keys(self) -> SigningKeyStore:
        """Access-token signing keys."""
        ...

    @property
    def oauth_assertion_jtis(self) -> AssertionJtiStore:
        """Used client-assertion jtis."""
        ...

    @property
    def oauth_revoked_tokens(self) -> TokenDenyList:
        """Revoked access tokens."""
        ...

    @property
    def oauth_device_codes(self) -> DeviceCodeStore:
        """RFC 8628 device codes."""
        ...

    @property
    def devices(self) -> DeviceReader:
        """The devices of device clients (read)."""
        ...

    @property
    def org_units(self) -> OrgUnitStore:
        """Where a service client is registered (read)."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """The certificates devices authenticate with (read)."""
        ...
