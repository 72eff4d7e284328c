"""Enrollment use cases: one-time claim tokens and EST enroll / re-enroll."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta

from cryptography import x509

from iotiam.audit.models import AuditDraft, AuditTag, refused
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.enrollment import proof
from iotiam.enrollment.models import ClaimToken
from iotiam.enrollment.ports import EnrollmentUnitOfWork
from iotiam.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from iotiam.inventory.lifecycle import Transport, refusal
from iotiam.inventory.models import Device
from iotiam.inventory.ports import visible_device
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, Principal, Role, Transactions
from iotiam.pki.csr import parse_csr
from iotiam.pki.keys import require_leaf_public_key
from iotiam.pki.models import CertificateRecord, CertificateStatus, IssueRequest
from iotiam.pki.ports import DeviceCertificates
from iotiam.pki.profiles import get_profile

CLAIM_PREFIX = "iotc_"
_CLAIM = re.compile(r"^iotc_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")
DEFAULT_CLAIM_TTL = timedelta(minutes=10)
MAX_CLAIM_TTL = timedelta(days=30)
RECOVERY_CLOCK_SKEW = timedelta(minutes=5)
MAX_BATCH_CLAIMS = 1000


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_claim_ttl(ttl: timedelta) -> None:
    """Claims live between 30 seconds and 30 days."""
    if not timedelta(seconds=30) <= ttl <= MAX_CLAIM_TTL:
        raise InvalidInput("claim lifetime must be between 30 s and 30 days")


def mint_claim(
    device: Device, now: datetime, ttl: timedelta, created_by: str
) -> tuple[ClaimToken, str]:
    """A new claim token for ``device`` (to store) and its plaintext (to show once)."""
    secret = secrets.token_urlsafe(32)
    token = ClaimToken(
        id=secrets.token_hex(8), device_id=device.id, org_path=device.org_path,
        secret_hash=_hash(secret), created_at=now, expires_at=now + ttl, created_by=created_by,
    )
    return token, f"{CLAIM_PREFIX}{token.id}_{secret}"


#: who asks for a certificate, and what: a request ready to issue, alone or in a batch
Issuance = tuple[Principal, IssueRequest]


def device_principal(device: Device, via: str) -> Principal:
    """The identity a device acts as while it enrolls: its own org unit, nothing more."""
    return Principal(name=f"{via}:{device.id}", role=Role.OPERATOR,
                     org_unit_id=device.org_unit_id, org_path=device.org_path)


class Enrollment:
    """First contact and renewal for devices (RFC 7030 flows)."""

    def __init__(self, uow: Transactions[EnrollmentUnitOfWork], clock: Clock, audit: Auditor,
                 pki: DeviceCertificates[EnrollmentUnitOfWork]) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._pki = pki

    # -- claim tokens ------------------------------------------------------------------

    def create_claim(
        self, actor: Principal, device_id: str, ttl: timedelta = DEFAULT_CLAIM_TTL
    ) -> tuple[ClaimToken, str]:
        """A one-time token the device presents on its first enrollment (G8)."""
        draft = AuditDraft(tag=AuditTag.CLAIM_CREATED, actor=actor.name,
                           org_path=actor.org_path, subject=f"device:{device_id}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "creating claim tokens")
            check_claim_ttl(ttl)
            device = visible_device(uow.devices, actor, device_id)
            refused = refusal(device.id, device.state, Transport.ENROLL)
            if refused is not None:
                raise Conflict(f"{refused}; it cannot be claimed")
            token, plaintext = mint_claim(device, self._clock.now(), ttl, actor.name)
            uow.claims.add(token)
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.CLAIM_CREATED, actor=actor.name, org_path=device.org_path,
                subject=f"device:{device.id}",
                details={"claim": token.id, "expires_at": token.expires_at.isoformat()},
            ))
        return token, plaintext

    def create_claims(
        self, actor: Principal, device_ids: list[str], ttl: timedelta = DEFAULT_CLAIM_TTL
    ) -> list[tuple[ClaimToken, str]]:
        """Claims for many devices in one transaction (all or nothing)."""
        if not 1 <= len(device_ids) <= MAX_BATCH_CLAIMS:
            raise InvalidInput(f"between 1 and {MAX_BATCH_CLAIMS} devices per request")
        draft = AuditDraft(tag=AuditTag.CLAIM_CREATED, actor=actor.name,
                           org_path=actor.org_path, subject=f"devices:{len(device_ids)}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "creating claim tokens")
            check_claim_ttl(ttl)
            now = self._clock.now()
            created: list[tuple[ClaimToken, str]] = []
            for device_id in device_ids:
                device = visible_device(uow.devices, actor, device_id)
                refused = refusal(device.id, device.state, Transport.ENROLL)
                if refused is not None:
                    raise Conflict(f"{refused}; it cannot be claimed")
                token, plaintext = mint_claim(device, now, ttl, actor.name)
                uow.claims.add(token)
                created.append((token, plaintext))
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.CLAIM_CREATED, actor=actor.name, org_path=actor.org_path,
                subject=f"devices:{len(device_ids)}",
                details={"claims": {t.device_id: t.id for t, _ in created}},
            ))
        return created

    # -- EST simpleenroll with a claim -------------------------------------------------

    def enroll_with_claim(
        self, device_id: str, presented: str, csr_der: bytes, label: str | None
    ) -> CertificateRecord:
        """RFC 7030 §3.2.3 / §4.2.1: HTTP Basic (device id, claim token) + a CSR."""
        return self._pki.issue(*self.claim_issuance(device_id, presented, csr_der, label))

    def claim_issuance(
        self, device_id: str, presented: str, csr_der: bytes, label: str | None
    ) -> Issuance:
        """The request to issue for ``enroll_with_claim``; nothing is read here. The claim
        is checked first thing in the batch's reservation transaction, beside the device
        the batch reads anyway (``IssueRequest.authenticate``), and redeemed in it once
        the CSR passed; the enrollment is audited with its outcome. A caller that batches
        requests (``api/issuance.py``) hands it over from the event loop, with no pool
        thread and no read transaction of its own."""
        draft = AuditDraft(tag=AuditTag.ENROLLMENT_REFUSED, actor=f"est:{device_id[:128]}",
                           org_path=ROOT_PATH, subject=f"device:{device_id[:128]}",
                           details={"method": "claim"})
        match = _CLAIM.match(presented.strip())
        token_id, secret = match.groups() if match else ("", "")

        def authenticated(uow: EnrollmentUnitOfWork, device: Device | None) -> Principal:
            # a malformed token is refused here too: its refusal is audited with the batch
            if not match:
                raise Unauthenticated("malformed claim token")
            token = uow.claims.get(token_id)
            if (token is None or device is None or token.device_id != device.id
                    or not hmac.compare_digest(token.secret_hash, _hash(secret))):
                raise Unauthenticated("unknown claim token for this device")
            return device_principal(device, "est")

        def redeem(uow: EnrollmentUnitOfWork, current: Device) -> None:
            # same transaction as the reservation: a refused CSR does not burn the claim
            if not uow.claims.redeem(token_id, self._clock.now()):
                raise Unauthenticated("this claim token was already used or has expired")

        def enrolled(record: CertificateRecord) -> AuditDraft:
            # committed with the certificate: no second write transaction per enrollment
            return AuditDraft(
                tag=AuditTag.ENROLLMENT_SUCCEEDED, actor=f"est:{record.device_id}",
                org_path=record.org_path, subject=f"device:{record.device_id}",
                details={"method": "claim", "claim": token_id, "serial": record.serial_hex})

        # who asks is not known until the claim is read: a stand-in with no rights
        unknown = Principal(name=draft.actor, role=Role.VIEWER, org_unit_id=ROOT_ORG_ID,
                            org_path=ROOT_PATH)
        return unknown, IssueRequest(
            device_id, csr_der, label, fresh_key=True, authenticate=authenticated,
            on_reserve=redeem, also_audit=enrolled,
            also_refused=lambda error: refused(draft, error))

    # -- EST simplereenroll ------------------------------------------------------------

    def reenroll(
        self, client_cert: x509.Certificate | None, csr_der: bytes, label: str | None
    ) -> CertificateRecord:
        """RFC 7030 §4.2.2: authenticated by the current certificate; same subject and SAN."""
        return self._pki.issue(*self.reenroll_issuance(client_cert, csr_der, label))

    def reenroll_issuance(
        self, client_cert: x509.Certificate | None, csr_der: bytes, label: str | None
    ) -> Issuance:
        """The checks of ``reenroll`` before issuance, and the request to issue (the
        renewal audited with its outcome, in the certificate's own transaction)."""
        subject_hint = (client_cert.subject.rfc4514_string()[:200] if client_cert
                        else "anonymous")
        draft = AuditDraft(tag=AuditTag.REENROLLMENT_REFUSED, actor=f"est:{subject_hint}",
                           org_path=ROOT_PATH, subject=f"certificate:{subject_hint}")
        with self._audit.refusals(draft):
            if client_cert is None:
                raise Unauthenticated("re-enrollment needs the current certificate over TLS")
            current = self._current_record(client_cert)
            csr = parse_csr(csr_der)
            _check_same_names(csr, client_cert)
            with self._uow.reading() as uow:
                device = uow.devices.get(current.device_id or "")
            if device is None:
                raise NotFound("the device of this certificate no longer exists")
            blocked = refusal(device.id, device.state, Transport.REENROLL)
            if blocked is not None:
                raise Conflict(blocked)
            profile = get_profile(label).name if label else current.profile

        def renewed(record: CertificateRecord) -> AuditDraft:
            return AuditDraft(
                tag=AuditTag.REENROLLMENT_SUCCEEDED, actor=f"est:{device.id}",
                org_path=device.org_path, subject=f"device:{device.id}",
                details={"previous": current.serial_hex, "serial": record.serial_hex})

        return device_principal(device, "est"), IssueRequest(
            device.id, csr_der, profile, also_audit=renewed,
            also_refused=lambda error: refused(draft, error))

    # -- recovery inside the grace window ----------------------------------------------

    def recover(
        self, certificate_pem: str, csr_der: bytes, signed_at: datetime, signature: bytes
    ) -> CertificateRecord:
        """A device proves its certificate's key for a new cert: after an outage past
        expiry, or to renew a key in a token (docs/hsm.md). Only up to the grace period
        after expiry, for a never-revoked certificate, a device whose lifecycle allows
        re-enrollment, and a fresh key (a proof works once); always audited."""
        draft = AuditDraft(tag=AuditTag.RECOVERY_REFUSED, actor="recovery",
                           org_path=ROOT_PATH, subject="certificate:unknown")
        with self._audit.refusals(draft):
            try:
                cert = x509.load_pem_x509_certificate(certificate_pem.encode())
            except ValueError as e:
                raise InvalidInput("'certificate' is not a PEM certificate") from e
            draft = AuditDraft(tag=AuditTag.RECOVERY_REFUSED,
                               actor=f"recovery:{cert.subject.rfc4514_string()[:200]}",
                               org_path=ROOT_PATH, subject=f"certificate:{cert.serial_number:x}")
        with self._audit.refusals(draft):
            now = self._clock.now()
            if abs(now - signed_at) > RECOVERY_CLOCK_SKEW:
                raise Unauthenticated("the recovery proof is not fresh (signed_at too far from "
                                      "the server's time)")
            current = self._current_record(cert, allow_expired=True)
            if not proof.verify(require_leaf_public_key(cert.public_key()), signature,
                                proof.recovery_message(signed_at, csr_der)):
                raise Unauthenticated("the recovery proof was not signed by the certificate's key")
            csr = parse_csr(csr_der)
            _check_same_names(csr, cert)
            with self._uow.reading() as uow:
                device = uow.devices.get(current.device_id or "")
                device_type = uow.device_types.get(device.type_name) if device else None
            if device is None or device_type is None:
                raise NotFound("the device of this certificate no longer exists")
            # as simplereenroll: a suspended or retired device gets no new certificate
            blocked = refusal(device.id, device.state, Transport.REENROLL)
            if blocked is not None:
                raise Conflict(blocked)
            expired_for = now - cert.not_valid_after_utc
            grace = device_type.rotation.grace_period
            if expired_for > grace:
                raise Unauthenticated(
                    f"the certificate expired {_ago(expired_for)} ago, beyond the "
                    f"{_ago(grace)} grace window of {device_type.name!r}; onboard again "
                    "with a claim token")
            record = self._pki.issue_certificate(
                device_principal(device, "recovery"), device_id=device.id, csr_data=csr_der,
                profile=current.profile, fresh_key=True,
            )
        self._audit.record(AuditDraft(
            tag=AuditTag.RECOVERY_SUCCEEDED, actor=f"recovery:{device.id}",
            org_path=device.org_path, subject=f"device:{device.id}",
            details={"previous": current.serial_hex, "serial": record.serial_hex,
                     "expired_for_seconds": max(0, int(expired_for.total_seconds())),
                     "grace_seconds": int(grace.total_seconds()),
                     "before_expiry": expired_for < timedelta(0)},
        ))
        return record

    def _current_record(
        self, cert: x509.Certificate, *, allow_expired: bool = False
    ) -> CertificateRecord:
        # the active issuing CA or one retiring since a rotation; never a revoked one
        issuer_id = self._pki.trusted_issuer_of(cert)
        if issuer_id is None:
            raise Unauthenticated("the client certificate was not issued by a CA iotiam "
                                  "trusts")
        now = self._clock.now()
        if now < cert.not_valid_before_utc:
            raise Unauthenticated("the client certificate is not valid yet")
        if not allow_expired and now >= cert.not_valid_after_utc:
            raise Unauthenticated("the client certificate has expired")
        with self._uow.reading() as uow:
            record = uow.certificates.get(issuer_id, cert.serial_number)
        if record is None or record.device_id is None:
            raise Unauthenticated("unknown client certificate")
        if record.status is not CertificateStatus.ISSUED:
            raise Unauthenticated(f"the client certificate is {record.status}")
        return record


def _ago(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _check_same_names(csr: x509.CertificateSigningRequest, cert: x509.Certificate) -> None:
    """RFC 7030 §4.2.2: the Subject and SubjectAltName must equal the current certificate's.

    An empty CSR subject, or one holding just the certificate's CN, is accepted: the
    names in the new certificate come from the inventory either way.
    """
    subject = csr.subject
    cert_cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    only_cn = x509.Name(cert_cn)
    if len(subject) and subject != cert.subject and subject != only_cn:
        raise InvalidInput(
            f"re-enrollment must keep the subject {cert.subject.rfc4514_string()!r}; the CSR "
            f"asks for {subject.rfc4514_string()[:200]!r}"
        )
    try:
        requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return
    try:
        current = list(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        current = []
    if list(requested) != current:
        raise InvalidInput("re-enrollment must keep the certificate's subjectAltName")
