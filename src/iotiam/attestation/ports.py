"""Storage the firmware registry and attestation need."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from iotiam.attestation.models import (
    AttestationNonce,
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
)
from iotiam.audit.ports import AuditUnitOfWork
from iotiam.inventory.ports import DeviceTypeStore, DeviceUnitOfWork, OrgUnitStore
from iotiam.pki.ports import CertificateStore


class FirmwareStore(Protocol):
    """Signers, images, rules, challenge nonces and the per-device firmware status."""

    def add_signer(self, signer: FirmwareSigner) -> None:
        """Store a new signer (unique name and key per org unit)."""
        ...

    def signer_by_name(self, org_unit_id: str, name: str) -> FirmwareSigner | None:
        """The signer ``name`` of one org unit."""
        ...

    def signers_under(self, org_path: str) -> list[FirmwareSigner]:
        """Signers registered inside the subtree at ``org_path``."""
        ...

    def signers_over(self, org_path: str) -> list[FirmwareSigner]:
        """Signers that cover ``org_path``: registered at it or at one of its ancestors."""
        ...

    def revoke_signer(self, signer_id: str, at: datetime, by: str) -> bool:
        """Mark the signer revoked unless it already is; True when this call did it (a
        conditional update: of two concurrent revocations exactly one wins)."""
        ...

    def add_image(self, image: FirmwareImage) -> None:
        """Store a new image (unique device type + version per org unit)."""
        ...

    def replace_image(self, image: FirmwareImage) -> None:
        """Overwrite the stored image with ``image.id`` (same org unit, type, version)."""
        ...

    def images_of_signer(self, signer_id: str) -> list[FirmwareImage]:
        """Images whose metadata ``signer_id`` signed."""
        ...

    def images_under(self, org_path: str, device_type: str | None = None
                     ) -> list[FirmwareImage]:
        """Images registered inside the subtree at ``org_path``."""
        ...

    def images_over(self, org_path: str, device_type: str) -> list[FirmwareImage]:
        """Images of ``device_type`` that cover ``org_path`` (registered at it or an
        ancestor)."""
        ...

    def put_rule(self, rule: FirmwareRule) -> FirmwareRule | None:
        """Create or replace the rule of (org unit, device type); the previous one."""
        ...

    def rules_under(self, org_path: str) -> list[FirmwareRule]:
        """Rules set inside the subtree at ``org_path``."""
        ...

    def rules_over(self, org_path: str, device_type: str) -> list[FirmwareRule]:
        """Rules for ``device_type`` that apply at ``org_path`` (set at it or an ancestor)."""
        ...

    def add_nonce(self, nonce: AttestationNonce) -> None:
        """Store a new challenge nonce (hashed)."""
        ...

    def open_nonces(self, device_id: str, now: datetime) -> int:
        """How many unused, unexpired nonces the device holds."""
        ...

    def purge_nonces(self, device_id: str, now: datetime) -> int:
        """Forget the device's used and expired nonces."""
        ...

    def nonce(self, nonce_hash: str) -> AttestationNonce | None:
        """A nonce by its hash."""
        ...

    def use_nonce(self, nonce_hash: str, device_id: str, now: datetime) -> bool:
        """Mark the nonce used if it is the device's, unused and unexpired; True when this
        call did it. A conditional update: under concurrent use exactly one caller wins."""
        ...

    def status(self, device_id: str) -> FirmwareStatus | None:
        """A device's last attested firmware status."""
        ...

    def statuses(self, device_ids: Sequence[str]) -> dict[str, FirmwareStatus]:
        """The firmware status of each of ``device_ids`` that has one."""
        ...

    def statuses_of_type(self, device_type: str, org_path: str
                         ) -> list[tuple[FirmwareStatus, str]]:
        """Statuses of devices of ``device_type`` under ``org_path``, with their org path."""
        ...

    def unmatched_statuses(self, device_type: str, org_path: str, firmware_hash: str
                           ) -> list[tuple[FirmwareStatus, str]]:
        """Statuses of devices of ``device_type`` under ``org_path`` that name no image and
        whose attested hash is ``firmware_hash`` (any case), with the device's org path."""
        ...

    def statuses_of_signer(self, signer_id: str) -> list[FirmwareStatus]:
        """Statuses that name an image ``signer_id`` signed."""
        ...

    def put_status(self, status: FirmwareStatus, at: datetime) -> bool:
        """Create or replace a device's status; when its ``compliant`` value changes (or it
        had none), move the device's ``updated_at`` to ``at``. True when it changed."""
        ...


class AttestationUnitOfWork(DeviceUnitOfWork, AuditUnitOfWork, Protocol):
    """The stores the firmware registry and attestation work with, inside one
    transaction (the inventory's and the PKI's read only)."""

    @property
    def firmware(self) -> FirmwareStore:
        """Signers, images, rules, nonces and firmware statuses."""
        ...

    @property
    def org_units(self) -> OrgUnitStore:
        """The org units signers, images and rules belong to."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """The device types images and rules name."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Certificates, to authenticate an attesting device."""
        ...
