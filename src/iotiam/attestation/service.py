"""Device attestation: challenge, evidence, verdict; and the compliance read API.

The device authenticates with its iotiam certificate over mTLS (or through a trusted
proxy that forwards it). ``challenge`` gives it a random nonce — stored only as its
SHA-256, single use, valid ``nonce_ttl``. ``submit_evidence`` checks the EAT signed by
the same certificate's key (see ``evidence``), spends the nonce with one conditional
UPDATE (the database decides which of two concurrent submissions wins, like claim
tokens, G8) and stores the verdict in the same transaction. A refused submission
stores nothing but its audit record, and, for an authenticated device, raises an
``attestation_failed`` finding; a non-compliant verdict raises
``firmware_noncompliant``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta

from cryptography import x509

from iotiam.attestation import findings
from iotiam.attestation.compliance import effective_minimum, judge
from iotiam.attestation.evidence import verify_evidence
from iotiam.attestation.models import (
    AttestationNonce,
    Challenge,
    FirmwareStatus,
    NonceRefused,
    NonCompliant,
    Verdict,
)
from iotiam.attestation.ports import AttestationUnitOfWork
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import DeviceChanged
from iotiam.clock import Clock
from iotiam.detection.ports import FindingSink
from iotiam.errors import IamError, TooManyRequests, Unauthenticated
from iotiam.inventory.lifecycle import Transport, refusal
from iotiam.inventory.models import Device
from iotiam.inventory.ports import visible_device
from iotiam.kernel import ROOT_PATH, Principal, Transactions
from iotiam.pki.client_certificates import presented_device
from iotiam.pki.ports import DeviceIssuers

NONCE_BYTES = 32
DEFAULT_NONCE_TTL = timedelta(seconds=120)
#: unspent, unexpired challenges one device may hold (bounds what a device can store)
MAX_OPEN_NONCES = 8
STATUS_BATCH = 500
#: states in which a device may not attest (its certificates are revoked anyway)


def nonce_hash(nonce: str) -> str:
    """What is stored of a nonce."""
    return hashlib.sha256(nonce.encode()).hexdigest()


class Attestation:
    """Challenges devices, verifies their evidence and keeps their firmware status."""

    def __init__(self, uow: Transactions[AttestationUnitOfWork], clock: Clock,
                 audit: Auditor, device_ca: DeviceIssuers,
                 finding_sink: FindingSink | None = None, *,
                 nonce_ttl: timedelta = DEFAULT_NONCE_TTL,
                 random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._ca = device_ca
        self._findings: FindingSink = finding_sink or findings.DiscardingFindingSink()
        self._ttl = nonce_ttl
        self._random = random_bytes

    # -- device side -------------------------------------------------------------------

    def challenge(self, certificate: x509.Certificate | None) -> Challenge:
        """A fresh nonce for the device of ``certificate``."""
        device = self._authenticate(certificate)
        draft = self._draft(AuditTag.ATTESTATION_REFUSED, device, {"step": "challenge"})
        with self._audit.refusals(draft), self._uow() as uow:
            now = self._clock.now()
            uow.firmware.purge_nonces(device.id, now)
            if uow.firmware.open_nonces(device.id, now) >= MAX_OPEN_NONCES:
                raise TooManyRequests(f"device {device.id!r} already holds {MAX_OPEN_NONCES} "
                                      "unused challenges; answer one or wait for them to "
                                      "expire")
            nonce = base64.urlsafe_b64encode(self._random(NONCE_BYTES)).rstrip(b"=").decode()
            expires_at = now + self._ttl
            uow.firmware.add_nonce(AttestationNonce(
                nonce_hash=nonce_hash(nonce), device_id=device.id, created_at=now,
                expires_at=expires_at))
            self._audit.append(uow, self._draft(
                AuditTag.ATTESTATION_CHALLENGED, device,
                {"expires_at": expires_at.isoformat()}))
        return Challenge(nonce=nonce, expires_at=expires_at)

    def submit_evidence(self, certificate: x509.Certificate | None, evidence: object
                        ) -> FirmwareStatus:
        """Verify evidence and store the verdict (compliant or not); refuse bad evidence."""
        device = self._authenticate(certificate)
        assert certificate is not None
        draft = self._draft(AuditTag.ATTESTATION_REFUSED, device, {"step": "evidence"})
        try:
            with self._audit.refusals(draft):
                status, verdict, minimum = self._verify_and_store(device, certificate,
                                                                  evidence)
        except IamError as e:
            findings.report(self._findings, [findings.attestation_failed(
                device, e.detail, e.kind, self._clock.now())])
            raise
        if isinstance(verdict, NonCompliant):
            findings.report(self._findings, [findings.noncompliant(
                device, status, verdict, minimum)])
        return status

    def _verify_and_store(self, device: Device, certificate: x509.Certificate,
                          token: object) -> tuple[FirmwareStatus, Verdict, str | None]:
        # the signature and claims first: no transaction is held for the cryptography
        claims = verify_evidence(token, certificate.public_key(), device.id,
                                 self._clock.now())
        with self._uow() as uow:
            now = self._clock.now()
            current = uow.devices.get(device.id, for_update=True)
            if current is None:
                raise Unauthenticated(f"device {device.id!r} no longer exists")
            self._spend_nonce(uow, current, claims.nonce)
            minimum = effective_minimum(uow.firmware.rules_over(current.org_path,
                                                                current.type_name))
            # every image covering the device was signed by a signer covering it
            revoked = {s.id: s for s in uow.firmware.signers_over(current.org_path)
                       if s.revoked_at is not None}
            verdict = judge(device_type=current.type_name, version=claims.firmware_version,
                            firmware_hash=claims.firmware_hash,
                            images=uow.firmware.images_over(current.org_path,
                                                            current.type_name),
                            minimum=minimum, revoked=revoked)
            status = FirmwareStatus(
                device_id=current.id, firmware_version=claims.firmware_version.text,
                firmware_hash=claims.firmware_hash, compliant=verdict.compliant,
                reason=verdict.reason, attested_at=now, image_id=verdict.image_id,
                measurements=claims.measurements)
            changed = uow.firmware.put_status(status, now)
            if changed:
                uow.changes.record(DeviceChanged((current.id,)))
            self._audit.append(uow, self._draft(AuditTag.ATTESTATION_VERIFIED, current, {
                "firmware_version": status.firmware_version,
                "firmware_hash": status.firmware_hash, "compliant": status.compliant,
                "reason": status.reason, "image": status.image_id,
                "min_version": minimum.min_version if minimum else None,
                "measurements": len(status.measurements), "compliance_changed": changed}))
        return status, verdict, minimum.min_version if minimum else None

    def _spend_nonce(self, uow: AttestationUnitOfWork, device: Device, nonce: str) -> None:
        """RFC 9711 §4.1 eat_nonce: ours, for this device, unexpired, and never used."""
        digest = nonce_hash(nonce)
        now = self._clock.now()
        stored = uow.firmware.nonce(digest)
        if stored is None:
            raise NonceRefused("unknown nonce: ask /v1/attestation/challenge for one")
        if stored.device_id != device.id:
            raise NonceRefused("the nonce was issued to another device")
        if stored.used_at is not None:
            raise NonceRefused("the nonce was already used: evidence is accepted once "
                               "(replay refused)")
        if stored.expires_at <= now:
            raise NonceRefused(f"the nonce expired at {stored.expires_at.isoformat()}; ask "
                               "for a new challenge")
        if not uow.firmware.use_nonce(digest, device.id, now):
            # another submission spent it between our read and our update
            raise NonceRefused("the nonce was already used: evidence is accepted once "
                               "(replay refused)")

    def _authenticate(self, certificate: x509.Certificate | None) -> Device:
        """The live iotiam certificate of an attesting device, or ``Unauthenticated``."""
        subject = certificate.subject.rfc4514_string()[:200] if certificate else "anonymous"
        draft = AuditDraft(tag=AuditTag.ATTESTATION_REFUSED, actor=f"attestation:{subject}",
                           org_path=ROOT_PATH, subject=f"certificate:{subject}")
        with self._audit.refusals(draft):
            if certificate is None:
                raise Unauthenticated("attestation needs the device's iotiam certificate "
                                      "over TLS (mTLS)")
            issuer_id = self._ca.issuer_named(certificate.issuer)
            if issuer_id is None:
                raise Unauthenticated("the client certificate was not issued by iotiam")
            with self._uow.reading() as uow:
                record = uow.certificates.get(issuer_id, certificate.serial_number)
                device = uow.devices.get(
                    presented_device(record, certificate, self._clock.now()))
            if device is None:
                raise Unauthenticated("the device of this certificate no longer exists")
            refused = refusal(device.id, device.state, Transport.ATTESTATION)
            if refused is not None:
                raise Unauthenticated(refused)
            return device

    @staticmethod
    def _draft(tag: AuditTag, device: Device, details: dict[str, object]) -> AuditDraft:
        return AuditDraft(tag=tag, actor=f"attestation:{device.id}",
                          org_path=device.org_path, subject=f"device:{device.id}",
                          details=dict(details))

    # -- admin and other components ----------------------------------------------------

    def status(self, actor: Principal, device_id: str) -> tuple[Device, FirmwareStatus | None]:
        """A device the caller sees and its last attested firmware (None: never)."""
        with self._uow.reading() as uow:
            device = visible_device(uow.devices, actor, device_id)
            return device, uow.firmware.status(device.id)

    def compliance_of(self, device_ids: Sequence[str]) -> dict[str, FirmwareStatus]:
        """Firmware status of each device that ever attested (for the trust score and the
        ``firmware_compliant`` policy condition; no tenant check: not for admins)."""
        wanted = list(dict.fromkeys(device_ids))
        found: dict[str, FirmwareStatus] = {}
        with self._uow.reading() as uow:
            for start in range(0, len(wanted), STATUS_BATCH):
                found.update(uow.firmware.statuses(wanted[start:start + STATUS_BATCH]))
        return found

