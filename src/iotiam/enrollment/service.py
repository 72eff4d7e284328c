"""Enrollment use cases: one-time claim tokens and EST enroll / re-enroll."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from iotiam.admin.models import Principal, Role
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.clock import Clock
from iotiam.enrollment.models import ClaimToken
from iotiam.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from iotiam.inventory.models import Device, DeviceState
from iotiam.inventory.service import require_role, visible_device
from iotiam.pki.csr import parse_csr
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.pki.profiles import get_profile
from iotiam.pki.service import Pki
from iotiam.unit_of_work import UnitOfWork, UnitOfWorkFactory

CLAIM_PREFIX = "iotc_"
_CLAIM = re.compile(r"^iotc_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")
DEFAULT_CLAIM_TTL = timedelta(minutes=10)
MAX_CLAIM_TTL = timedelta(days=30)
CLAIMABLE_STATES = frozenset({DeviceState.PENDING, DeviceState.ACTIVE})


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def device_principal(device: Device, via: str) -> Principal:
    """The identity a device acts as while it enrolls: its own org unit, nothing more."""
    return Principal(name=f"{via}:{device.id}", role=Role.OPERATOR,
                     org_unit_id=device.org_unit_id, org_path=device.org_path)


class Enrollment:
    """First contact and renewal for devices (RFC 7030 flows)."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, audit: AuditTrail, pki: Pki) -> None:
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
            require_role(actor, Role.OPERATOR, "creating claim tokens")
            if not timedelta(seconds=30) <= ttl <= MAX_CLAIM_TTL:
                raise InvalidInput("claim lifetime must be between 30 s and 30 days")
            device = visible_device(uow, actor, device_id)
            if device.state not in CLAIMABLE_STATES:
                raise Conflict(f"device {device_id!r} is {device.state}; it cannot be claimed")
            now = self._clock.now()
            secret = secrets.token_urlsafe(32)
            token = ClaimToken(
                id=secrets.token_hex(8), device_id=device.id, org_path=device.org_path,
                secret_hash=_hash(secret), created_at=now, expires_at=now + ttl,
                created_by=actor.name,
            )
            uow.claims.add(token)
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.CLAIM_CREATED, actor=actor.name, org_path=device.org_path,
                subject=f"device:{device.id}",
                details={"claim": token.id, "expires_at": token.expires_at.isoformat()},
            ))
        return token, f"{CLAIM_PREFIX}{token.id}_{secret}"

    # -- EST simpleenroll with a claim -------------------------------------------------

    def enroll_with_claim(
        self, device_id: str, presented: str, csr_der: bytes, label: str | None
    ) -> CertificateRecord:
        """RFC 7030 §3.2.3 / §4.2.1: HTTP Basic (device id, claim token) + a CSR."""
        draft = AuditDraft(tag=AuditTag.ENROLLMENT_REFUSED, actor=f"est:{device_id[:128]}",
                           org_path="/root/", subject=f"device:{device_id[:128]}",
                           details={"method": "claim"})
        with self._audit.refusals(draft):
            match = _CLAIM.match(presented.strip())
            if not match:
                raise Unauthenticated("malformed claim token")
            token_id, secret = match.groups()
            profile = get_profile(label) if label else None
            parse_csr(csr_der)  # a garbage body fails before the claim is looked at
            with self._uow.reading() as uow:
                token = uow.claims.get(token_id)
                device = uow.devices.get(device_id)
            if (token is None or device is None or token.device_id != device.id
                    or not hmac.compare_digest(token.secret_hash, _hash(secret))):
                raise Unauthenticated("unknown claim token for this device")

            def redeem(uow: UnitOfWork, current: Device) -> None:
                # same transaction as the reservation: a refused CSR does not burn the claim
                if not uow.claims.redeem(token_id, self._clock.now()):
                    raise Unauthenticated("this claim token was already used or has expired")

            record = self._pki.issue_certificate(
                device_principal(device, "est"), device_id=device.id, csr_data=csr_der,
                profile=profile.name if profile else None, fresh_key=True, on_reserve=redeem,
            )
        self._audit.record(AuditDraft(
            tag=AuditTag.ENROLLMENT_SUCCEEDED, actor=f"est:{device.id}", org_path=device.org_path,
            subject=f"device:{device.id}",
            details={"method": "claim", "claim": token_id, "serial": record.serial_hex},
        ))
        return record

    # -- EST simplereenroll ------------------------------------------------------------

    def reenroll(
        self, client_cert: x509.Certificate | None, csr_der: bytes, label: str | None
    ) -> CertificateRecord:
        """RFC 7030 §4.2.2: authenticated by the current certificate; same subject and SAN."""
        subject_hint = (client_cert.subject.rfc4514_string()[:200] if client_cert
                        else "anonymous")
        draft = AuditDraft(tag=AuditTag.REENROLLMENT_REFUSED, actor=f"est:{subject_hint}",
                           org_path="/root/", subject=f"certificate:{subject_hint}")
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
            profile = get_profile(label).name if label else current.profile
            record = self._pki.issue_certificate(
                device_principal(device, "est"), device_id=device.id, csr_data=csr_der,
                profile=profile,
            )
        self._audit.record(AuditDraft(
            tag=AuditTag.REENROLLMENT_SUCCEEDED, actor=f"est:{device.id}",
            org_path=device.org_path, subject=f"device:{device.id}",
            details={"previous": current.serial_hex, "serial": record.serial_hex},
        ))
        return record

    def _current_record(self, cert: x509.Certificate) -> CertificateRecord:
        issuing = self._pki.cas.issuing.certificate
        if cert.issuer != issuing.subject or not _signed_by(cert, issuing):
            raise Unauthenticated("the client certificate was not issued by this CA")
        now = self._clock.now()
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise Unauthenticated("the client certificate has expired")
        with self._uow.reading() as uow:
            record = uow.certificates.get(self._pki.cas.issuing_id, cert.serial_number)
        if record is None or record.device_id is None:
            raise Unauthenticated("unknown client certificate")
        if record.status is not CertificateStatus.ISSUED:
            raise Unauthenticated(f"the client certificate is {record.status}")
        return record


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            assert cert.signature_hash_algorithm is not None
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            assert cert.signature_hash_algorithm is not None
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, AssertionError):
        return False
    return True


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
