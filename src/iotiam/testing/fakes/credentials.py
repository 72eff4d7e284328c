"""The PSK store in memory (``iotiam.credentials.ports``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.credentials.models import Psk, PskStatus
from iotiam.errors import Conflict
from iotiam.testing.fakes.memory import MemoryStore, under


@dataclass
class MemoryPskStore(MemoryStore):
    """``PskStore``: PSKs by id, in creation order."""

    psks: dict[str, Psk] = field(default_factory=dict)

    def add(self, psk: Psk) -> None:
        """Store a new PSK (Conflict if the id exists)."""
        if psk.id in self.psks:
            raise Conflict(f"PSK {psk.id} exists")
        self.psks[psk.id] = psk

    def active_for_device(self, device_id: str) -> Psk | None:
        """The device's active PSK, if any."""
        return next((p for p in self.psks.values()
                     if p.device_id == device_id and p.status is PskStatus.ACTIVE), None)

    def for_device(self, device_id: str) -> list[Psk]:
        """Every PSK of a device, oldest first."""
        return sorted((p for p in self.psks.values() if p.device_id == device_id),
                      key=lambda p: p.created_at)

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, list[Psk]]:
        """Every PSK of each of these devices, oldest first."""
        wanted = set(device_ids)
        found: dict[str, list[Psk]] = {}
        for psk in sorted(self.psks.values(), key=lambda p: p.created_at):
            if psk.device_id in wanted:
                found.setdefault(psk.device_id, []).append(psk)
        return found

    def revoke(self, psk_id: str, at: datetime, reason: str, replaced_by: str | None) -> bool:
        """Mark revoked if active or next; True when this call did it."""
        psk = self.psks.get(psk_id)
        if psk is None or psk.status is PskStatus.REVOKED:
            return False
        self.psks[psk_id] = replace(psk, status=PskStatus.REVOKED, revoked_at=at,
                                    revocation_reason=reason, replaced_by=replaced_by)
        return True

    def promote(self, psk_id: str) -> bool:
        """Make a next PSK the active one; True when this call did it."""
        psk = self.psks.get(psk_id)
        if psk is None or psk.status is not PskStatus.NEXT:
            return False
        self.psks[psk_id] = replace(psk, status=PskStatus.ACTIVE)
        return True

    def set_expiry(self, psk_id: str, at: datetime) -> bool:
        """Set when an active PSK expires; True when this call did it."""
        psk = self.psks.get(psk_id)
        if psk is None or psk.status is not PskStatus.ACTIVE:
            return False
        self.psks[psk_id] = replace(psk, expires_at=at)
        return True

    def iter_active(self, *, org_path: str) -> Iterator[Psk]:
        """Active PSKs under ``org_path``."""
        return iter([p for p in self.psks.values()
                     if p.status is PskStatus.ACTIVE and under(p.org_path, org_path)])
