"""The PKI stores in memory (``iotiam.pki.ports``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.errors import Conflict
from iotiam.pki.crl import RevocationRow
from iotiam.pki.models import (
    CaRole,
    CertificateRecord,
    CertificateStatus,
    Revocation,
    RevocationReason,
    SerialInUse,
    serial_hex,
)
from iotiam.pki.ports import CrlInfo, SignedCertificate, StoredCa, StoredCrl
from iotiam.testing.fakes.memory import MemoryStore, under


@dataclass
class MemoryCaStore(MemoryStore):
    """``CaStore``: key pairs by id."""

    cas: dict[str, StoredCa] = field(default_factory=dict)

    def add(self, ca: StoredCa) -> None:
        """Store a key pair (Conflict if the id exists)."""
        if ca.id in self.cas:
            raise Conflict(f"CA {ca.id} exists")
        self.cas[ca.id] = ca

    def get(self, ca_id: str) -> StoredCa | None:
        """One by id."""
        return self.cas.get(ca_id)

    def active(self, role: CaRole) -> StoredCa | None:
        """The newest key pair of a role."""
        return max((c for c in self.cas.values() if c.role is role),
                   key=lambda c: c.created_at, default=None)

    def list_all(self) -> list[StoredCa]:
        """Every key pair, by id."""
        return [self.cas[i] for i in sorted(self.cas)]


@dataclass
class MemoryCertificateStore(MemoryStore):
    """``CertificateStore``: certificates by (issuer, serial), in insertion order (the
    SQL row id)."""

    certificates: dict[tuple[str, int], CertificateRecord] = field(default_factory=dict)

    def taken_serials(self, issuer_id: str, serials: Sequence[int]) -> set[int]:
        """Which of these serials the issuer has already used."""
        return {s for s in serials if (issuer_id, s) in self.certificates}

    def reserve_many(self, records: Sequence[CertificateRecord]) -> set[int]:
        """Record certificates before they are signed; the serials already used are left
        out and returned (G1)."""
        keys = [(r.issuer_id, r.serial) for r in records]
        if len(set(keys)) != len(keys):
            raise SerialInUse("a serial appears twice among the certificates to reserve")
        used = {r.serial for r in records if (r.issuer_id, r.serial) in self.certificates}
        for record in records:
            if record.serial in used:
                continue
            self.certificates[(record.issuer_id, record.serial)] = replace(
                record, status=CertificateStatus.RESERVED, pem=None,
                fingerprint_sha256=None, revoked_at=None, revocation_reason=None)
        return used

    def complete(self, signed: Sequence[SignedCertificate]) -> None:
        """Store signed certificates for their reservations (Conflict if one is not)."""
        for cert in signed:
            key = (cert.issuer_id, cert.serial)
            record = self.certificates.get(key)
            if record is None or record.status is not CertificateStatus.RESERVED:
                raise Conflict("a certificate to store is no longer reserved")
            self.certificates[key] = replace(record, status=CertificateStatus.ISSUED,
                                             pem=cert.pem,
                                             fingerprint_sha256=cert.fingerprint_sha256)

    def get(self, issuer_id: str, serial: int, *, for_update: bool = False
            ) -> CertificateRecord | None:
        """One certificate."""
        return self.certificates.get((issuer_id, serial))

    def find_by_serial(self, serial: int) -> list[CertificateRecord]:
        """Certificates with this serial under any issuer."""
        return [c for c in self.certificates.values() if c.serial == serial]

    def status_of(self, issuer_id: str, serial: int
                  ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Status, revocation time and reason."""
        record = self.certificates.get((issuer_id, serial))
        if record is None:
            return None
        return record.status, record.revoked_at, record.revocation_reason

    def revoke(self, issuer_id: str, serial: int, at: datetime, reason: RevocationReason) -> None:
        """Mark a certificate revoked; a second revocation is refused (G4)."""
        record = self.certificates.get((issuer_id, serial))
        if record is None or record.status is CertificateStatus.REVOKED:
            raise Conflict(f"certificate {serial_hex(serial)} is already revoked")
        self.certificates[(issuer_id, serial)] = replace(
            record, status=CertificateStatus.REVOKED, revoked_at=at, revocation_reason=reason)

    def page(self, *, org_path: str, device_id: str | None = None,
             status: CertificateStatus | None = None, limit: int = 100,
             offset: int = 0) -> list[CertificateRecord]:
        """Certificates under ``org_path``, newest first."""
        found = [c for c in reversed(self.certificates.values())
                 if under(c.org_path, org_path) and (not device_id or c.device_id == device_id)
                 and (not status or c.status is status)]
        return found[offset:offset + limit]

    def for_device(self, device_id: str) -> list[CertificateRecord]:
        """Every certificate of a device, oldest first."""
        return [c for c in self.certificates.values() if c.device_id == device_id]

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, list[CertificateRecord]]:
        """Every certificate of each of these devices, oldest first."""
        wanted = set(device_ids)
        found: dict[str, list[CertificateRecord]] = {}
        for c in self.certificates.values():
            if c.device_id is not None and c.device_id in wanted:
                found.setdefault(c.device_id, []).append(c)
        return found

    def key_holders(self, key_hashes: Sequence[str]) -> list[tuple[str, str | None]]:
        """(key hash, device id) of every certificate for one of these keys."""
        wanted = set(key_hashes)
        return [(c.public_key_sha256, c.device_id) for c in self.certificates.values()
                if c.public_key_sha256 is not None and c.public_key_sha256 in wanted]

    def with_public_key(self, public_key_sha256: str) -> list[CertificateRecord]:
        """Certificates (any status) for this key."""
        return [c for c in self.certificates.values()
                if c.public_key_sha256 == public_key_sha256]

    def revocation_rows(self, issuer_id: str, *, expired_after: datetime
                        ) -> Sequence[RevocationRow]:
        """(serial hex, revoked at, reason) of revocations inside the CRL window."""
        return [(serial_hex(c.serial), c.revoked_at, str(c.revocation_reason))
                for c in self.certificates.values()
                if c.issuer_id == issuer_id and c.status is CertificateStatus.REVOKED
                and c.not_after > expired_after and c.revoked_at is not None]

    def revocations(self, issuer_id: str, *, expired_after: datetime) -> Sequence[Revocation]:
        """Revoked certificates still inside the CRL window (G6)."""
        return [Revocation(c.serial, c.revoked_at, c.revocation_reason)
                for c in self.certificates.values()
                if c.issuer_id == issuer_id and c.status is CertificateStatus.REVOKED
                and c.not_after > expired_after and c.revoked_at is not None
                and c.revocation_reason is not None]

    def iter_device_certificates(self, *, org_path: str) -> Iterator[CertificateRecord]:
        """Issued or revoked device certificates under ``org_path``, without PEM."""
        for c in list(self.certificates.values()):
            if under(c.org_path, org_path) and c.device_id is not None \
                    and c.status is not CertificateStatus.RESERVED:
                yield replace(c, pem=None)

    def live_issued_by(self, issuer_id: str, now: datetime) -> list[tuple[int, str | None]]:
        """(serial, device id) of the issuer's issued, unexpired certificates, oldest first."""
        return [(c.serial, c.device_id) for c in self.certificates.values()
                if c.issuer_id == issuer_id and c.status is CertificateStatus.ISSUED
                and c.not_after > now]

    def count_live(self, issuer_id: str, now: datetime) -> int:
        """How many of the issuer's issued certificates are unexpired."""
        return len(self.live_issued_by(issuer_id, now))

    def revoke_many(self, issuer_id: str, serials: Sequence[int], at: datetime,
                    reason: RevocationReason) -> None:
        """Revoke those not revoked yet."""
        for serial in serials:
            record = self.certificates.get((issuer_id, serial))
            if record is not None and record.status is not CertificateStatus.REVOKED:
                self.certificates[(issuer_id, serial)] = replace(
                    record, status=CertificateStatus.REVOKED, revoked_at=at,
                    revocation_reason=reason)


