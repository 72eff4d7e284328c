"""The firmware store in memory (``iotiam.attestation.ports``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.attestation.models import (
    AttestationNonce,
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
)
from iotiam.errors import Conflict
from iotiam.kernel import ancestor_paths
from iotiam.testing.fakes.inventory import MemoryDeviceStore
from iotiam.testing.fakes.memory import MemoryStore, under


@dataclass
class MemoryFirmwareStore(MemoryStore):
    """``FirmwareStore``: signers, images, rules, nonces and device statuses."""

    devices: MemoryDeviceStore
    signers: dict[str, FirmwareSigner] = field(default_factory=dict)
    images: dict[str, FirmwareImage] = field(default_factory=dict)
    rules: dict[tuple[str, str], FirmwareRule] = field(default_factory=dict)
    nonces: dict[str, AttestationNonce] = field(default_factory=dict)
    device_status: dict[str, FirmwareStatus] = field(default_factory=dict)

    def add_signer(self, signer: FirmwareSigner) -> None:
        """Store a new signer (Conflict on its id, or its name or key in the org unit)."""
        if signer.id in self.signers or any(
                s.org_unit_id == signer.org_unit_id
                and (s.name == signer.name or s.key_id == signer.key_id)
                for s in self.signers.values()):
            raise Conflict(f"signer {signer.name} exists")
        self.signers[signer.id] = signer

    def signer_by_name(self, org_unit_id: str, name: str) -> FirmwareSigner | None:
        """The signer ``name`` of one org unit."""
        return next((s for s in self.signers.values()
                     if s.org_unit_id == org_unit_id and s.name == name), None)

    def signers_under(self, org_path: str) -> list[FirmwareSigner]:
        """Signers inside the subtree, by path and name."""
        return sorted((s for s in self.signers.values() if under(s.org_path, org_path)),
                      key=lambda s: (s.org_path, s.name))

    def signers_over(self, org_path: str) -> list[FirmwareSigner]:
        """Signers at ``org_path`` or an ancestor, nearest first."""
        paths = ancestor_paths(org_path)
        return sorted((s for s in self.signers.values() if s.org_path in paths),
                      key=lambda s: (-len(s.org_path), s.name))

    def revoke_signer(self, signer_id: str, at: datetime, by: str) -> bool:
        """Mark the signer revoked unless it already is; True when this call did it."""
        signer = self.signers.get(signer_id)
        if signer is None or signer.revoked_at is not None:
            return False
        self.signers[signer_id] = replace(signer, revoked_at=at, revoked_by=by)
        return True

    def add_image(self, image: FirmwareImage) -> None:
        """Store a new image (Conflict on its id or its type and version in the unit)."""
        if image.id in self.images or any(
                i.org_unit_id == image.org_unit_id and i.device_type == image.device_type
                and i.version == image.version for i in self.images.values()):
            raise Conflict(f"image {image.device_type} {image.version} exists")
        self.images[image.id] = image

    def replace_image(self, image: FirmwareImage) -> None:
        """Overwrite the stored image with ``image.id``."""
        if image.id in self.images:
            self.images[image.id] = image

    def _images_sorted(self) -> list[FirmwareImage]:
        return sorted(self.images.values(), key=lambda i: (i.device_type, i.created_at, i.id))

    def images_of_signer(self, signer_id: str) -> list[FirmwareImage]:
        """Images whose metadata ``signer_id`` signed."""
        return [i for i in self._images_sorted() if i.signer_id == signer_id]

    def images_under(self, org_path: str, device_type: str | None = None
                     ) -> list[FirmwareImage]:
        """Images inside the subtree, optionally of one device type."""
        return [i for i in self._images_sorted() if under(i.org_path, org_path)
                and (device_type is None or i.device_type == device_type)]

    def images_over(self, org_path: str, device_type: str) -> list[FirmwareImage]:
        """Images of the type registered at ``org_path`` or an ancestor."""
        paths = ancestor_paths(org_path)
        return [i for i in self.images.values()
                if i.device_type == device_type and i.org_path in paths]

    def put_rule(self, rule: FirmwareRule) -> FirmwareRule | None:
        """Create or replace the rule of (org unit, device type); the previous one."""
        key = (rule.org_unit_id, rule.device_type)
        previous = self.rules.get(key)
        self.rules[key] = rule
        return previous

    def rules_under(self, org_path: str) -> list[FirmwareRule]:
        """Rules inside the subtree, by type and path."""
        return sorted((r for r in self.rules.values() if under(r.org_path, org_path)),
                      key=lambda r: (r.device_type, r.org_path))

    def rules_over(self, org_path: str, device_type: str) -> list[FirmwareRule]:
        """Rules for the type at ``org_path`` or an ancestor."""
        paths = ancestor_paths(org_path)
        return [r for r in self.rules.values()
                if r.device_type == device_type and r.org_path in paths]

    def add_nonce(self, nonce: AttestationNonce) -> None:
        """Store a new challenge nonce (Conflict if its hash exists)."""
        if nonce.nonce_hash in self.nonces:
            raise Conflict("nonce exists")
        self.nonces[nonce.nonce_hash] = nonce

    def open_nonces(self, device_id: str, now: datetime) -> int:
        """Unused, unexpired nonces of the device."""
        return sum(1 for n in self.nonces.values() if n.device_id == device_id
                   and n.used_at is None and n.expires_at > now)

    def purge_nonces(self, device_id: str, now: datetime) -> int:
        """Forget the device's used and expired nonces."""
        gone = [h for h, n in self.nonces.items() if n.device_id == device_id
                and (n.used_at is not None or n.expires_at <= now)]
        for nonce_hash in gone:
            del self.nonces[nonce_hash]
        return len(gone)

    def nonce(self, nonce_hash: str) -> AttestationNonce | None:
        """A nonce by its hash."""
        return self.nonces.get(nonce_hash)

    def use_nonce(self, nonce_hash: str, device_id: str, now: datetime) -> bool:
        """Spend the device's unused, unexpired nonce; True when this call did it."""
        nonce = self.nonces.get(nonce_hash)
        if nonce is None or nonce.device_id != device_id or nonce.used_at is not None \
                or nonce.expires_at <= now:
            return False
        self.nonces[nonce_hash] = replace(nonce, used_at=now)
        return True

    def status(self, device_id: str) -> FirmwareStatus | None:
        """A device's last attested firmware status."""
        return self.device_status.get(device_id)

    def statuses(self, device_ids: Sequence[str]) -> dict[str, FirmwareStatus]:
        """The status of each of ``device_ids`` that has one."""
        return {i: self.device_status[i] for i in device_ids if i in self.device_status}

    def _with_paths(self, device_type: str, org_path: str) -> list[tuple[FirmwareStatus, str]]:
        found = []
        for device_id in sorted(self.device_status):
            device = self.devices.get(device_id)
            if device is not None and device.type_name == device_type \
                    and under(device.org_path, org_path):
                found.append((self.device_status[device_id], device.org_path))
        return found

    def statuses_of_type(self, device_type: str, org_path: str
                         ) -> list[tuple[FirmwareStatus, str]]:
        """Statuses of the type's devices under ``org_path``, with their org path."""
        return self._with_paths(device_type, org_path)

    def unmatched_statuses(self, device_type: str, org_path: str, firmware_hash: str
                           ) -> list[tuple[FirmwareStatus, str]]:
        """Image-less statuses of the type's devices under ``org_path`` with that hash."""
        return [(s, path) for s, path in self._with_paths(device_type, org_path)
                if s.image_id is None and s.firmware_hash.lower() == firmware_hash.lower()]

    def statuses_of_signer(self, signer_id: str) -> list[FirmwareStatus]:
        """Statuses that name an image ``signer_id`` signed."""
        return [self.device_status[d] for d in sorted(self.device_status)
                if (image := self.images.get(self.device_status[d].image_id or ""))
                and image.signer_id == signer_id]

    def put_status(self, status: FirmwareStatus, at: datetime) -> bool:
        """Create or replace a device's status; a changed verdict moves the device's
        ``updated_at``. True when the verdict changed."""
        previous = self.device_status.get(status.device_id)
        self.device_status[status.device_id] = replace(status, reason=status.reason[:2000])
        changed = previous is None or previous.compliant != status.compliant
        if changed:
            self.devices.update(status.device_id, updated_at=at)
        return changed
