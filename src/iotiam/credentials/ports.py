"""Storage the PSK lifecycle needs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.credentials.models import Psk
from iotiam.inventory.ports import CredentialHolders, DeviceUnitOfWork
from iotiam.pki.ports import CertificateStore


class PskStore(Protocol):
    """PSKs (keys encrypted by the caller)."""

    def add(self, psk: Psk) -> None:
        """Store a new PSK."""
        ...

    def active_for_device(self, device_id: str) -> Psk | None:
        """The device's active PSK, if any."""
        ...

    def for_device(self, device_id: str) -> list[Psk]:
        """Every PSK of a device, oldest first."""
        ...

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, list[Psk]]:
        """Every PSK of each of these devices, oldest first (a device without any is
        absent): one read for a batch, not one per device."""
        ...

    def revoke(self, psk_id: str, at: datetime, reason: str, replaced_by: str | None) -> bool:
        """Mark revoked if active or next; True when this call did it."""
        ...

    def promote(self, psk_id: str) -> bool:
        """Make a ``next`` PSK the active one; True when this call did it."""
        ...

    def set_expiry(self, psk_id: str, at: datetime) -> bool:
        """Set when an active PSK expires; True when this call did it."""
        ...

    def iter_active(self, *, org_path: str) -> Iterator[Psk]:
        """Active PSKs under ``org_path``."""
        ...


class CredentialsUnitOfWork(DeviceUnitOfWork, AuditUnitOfWork, Protocol):
    """The stores the PSK lifecycle works with, inside one transaction."""

    @property
    def devices(self) -> CredentialHolders:
        """The devices holding PSKs (read; a new PSK touches its device)."""
        ...

    @property
    def psks(self) -> PskStore:
        """PSKs."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Certificates, read for the unified credential view."""
        ...
