"""PSK lifecycle (issue, rotate, revoke, list, export) and the unified credential view."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import CredentialRevoked, DeviceChanged
from iotiam.clock import Clock
from iotiam.credentials.models import CredentialKind, CredentialView, Psk, PskStatus
from iotiam.credentials.ports import CredentialsUnitOfWork
from iotiam.credentials.sealing import SecretSealer
from iotiam.errors import Conflict, InvalidInput
from iotiam.inventory.lifecycle import Transport, may, refusal
from iotiam.inventory.models import Device
from iotiam.inventory.ports import visible_device
from iotiam.kernel import Principal, Role, Transactions
from iotiam.pki.models import CertificateStatus

PSK_BYTES = 32


class Psks:
    """TLS-PSK credentials for constrained devices that cannot do certificates."""

    def __init__(self, uow: Transactions[CredentialsUnitOfWork], clock: Clock,
                 audit: Auditor, sealer: SecretSealer) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._sealer = sealer

    def issue(self, actor: Principal, device_id: str, lifetime: timedelta | None = None
              ) -> tuple[Psk, str]:
        """A new random PSK for a device without one; the hex key is returned once."""
        return self._issue_or_rotate(actor, device_id, lifetime, rotate=False)

    def rotate(self, actor: Principal, device_id: str, lifetime: timedelta | None = None
               ) -> tuple[Psk, str]:
        """Replace the device's active PSK with a new one (the old one is revoked)."""
        return self._issue_or_rotate(actor, device_id, lifetime, rotate=True)

    def _issue_or_rotate(self, actor: Principal, device_id: str, lifetime: timedelta | None,
                         *, rotate: bool) -> tuple[Psk, str]:
        tag = AuditTag.PSK_ROTATED if rotate else AuditTag.PSK_ISSUED
        draft = AuditDraft(tag=tag, actor=actor.name, org_path=actor.org_path,
                           subject=f"device:{device_id}", details={"refused": True})
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "issuing PSKs")
            if lifetime is not None and not timedelta(minutes=1) <= lifetime <= timedelta(
                    days=825):
                raise InvalidInput("PSK lifetime must be between 1 minute and 825 days")
            device = visible_device(uow.devices, actor, device_id, for_update=True)
            refused = refusal(device.id, device.state, Transport.ENROLL)
            if refused is not None:
                raise Conflict(f"{refused}; no new credentials")
            current = uow.psks.active_for_device(device.id)
            if rotate and current is None:
                raise Conflict(f"device {device_id!r} has no active PSK to rotate")
            if not rotate and current is not None:
                raise Conflict(f"device {device_id!r} already has an active PSK; rotate it")
            psk, key = self._new_psk(uow, actor, device, current, lifetime, tag)
        return psk, key.hex()

    def issue_within(self, uow: CredentialsUnitOfWork, actor: Principal, device: Device, *,
                     rotate: bool) -> Psk:
        """Inside the caller's transaction: a new PSK for ``device`` (a gateway's child);
        rotate: replacing its active one, if any. The caller judged the device's state."""
        current = uow.psks.active_for_device(device.id)
        if not rotate and current is not None:
            raise Conflict(f"device {device.id!r} already has an active PSK; rotate it")
        tag = AuditTag.PSK_ROTATED if current is not None else AuditTag.PSK_ISSUED
        return self._new_psk(uow, actor, device, current, None, tag)[0]

    def issue_next_within(self, uow: CredentialsUnitOfWork, actor: Principal,
                          device: Device, overlap: timedelta) -> Psk:
        """Inside the caller's transaction: a next PSK for ``device`` (a gateway's child)
        beside its active one, which now expires after ``overlap``. The next PSK has an
        identity of its own (``<device>.<psk id>``), so both are valid on the gateway."""
        current = uow.psks.active_for_device(device.id)
        if current is None:
            raise Conflict(f"device {device.id!r} has no active PSK to rotate")
        now = self._clock.now()
        self._revoke_pending(uow, device.id, now, "superseded", None)
        ends = now + overlap
        if current.expires_at is not None:
            ends = min(ends, current.expires_at)
        uow.psks.set_expiry(current.id, ends)
        key = secrets.token_bytes(PSK_BYTES)
        psk_id = secrets.token_hex(8)
        psk = Psk(id=psk_id, identity=f"{device.id[:128 - 17]}.{psk_id}",
                  device_id=device.id, org_path=device.org_path,
                  encrypted_key=self._sealer.seal(key, f"psk:{psk_id}"),
                  status=PskStatus.NEXT, created_at=now, expires_at=None)
        uow.psks.add(psk)
        uow.devices.touch([device.id], now)
        uow.changes.record(DeviceChanged((device.id,)))
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.PSK_NEXT_ISSUED, actor=actor.name, org_path=device.org_path,
            subject=f"device:{device.id}",
            details={"psk": psk.id, "identity": psk.identity, "current": current.id,
                     "current_expires_at": ends.isoformat()}))
        return psk

    def promote_within(self, uow: CredentialsUnitOfWork, actor: str, device_id: str,
                       next_id: str, reason: str) -> Psk:
        """Inside the caller's transaction: the device's next PSK ``next_id`` becomes
        its active one; the old one is revoked (``reason``). Conflict if it is not next."""
        psks = uow.psks.for_device(device_id)
        pending = next((p for p in psks if p.id == next_id
                        and p.status is PskStatus.NEXT), None)
        if pending is None:
            raise Conflict(f"PSK {next_id} is not the next key of {device_id!r}")
        now = self._clock.now()
        current = uow.psks.active_for_device(device_id)
        if current is not None:
            uow.psks.revoke(current.id, now, reason, pending.id)
            uow.changes.record(CredentialRevoked("psk", current.id, device_id))
        uow.psks.promote(pending.id)
        uow.devices.touch([device_id], now)
        uow.changes.record(DeviceChanged((device_id,)))
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.PSK_PROMOTED, actor=actor, org_path=pending.org_path,
            subject=f"device:{device_id}",
            details={"psk": pending.id, "identity": pending.identity,
                     "replaced": current.id if current else None, "reason": reason}))
        return replace(pending, status=PskStatus.ACTIVE)

    def _revoke_pending(self, uow: CredentialsUnitOfWork, device_id: str, at: datetime,
                        reason: str, replaced_by: str | None) -> None:
        # a next key made for a scheduled rotation never outlives the key it was to replace
        for psk in uow.psks.for_device(device_id):
            if psk.status is PskStatus.NEXT and uow.psks.revoke(psk.id, at, reason,
                                                                 replaced_by):
                uow.changes.record(CredentialRevoked("psk", psk.id, device_id))

    def reveal(self, psk: Psk) -> bytes:
        """The key of a PSK, opened from its encryption at rest (for its gateway)."""
        return self._sealer.open(psk.encrypted_key, f"psk:{psk.id}")

    def _new_psk(self, uow: CredentialsUnitOfWork, actor: Principal, device: Device,
                 current: Psk | None, lifetime: timedelta | None, tag: AuditTag
                 ) -> tuple[Psk, bytes]:
        now = self._clock.now()
        key = secrets.token_bytes(PSK_BYTES)
        psk_id = secrets.token_hex(8)
        psk = Psk(id=psk_id, identity=device.id, device_id=device.id,
                  org_path=device.org_path,
                  encrypted_key=self._sealer.seal(key, f"psk:{psk_id}"),
                  status=PskStatus.ACTIVE, created_at=now,
                  expires_at=now + lifetime if lifetime else None)
        if current is not None:
            uow.psks.revoke(current.id, now, "superseded", psk.id)
            uow.changes.record(CredentialRevoked("psk", current.id, device.id))
        self._revoke_pending(uow, device.id, now, "superseded", psk.id)
        uow.psks.add(psk)
        # its standing may change (G3): decision caches and the broker sync re-read it
        uow.devices.touch([device.id], now)
        uow.changes.record(DeviceChanged((device.id,)))
        self._audit.append(uow, AuditDraft(
            tag=tag, actor=actor.name, org_path=device.org_path,
            subject=f"device:{device.id}",
            details={"psk": psk.id, "identity": psk.identity,
                     "replaced": current.id if current else None},
        ))
        return psk, key

    def revoke(self, actor: Principal, device_id: str, reason: str = "unspecified") -> Psk:
        """Revoke the device's active PSK (final)."""
        draft = AuditDraft(tag=AuditTag.PSK_REVOKED, actor=actor.name,
                           org_path=actor.org_path, subject=f"device:{device_id}",
                           details={"refused": True})
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "revoking PSKs")
            device = visible_device(uow.devices, actor, device_id)
            current = uow.psks.active_for_device(device.id)
            if current is None:
                raise Conflict(f"device {device_id!r} has no active PSK")
            self._revoke(uow, actor, current, reason)
            return replace(current, status=PskStatus.REVOKED, revoked_at=self._clock.now(),
                           revocation_reason=reason)

    def revoke_device_credentials(self, uow: CredentialsUnitOfWork, actor: Principal,
                                  device: Device, reason: str) -> int:
        """Inside a caller's transaction: revoke the device's active PSK, if any."""
        current = uow.psks.active_for_device(device.id)
        if current is None:
            return 0
        self._revoke(uow, actor, current, reason)
        return 1

    def _revoke(self, uow: CredentialsUnitOfWork, actor: Principal, psk: Psk,
                reason: str) -> None:
        if not uow.psks.revoke(psk.id, self._clock.now(), reason, None):
            raise Conflict(f"PSK {psk.id} was already revoked; revocation is final")
        self._revoke_pending(uow, psk.device_id, self._clock.now(), reason, None)
        uow.changes.record(CredentialRevoked("psk", psk.id, psk.device_id))
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.PSK_REVOKED, actor=actor.name, org_path=psk.org_path,
            subject=f"device:{psk.device_id}", details={"psk": psk.id, "reason": reason},
        ))

    def export_mosquitto(self, actor: Principal) -> str:
        """Active, unexpired PSKs under the caller's subtree in Mosquitto ``psk_file`` format."""
        draft = AuditDraft(tag=AuditTag.PSK_EXPORTED, actor=actor.name,
                           org_path=actor.org_path, subject="psk-file")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "exporting PSKs")
            lines = self._psk_lines(actor.org_path)
            self._audit.record(AuditDraft(tag=AuditTag.PSK_EXPORTED, actor=actor.name,
                                          org_path=actor.org_path, subject="psk-file",
                                          details={"identities": len(lines)}))
        return "".join(line + "\n" for line in lines)

    def broker_psk_file(self) -> str:
        """Every live PSK for the managed broker's ``psk_file`` (stays on this host)."""
        return "".join(line + "\n" for line in self._psk_lines("/"))

    def _psk_lines(self, org_path: str) -> list[str]:
        now = self._clock.now()
        lines = []
        with self._uow.reading() as uow:
            live = [psk for psk in uow.psks.iter_active(org_path=org_path)
                    if psk.expires_at is None or psk.expires_at > now]
            devices = uow.devices.get_many(list({psk.device_id for psk in live}))
            for psk in live:
                # a pending or suspended device's PSK stays stored but opens nothing
                holder = devices.get(psk.device_id)
                if holder is None or not may(holder.state, Transport.MQTT_PSK):
                    continue
                key = self._sealer.open(psk.encrypted_key, f"psk:{psk.id}")
                lines.append(f"{psk.identity}:{key.hex()}")
        return sorted(lines)

    def for_device(self, actor: Principal, device_id: str) -> list[Psk]:
        """Every PSK of a device the caller sees, oldest first (404 outside, G9)."""
        with self._uow.reading() as uow:
            device = visible_device(uow.devices, actor, device_id)
            return uow.psks.for_device(device.id)

    def credentials(self, actor: Principal, device_id: str) -> list[CredentialView]:
        """Every credential of a device (certificates and PSKs), one lifecycle model."""
        now = self._clock.now()
        with self._uow.reading() as uow:
            device = visible_device(uow.devices, actor, device_id)
            views = [
                CredentialView(
                    kind=CredentialKind.CERTIFICATE, id=c.serial_hex, device_id=device.id,
                    status="expired" if c.status is CertificateStatus.ISSUED
                    and c.not_after <= now else str(c.status),
                    created_at=c.created_at, expires_at=c.not_after, revoked_at=c.revoked_at)
                for c in uow.certificates.for_device(device.id)
            ]
            views += [
                CredentialView(
                    kind=CredentialKind.PSK, id=p.id, device_id=device.id,
                    status="expired" if p.status is PskStatus.ACTIVE and p.expires_at
                    and p.expires_at <= now else str(p.status),
                    created_at=p.created_at, expires_at=p.expires_at, revoked_at=p.revoked_at)
                for p in uow.psks.for_device(device.id)
            ]
        return sorted(views, key=lambda v: v.created_at)