@dataclass
class MemoryCrlStore(MemoryStore):
    """``CrlStore``: every CRL published."""

    crls: list[StoredCrl] = field(default_factory=list)

    def add(self, crl: StoredCrl) -> None:
        """Store a CRL (Conflict on a number the issuer used)."""
        if any(c.issuer_id == crl.issuer_id and c.number == crl.number for c in self.crls):
            raise Conflict(f"CRL {crl.number} exists")
        self.crls.append(crl)

    def latest(self, issuer_id: str) -> StoredCrl | None:
        """The newest CRL of an issuer."""
        return max((c for c in self.crls if c.issuer_id == issuer_id),
                   key=lambda c: c.number, default=None)

    def latest_info(self, issuer_id: str) -> CrlInfo | None:
        """Number, validity and watermark of the newest CRL."""
        crl = self.latest(issuer_id)
        if crl is None:
            return None
        return CrlInfo(issuer_id=crl.issuer_id, number=crl.number,
                       next_update=crl.next_update,
                       revocation_watermark=crl.revocation_watermark)


@dataclass
class MemoryCounterStore(MemoryStore):
    """``CounterStore``: named counters."""

    values: dict[str, int] = field(default_factory=dict)

    def next(self, name: str) -> int:
        """Increment and return."""
        self.values[name] = self.values.get(name, 0) + 1
        return self.values[name]

    def current(self, name: str) -> int:
        """Current value (0 if never incremented)."""
        return self.values.get(name, 0)


class MemoryStatusReader:
    """``CertificateStatusReader`` over the certificates of a unit of work."""

    def __init__(self, certificates: MemoryCertificateStore) -> None:
        self._certificates = certificates

    def status_of(self, issuer_id: str, serial: int
                  ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Status, revocation time and reason, or None for an unknown serial."""
        return self._certificates.status_of(issuer_id, serial)
