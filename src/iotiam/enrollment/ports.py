"""Storage enrollment needs."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.enrollment.models import (
    ClaimToken,
    EnrollmentRequest,
    ManifestEntry,
    Manufacturer,
    RequestStatus,
)
from iotiam.inventory.ports import DeviceOwnership, DeviceRegistry, DeviceTypeStore, OrgUnitStore
from iotiam.pki.ports import CaStore, CertificateStore


class ClaimTokenStore(Protocol):
    """One-time claim tokens (hashed)."""

    def add(self, token: ClaimToken) -> None:
        """Store a new token."""
        ...

    def get(self, token_id: str) -> ClaimToken | None:
        """One token by id."""
        ...

    def redeem(self, token_id: str, at: datetime) -> bool:
        """Mark used if still unused and unexpired; True for exactly one caller (G8)."""
        ...

    def for_device(self, device_id: str) -> list[ClaimToken]:
        """Every token of a device."""
        ...

    def expire_for_device(self, device_id: str, at: datetime) -> int:
        """End every unused, unexpired token of a device now; return how many."""
        ...


class ManufacturerStore(Protocol):
    """Registered manufacturer CAs."""

    def add(self, manufacturer: Manufacturer) -> None:
        """Store a new manufacturer (Conflict if the name or certificate exists)."""
        ...

    def get(self, name: str) -> Manufacturer | None:
        """One manufacturer by name."""
        ...

    def by_fingerprint(self, fingerprint_sha256: str) -> Manufacturer | None:
        """The manufacturer registered with this CA certificate, if any."""
        ...

    def list_all(self) -> list[Manufacturer]:
        """Every manufacturer, by name (first contact checks them all: there are few)."""
        ...

    def list_under(self, org_path: str) -> list[Manufacturer]:
        """Manufacturers whose devices land inside the subtree at ``org_path``."""
        ...


class ManifestStore(Protocol):
    """Manufacturing manifests: which IDevID serials a manufacturer shipped."""

    def add(self, entry: ManifestEntry) -> None:
        """Store an entry (Conflict if the serial is in any manifest already)."""
        ...

    def get(self, serial: str) -> ManifestEntry | None:
        """The entry of a serial, whichever manufacturer listed it."""
        ...

    def count(self, manufacturer: str) -> int:
        """How many serials a manufacturer's manifest lists."""
        ...

    def pin_key(self, serial: str, public_key_sha256: str) -> bool:
        """Record the IDevID key first seen for an entry without one; False if one is set."""
        ...

    def mark_enrolled(self, serial: str, at: datetime) -> None:
        """Remember the first enrollment of a serial."""
        ...


class EnrollmentRequestStore(Protocol):
    """First contacts held for an admin (RFC 7030 §4.2.3)."""

    def add(self, request: EnrollmentRequest) -> None:
        """Store a new request (Conflict if its CSR is already queued)."""
        ...

    def get(self, request_id: str) -> EnrollmentRequest | None:
        """One request by id."""
        ...

    def by_csr(self, csr_sha256: str) -> EnrollmentRequest | None:
        """The request made with this CSR (RFC 7030: a retry is the same CSR)."""
        ...

    def count_pending(self, *, source: str | None = None) -> int:
        """Pending requests, in all or from one source address."""
        ...

    def drop_stale(self, before: datetime) -> int:
        """Delete pending requests created before ``before``; return how many."""
        ...

    def touch(self, request_id: str, at: datetime) -> None:
        """Count a poll."""
        ...

    def decide(
        self, request_id: str, status: RequestStatus, at: datetime, by: str, note: str | None
    ) -> bool:
        """Close a pending request; True only for the caller that closed it."""
        ...

    def set_certificate(self, request_id: str, serial_hex: str) -> None:
        """Record the certificate an approval produced."""
        ...

    def page(
        self, *, org_path: str, include_unscoped: bool, status: RequestStatus | None,
        limit: int,
    ) -> list[EnrollmentRequest]:
        """Requests under ``org_path`` (plus those with no org unit when allowed), oldest first."""
        ...

    def close_for_device(self, device_id: str, at: datetime, by: str, note: str) -> int:
        """Reject every pending request of a device; return how many."""
        ...


class EnrollmentUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores enrollment use cases work with, inside one transaction: its own, and
    the inventory and PKI rows a first contact or a transfer reads or ends (a
    transfer detaches policies through ``policy.ports.DeviceAttachments``)."""

    @property
    def changes(self) -> ChangeRecorder:
        """Publishes what changed when the transaction commits (``iotiam.changes``)."""
        ...

    @property
    def claims(self) -> ClaimTokenStore:
        """One-time claim tokens."""
        ...

    @property
    def manufacturers(self) -> ManufacturerStore:
        """Registered manufacturer CAs."""
        ...

    @property
    def manifest(self) -> ManifestStore:
        """Manufacturing manifests."""
        ...

    @property
    def enrollment_requests(self) -> EnrollmentRequestStore:
        """First contacts held for an admin."""
        ...

    @property
    def ownership(self) -> DeviceOwnership:
        """The inventory writes of ownership transfers."""
        ...

    @property
    def org_units(self) -> OrgUnitStore:
        """Where devices land (read)."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """Device types (read)."""
        ...

    @property
    def devices(self) -> DeviceRegistry:
        """Devices (read; a device first seen at enrollment is added, pending, by
        ``onboarding.register``, the one write of this store enrollment has)."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Certificates (read: the one a renewal presents, the one an approval made)."""
        ...

    @property
    def cas(self) -> CaStore:
        """iotiam's own CAs (read: never registered as a manufacturer's)."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested transaction: an error inside rolls back only what it did."""
        ...
