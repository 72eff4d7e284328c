"""The authorization server's stores in memory (``iotiam.tokens.ports``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.errors import Conflict
from iotiam.pki.models import CertificateRecord
from iotiam.policy.models import DevicePosture
from iotiam.testing.fakes.attestation import MemoryFirmwareStore
from iotiam.testing.fakes.inventory import MemoryDeviceStore, MemoryGroupStore
from iotiam.testing.fakes.memory import MemoryStore, under
from iotiam.testing.fakes.pki import MemoryCertificateStore
from iotiam.testing.fakes.response import MemoryTrustStore
from iotiam.tokens.models import (
    ClientStatus,
    DeviceCode,
    DeviceCodeStatus,
    OAuthClient,
    RevokedToken,
    StoredSigningKey,
)


@dataclass
class MemoryOAuthClientStore(MemoryStore):
    """``OAuthClientStore``: clients by id, reading devices, groups, trust, firmware and
    certificates where the SQL store joins them."""

    devices: MemoryDeviceStore
    groups: MemoryGroupStore
    trust: MemoryTrustStore
    firmware: MemoryFirmwareStore
    certificates: MemoryCertificateStore
    clients: dict[str, OAuthClient] = field(default_factory=dict)

    def add(self, client: OAuthClient) -> None:
        """Insert a client (Conflict if the id, or the device's client, exists)."""
        if client.client_id in self.clients or (
                client.device_id is not None and self.for_device(client.device_id)):
            raise Conflict(f"client {client.client_id} exists")
        self.clients[client.client_id] = client

    def get(self, client_id: str) -> OAuthClient | None:
        """One client by id."""
        return self.clients.get(client_id)

    def for_device(self, device_id: str) -> OAuthClient | None:
        """The client bound to a device, if any."""
        return next((c for c in self.clients.values() if c.device_id == device_id), None)

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, OAuthClient]:
        """The client of each of these devices that has one."""
        wanted = set(device_ids)
        return {c.device_id: c for c in self.clients.values()
                if c.device_id is not None and c.device_id in wanted}

    def list_under(self, *, org_path: str, limit: int = 1000) -> list[OAuthClient]:
        """Clients under ``org_path``, by id."""
        return [self.clients[i] for i in sorted(self.clients)
                if under(self.clients[i].org_path, org_path)][:limit]

    def revoke(self, client_id: str, at: datetime) -> None:
        """Mark a client revoked."""
        if client_id in self.clients:
            self.clients[client_id] = replace(self.clients[client_id],
                                              status=ClientStatus.REVOKED, revoked_at=at)

    def get_many(self, client_ids: Sequence[str]) -> dict[str, OAuthClient]:
        """The registered clients among these ids, by id."""
        return {i: self.clients[i] for i in client_ids if i in self.clients}

    def presented_certificates(self, issuer_id: str, serials: Sequence[int]
                               ) -> dict[int, CertificateRecord]:
        """``presented_certificate`` for many serials of one issuer, by serial."""
        found = {s: self.presented_certificate(issuer_id, s) for s in serials}
        return {s: c for s, c in found.items() if c is not None}

    def presented_certificate(self, issuer_id: str, serial: int) -> CertificateRecord | None:
        """The certificate a client presents for ``tls_client_auth``, without its PEM."""
        record = self.certificates.get(issuer_id, serial)
        return replace(record, pem=None, revocation_reason=None) if record else None

    def device_standings(self, device_ids: Sequence[str]
                         ) -> dict[str, tuple[list[str], DevicePosture | None]]:
        """Group ids and stored posture of each registered device."""
        return {i: self._standing(i) for i in device_ids if self.devices.get(i) is not None}

    def device_standing(self, device_id: str) -> tuple[list[str], DevicePosture | None]:
        """Group ids and stored posture of a device."""
        if self.devices.get(device_id) is None:
            return [], None
        return self._standing(device_id)

    def _standing(self, device_id: str) -> tuple[list[str], DevicePosture | None]:
        groups = self.groups.groups_of(device_id)
        score = self.trust.scores.get(device_id)
        status = self.firmware.status(device_id)
        if score is None and status is None:
            return groups, None
        return groups, DevicePosture(None if score is None else float(score.score),
                                     None if status is None else status.compliant)


