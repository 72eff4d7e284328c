"""What changed in the fleet, read from the memory unit of work (what the SQL change
log answers from indexed queries): the decision point's device directory and posture
lookup, the broker sync's change log and the trust refresher's changed devices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from iotiam.clock import Clock
from iotiam.credentials.models import PskStatus
from iotiam.inventory.models import Device, DeviceState
from iotiam.pki.models import CertificateStatus, serial_hex
from iotiam.policy.models import DevicePosture
from iotiam.testing.fakes.unit_of_work import MemoryDatabase
from iotiam.tokens.models import ClientStatus


class MemoryChangeLog:
    """Change queries over the memory stores."""

    def __init__(self, database: MemoryDatabase, clock: Clock) -> None:
        self._uow = database.uow
        self._clock = clock

    def device_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        """(device, updated_at) of the devices updated after ``since``."""
        return [(d.id, d.updated_at) for d in self._uow.devices.devices.values()
                if d.updated_at > since]

    def credentials_revoked(self, since: datetime) -> list[tuple[str, str]]:
        """(device, credential) for certificates and PSKs revoked after ``since``."""
        found = [(c.device_id, f"cert:{serial_hex(c.serial)}")
                 for c in self._uow.certificates.certificates.values()
                 if c.device_id and c.status is CertificateStatus.REVOKED
                 and c.revoked_at is not None and c.revoked_at > since]
        return found + [(p.device_id, f"psk:{p.id}") for p in self._uow.psks.psks.values()
                        if p.revoked_at is not None and p.revoked_at > since]

    def psk_version(self) -> tuple[int, datetime | None]:
        """(live PSKs, newest change of a PSK or of a device holding a live one)."""
        psks = list(self._uow.psks.psks.values())
        live = [p for p in psks if p.status is PskStatus.ACTIVE]
        holders = [d.updated_at for p in live
                   if (d := self._uow.devices.get(p.device_id)) is not None]
        times = [p.created_at for p in live] + [p.revoked_at for p in psks if p.revoked_at]
        return len(live), max([*times, *holders], default=None)

    def device(self, device_id: str) -> Device | None:
        """One device by id, whatever its state."""
        return self._uow.devices.get(device_id)

    def device_page(self, after_id: str | None, limit: int) -> list[Device]:
        """Devices not decommissioned, by id."""
        return [d for d in sorted(self._uow.devices.devices.values(), key=lambda d: d.id)
                if d.state is not DeviceState.DECOMMISSIONED
                and (after_id is None or d.id > after_id)][:limit]

    def groups_of(self, device_ids: Sequence[str]) -> dict[str, set[str]]:
        """Group ids per device (devices in no group are left out)."""
        found: dict[str, set[str]] = {}
        for device_id in device_ids:
            groups = self._uow.groups.groups_of(device_id)
            if groups:
                found[device_id] = set(groups)
        return found

    def posture_of(self, device_ids: Sequence[str]) -> dict[str, DevicePosture]:
        """Stored trust score, firmware verdict and credential standing of each device."""
        now = self._clock.now()
        result = {}
        for device_id in device_ids:
            score = self._uow.trust.scores.get(device_id)
            status = self._uow.firmware.status(device_id)
            result[device_id] = DevicePosture(
                None if score is None else float(score.score),
                None if status is None else status.compliant,
                credentialed=self._credentialed(device_id, now))
        return result

    def _credentialed(self, device_id: str, now: datetime) -> bool:
        """A valid credential now (G3): an issued, unexpired certificate, an active,
        unexpired PSK or an active OAuth client with its own keys."""
        uow = self._uow
        return any(c.status is CertificateStatus.ISSUED and c.not_before <= now < c.not_after
                   for c in uow.certificates.for_device(device_id)) \
            or any(p.status is PskStatus.ACTIVE and (p.expires_at is None or p.expires_at > now)
                   for p in uow.psks.for_device(device_id)) \
            or any(c.device_id == device_id and c.status is ClientStatus.ACTIVE
                   and c.jwks is not None for c in uow.oauth_clients.clients.values())
