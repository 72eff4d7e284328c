"""EST ``simpleenroll`` without a claim token (RFC 7030 §4.2.1, §4.2.3).

Two kinds of device get here:

* one presenting a manufacturer IDevID (IEEE 802.1AR) over mTLS, or through a trusted
  TLS-terminating proxy. It enrolls when a registered manufacturer CA signed the IDevID,
  the IDevID is valid on the service clock and its serial is in that manufacturer's
  manifest (with the manifest's key, when it lists one; else the first key seen is
  pinned). The device is registered on first contact in the manufacturer's org unit.
* one presenting nothing, whose CSR names a device iotiam does not know.

An unknown manufacturer, a serial missing from the manifest or an unknown anonymous
device is not refused outright: the request is held for an admin (202 + Retry-After),
which is also a finding in the audit log. A known device without credentials is told
to use its claim token (401).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.enrollment import idevid, onboarding
from iotiam.enrollment.models import (
    EnrollmentRequest,
    FirstContactOutcome,
    Held,
    HoldReason,
    ManifestEntry,
    Manufacturer,
    RequestStatus,
)
from iotiam.enrollment.ports import EnrollmentUnitOfWork
from iotiam.enrollment.queue import EnrollmentQueue, Holding
from iotiam.enrollment.service import device_principal
from iotiam.errors import Conflict, Forbidden, Unauthenticated
from iotiam.inventory.models import Device
from iotiam.kernel import ROOT_PATH, Transactions, within
from iotiam.pki.csr import LeafIdentity, parse_csr, validate_csr
from iotiam.pki.models import CertificateRecord, CertificateStatus
from iotiam.pki.ports import DeviceCertificates
from iotiam.pki.profiles import get_profile

#: an approval's reservation younger than this is still being signed: poll again
SIGNING_IN_FLIGHT = timedelta(seconds=60)


@dataclass(frozen=True)
class Admit:
    """The IDevID checks passed: certify this device."""

    manufacturer: Manufacturer
    entry: ManifestEntry
    device: Device | None
    key_sha256: str


@dataclass(frozen=True)
class Hold:
    """Nothing vouches for this device: queue it for an admin."""

    reason: HoldReason
    detail: str
    manufacturer: Manufacturer | None = None


Verdict = Admit | Hold


class FirstContact:
    """First enrollment by IDevID, or held for approval."""

    def __init__(self, uow: Transactions[EnrollmentUnitOfWork], clock: Clock, audit: Auditor,
                 pki: DeviceCertificates[EnrollmentUnitOfWork], queue: EnrollmentQueue) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._pki = pki
        self._queue = queue
        self._parsed: dict[str, x509.Certificate] = {}

    def enroll(
        self, client_cert: x509.Certificate | None, csr_der: bytes, label: str | None,
        source: str,
    ) -> FirstContactOutcome:
        """A certificate, or ``Held`` (RFC 7030 §4.2.3: retry later with the same CSR)."""
        source = (source or "unknown")[:128]
        method = "idevid" if client_cert is not None else "anonymous"
        draft = AuditDraft(tag=AuditTag.ENROLLMENT_REFUSED, actor=f"est:{source}",
                           org_path=ROOT_PATH, subject="device:unknown",
                           details={"method": method, "source": source})
        with self._audit.refusals(draft):
            profile = get_profile(label).name if label else None
            csr = parse_csr(csr_der)
            device_id = (idevid.device_id_of(client_cert) if client_cert is not None
                         else _named_in_csr(csr))
            # RFC 7030 §4.2.1: the CSR may repeat the device's name, never ask for another
            validate_csr(csr, LeafIdentity(subject=x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, device_id)])))
        details = dict(draft.details)
        if client_cert is not None:
            details["idevid"] = idevid.describe(client_cert)
        with self._audit.refusals(replace(draft, subject=f"device:{device_id}",
                                          details=details)):
            earlier = self._queue.find(csr)
            if earlier is not None:
                return self._poll(earlier, client_cert, device_id, csr_der, profile)
            if client_cert is None:
                return self._anonymous(device_id, csr, profile, source)
            verdict = self._judge(client_cert, device_id)
            if isinstance(verdict, Hold):
                return self._queue.hold(Holding(
                    device_id=device_id, reason=verdict.reason, detail=verdict.detail,
                    source=source, presented=f"IDevID {idevid.describe(client_cert)}",
                    csr=csr, profile=profile, manufacturer=verdict.manufacturer,
                    idevid_pem=client_cert.public_bytes(serialization.Encoding.PEM).decode(),
                ))
            return self._admit(verdict, client_cert, device_id, csr_der, profile, None)

    # -- a retry of a held request -----------------------------------------------------

    def _poll(
        self, request: EnrollmentRequest, client_cert: x509.Certificate | None,
        device_id: str, csr_der: bytes, profile: str | None,
    ) -> FirstContactOutcome:
        if request.status is RequestStatus.REJECTED:
            raise Forbidden(f"enrollment request {request.id} was rejected by an administrator;"
                            " this device may not enroll with this request")
        if request.status in (RequestStatus.APPROVED, RequestStatus.ENROLLED):
            return self._fulfilled(request)
        if client_cert is not None and device_id == request.device_id:
            # the manifest may have been imported since: the IDevID may now suffice
            verdict = self._judge(client_cert, device_id)
            if isinstance(verdict, Admit):
                return self._admit(verdict, client_cert, device_id, csr_der,
                                   profile or request.profile, request)
        return self._queue.polled(request)

    def _fulfilled(self, request: EnrollmentRequest) -> FirstContactOutcome:
        now = self._clock.now()
        with self._uow.reading() as uow:
            mine = [c for c in uow.certificates.with_public_key(request.public_key_sha256)
                    if c.device_id == request.device_id]
        live = [c for c in mine if c.pem is not None
                and c.status is CertificateStatus.ISSUED and c.not_after > now]
        if not live and any(c.status is CertificateStatus.RESERVED
                            and now - c.created_at < SIGNING_IN_FLIGHT for c in mine):
            # the approval committed its reservation; the signed certificate follows
            return Held(request, retry_after_seconds=1)
        if not live:
            raise Conflict(f"enrollment request {request.id} was fulfilled, but its "
                           "certificate is no longer valid; enroll again with a new key")
        record = max(live, key=lambda c: c.created_at)
        self._succeeded(record, {"method": "approval", "request": request.id})
        return record

    # -- anonymous ---------------------------------------------------------------------

    def _anonymous(self, device_id: str, csr: x509.CertificateSigningRequest,
                   profile: str | None, source: str) -> FirstContactOutcome:
        with self._uow.reading() as uow:
            known = uow.devices.get(device_id) is not None
        if known:
            raise Unauthenticated(
                "first enrollment needs a claim token as HTTP Basic credentials "
                "(user = device id, password = token)")
        return self._queue.hold(Holding(
            device_id=device_id, reason=HoldReason.UNKNOWN_DEVICE,
            detail=f"device {device_id!r} is not registered and sent no credentials",
            source=source, presented=f"CSR subject={csr.subject.rfc4514_string()[:300]}",
            csr=csr, profile=profile,
        ))

    # -- IDevID ------------------------------------------------------------------------

    def _judge(self, cert: x509.Certificate, device_id: str) -> Verdict:
        """Decide on an IDevID: admit, hold, or refuse (raises)."""
        now = self._clock.now()
        if self._pki.issuer_named(cert.issuer) is not None:
            raise Unauthenticated("this certificate was issued by iotiam; renew it with "
                                  "simplereenroll instead")
        idevid.check_validity(cert, now, "IDevID")
        if idevid.is_ca(cert):
            raise Unauthenticated("a CA certificate cannot be a device's IDevID")
        with self._uow.reading() as uow:
            found = idevid.find_issuer(cert, self._candidates(uow.manufacturers.list_all()))
            if found is None:
                return Hold(HoldReason.UNKNOWN_MANUFACTURER,
                            f"the IDevID's issuer {cert.issuer.rfc4514_string()[:200]!r} is "
                            "not a registered manufacturer CA")
            maker, ca = found
            idevid.check_validity(ca, now, f"CA of manufacturer {maker.name!r}")
            entry = uow.manifest.get(device_id)
            if entry is None or entry.manufacturer != maker.name:
                return Hold(HoldReason.SERIAL_NOT_IN_MANIFEST,
                            f"serial {device_id!r} is not in the manifest of manufacturer "
                            f"{maker.name!r}", maker)
            key = idevid.spki_sha256(cert.public_key())
            if entry.public_key_sha256 is not None and entry.public_key_sha256 != key:
                raise Unauthenticated(_key_mismatch(device_id, maker))
            device = uow.devices.get(device_id)
        if device is not None and not within(device.org_path, maker.org_path):
            raise Conflict(f"device {device_id!r} belongs to another org unit than manufacturer "
                           f"{maker.name!r}'s; enroll it with a claim token")
        return Admit(maker, entry, device, key)

    def _candidates(self, makers: list[Manufacturer]
                    ) -> list[tuple[Manufacturer, x509.Certificate]]:
        pairs = []
        for maker in makers:
            ca = self._parsed.get(maker.fingerprint_sha256)
            if ca is None:
                ca = x509.load_pem_x509_certificate(maker.certificate_pem.encode())
                self._parsed[maker.fingerprint_sha256] = ca
            pairs.append((maker, ca))
        return pairs

    def _admit(
        self, verdict: Admit, cert: x509.Certificate, device_id: str, csr_der: bytes,
        profile: str | None, closing: EnrollmentRequest | None,
    ) -> CertificateRecord:
        maker = verdict.manufacturer
        device = verdict.device
        if device is None:
            device = self._register(maker, device_id, csr_der, profile)
        now = self._clock.now()

        def bind(uow: EnrollmentUnitOfWork, current: Device) -> None:
            # in the reservation's transaction, checks before writes: the first key seen
            # for a serial is pinned, and a held request is closed exactly once
            entry = uow.manifest.get(device_id)
            if entry is None or entry.public_key_sha256 not in (None, verdict.key_sha256):
                raise Unauthenticated(_key_mismatch(device_id, maker))
            if closing is not None and not uow.enrollment_requests.decide(
                    closing.id, RequestStatus.ENROLLED, now, "idevid",
                    "the IDevID qualified on a later attempt"):
                raise Conflict(f"enrollment request {closing.id} was decided meanwhile; "
                               "try again")
            if entry.public_key_sha256 is None and not uow.manifest.pin_key(
                    device_id, verdict.key_sha256):
                # another first contact pinned a key meanwhile (PostgreSQL: not serialised)
                again = uow.manifest.get(device_id)
                if again is None or again.public_key_sha256 != verdict.key_sha256:
                    raise Unauthenticated(_key_mismatch(device_id, maker))
            uow.manifest.mark_enrolled(device_id, now)

        record = self._pki.issue_certificate(
            device_principal(device, "idevid"), device_id=device.id, csr_data=csr_der,
            profile=profile, fresh_key=True, on_reserve=bind,
        )
        details = {"method": "idevid", "manufacturer": maker.name,
                   "idevid": idevid.describe(cert)}
        if closing is not None:
            details["request"] = closing.id
        self._succeeded(record, details)
        return record

    def _register(self, maker: Manufacturer, device_id: str, csr_der: bytes,
                  profile: str | None) -> Device:
        with self._uow.reading() as uow:
            unit = uow.org_units.get(maker.org_unit_id)
            device_type = uow.device_types.get(maker.device_type)
        if unit is None or device_type is None:
            raise Conflict(f"manufacturer {maker.name!r} names an org unit or device type "
                           "that no longer exists")
        device = onboarding.new_device(device_id, device_type, unit, self._clock.now(),
                                       {"manufacturer": maker.name})
        self._pki.check_issuable(parse_csr(csr_der), device, device_type, profile,
                                 admin=False)
        with self._uow() as uow:
            onboarding.register(uow, self._audit, device, f"idevid:{maker.name}",
                                {"manufacturer": maker.name, "via": "idevid"})
        return device

    def _succeeded(self, record: CertificateRecord, details: dict[str, str]) -> None:
        self._audit.record(AuditDraft(
            tag=AuditTag.ENROLLMENT_SUCCEEDED, actor=f"est:{record.device_id}",
            org_path=record.org_path, subject=f"device:{record.device_id}",
            details={**details, "serial": record.serial_hex},
        ))


def _named_in_csr(csr: x509.CertificateSigningRequest) -> str:
    """An anonymous device is known only by the name its CSR asks for."""
    for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER):
        for attribute in csr.subject.get_attributes_for_oid(oid):
            if isinstance(attribute.value, str) and attribute.value:
                return idevid.check_device_id(attribute.value, "device id")
    raise Unauthenticated(
        "first enrollment needs a claim token as HTTP Basic credentials (user = device id, "
        "password = token), a manufacturer IDevID over TLS, or a CSR naming the device")


def _key_mismatch(device_id: str, maker: Manufacturer) -> str:
    return (f"finding: the IDevID's key differs from the one the manifest of manufacturer "
            f"{maker.name!r} binds to serial {device_id!r}")