@dataclass
class MemorySigningKeyStore(MemoryStore):
    """``SigningKeyStore``: keys by kid."""

    keys: dict[str, StoredSigningKey] = field(default_factory=dict)

    def add(self, key: StoredSigningKey) -> None:
        """Store a new key (Conflict if the kid exists)."""
        if key.kid in self.keys:
            raise Conflict(f"key {key.kid} exists")
        self.keys[key.kid] = key

    def list_all(self) -> list[StoredSigningKey]:
        """Every key, oldest first."""
        return sorted(self.keys.values(), key=lambda k: k.created_at)

    def retire(self, kid: str, at: datetime, publish_until: datetime) -> None:
        """Stop signing with ``kid`` (once); publish it until ``publish_until``."""
        key = self.keys.get(kid)
        if key is not None and key.retired_at is None:
            self.keys[kid] = replace(key, retired_at=at, publish_until=publish_until)


@dataclass
class MemoryAssertionJtiStore(MemoryStore):
    """``AssertionJtiStore``: (client, jti) pairs with their expiry."""

    used: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def use(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a jti; False if this client used it before."""
        if (client_id, jti) in self.used:
            return False
        self.used[(client_id, jti)] = expires_at
        return True

    def purge(self, before: datetime) -> int:
        """Forget entries whose assertion expired before ``before``."""
        gone = [k for k, expires in self.used.items() if expires < before]
        for key in gone:
            del self.used[key]
        return len(gone)


@dataclass
class MemoryTokenDenyList(MemoryStore):
    """``TokenDenyList``: revoked tokens by jti."""

    denied: dict[str, RevokedToken] = field(default_factory=dict)

    def add(self, entry: RevokedToken) -> None:
        """Deny a token (idempotent)."""
        self.denied.setdefault(entry.jti, entry)

    def is_denied(self, jti: str) -> bool:
        """Whether a token was revoked."""
        return jti in self.denied

    def purge(self, before: datetime) -> int:
        """Forget entries of tokens that expired before ``before``."""
        gone = [j for j, e in self.denied.items() if e.expires_at < before]
        for jti in gone:
            del self.denied[jti]
        return len(gone)


@dataclass
class MemoryDeviceCodeStore(MemoryStore):
    """``DeviceCodeStore``: RFC 8628 codes by the hash of their device code."""

    codes: dict[str, DeviceCode] = field(default_factory=dict)

    def add(self, code: DeviceCode) -> None:
        """Store a new device code (Conflict on a hash or user code in use)."""
        if code.device_code_hash in self.codes or self.by_user_code(code.user_code):
            raise Conflict("the device code exists")
        self.codes[code.device_code_hash] = code

    def by_hash(self, device_code_hash: str) -> DeviceCode | None:
        """One by the hash of its device code."""
        return self.codes.get(device_code_hash)

    def by_user_code(self, user_code: str) -> DeviceCode | None:
        """One by its user code."""
        return next((c for c in self.codes.values() if c.user_code == user_code), None)

    def pending_under(self, *, org_path: str, now: datetime) -> list[DeviceCode]:
        """Unexpired pending codes under ``org_path``, oldest first."""
        return sorted((c for c in self.codes.values()
                       if c.status is DeviceCodeStatus.PENDING and c.expires_at > now
                       and under(c.org_path, org_path)), key=lambda c: c.created_at)[:1000]

    def decide(self, device_code_hash: str, status: DeviceCodeStatus, at: datetime,
               by: str) -> bool:
        """Approve or deny a pending code; False if it is no longer pending."""
        code = self.codes.get(device_code_hash)
        if code is None or code.status is not DeviceCodeStatus.PENDING:
            return False
        self.codes[device_code_hash] = replace(code, status=status, decided_at=at,
                                               decided_by=by)
        return True

    def polled(self, device_code_hash: str, at: datetime, interval_seconds: int) -> None:
        """Record a poll."""
        code = self.codes.get(device_code_hash)
        if code is not None:
            self.codes[device_code_hash] = replace(code, last_polled_at=at,
                                                   interval_seconds=interval_seconds)

    def redeem(self, device_code_hash: str, at: datetime) -> bool:
        """Approved → used, exactly once."""
        code = self.codes.get(device_code_hash)
        if code is None or code.status is not DeviceCodeStatus.APPROVED \
                or code.expires_at <= at:
            return False
        self.codes[device_code_hash] = replace(code, status=DeviceCodeStatus.USED)
        return True
