"""The approval queue: first contacts iotiam could not vouch for wait for an admin.

RFC 7030 §4.2.3: the server answers 202 with Retry-After and the client polls with
the *same* CSR, which is how a poll finds its request. Approving certifies the CSR's
key at once; the next poll picks the certificate up. The queue is bounded per source
address and in total, so an anonymous flood cannot fill the database.

Each hold and each poll of a pending request is also a sighting for discovery (source
``est``): a device nobody vouched for is asking to be managed.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.discovery.ports import SightingSink
from iotiam.discovery.sources.own_traffic import NO_SIGHTINGS, sighting_of_held_request
from iotiam.enrollment import onboarding
from iotiam.enrollment.idevid import spki_sha256
from iotiam.enrollment.models import (
    EnrollmentRequest,
    Held,
    HoldReason,
    Manufacturer,
    RequestStatus,
)
from iotiam.enrollment.ports import EnrollmentUnitOfWork
from iotiam.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from iotiam.inventory.models import Device, DeviceType, OrgUnit
from iotiam.kernel import ROOT_PATH, Principal, Role, Transactions
from iotiam.pki.csr import parse_csr
from iotiam.pki.models import CertificateRecord
from iotiam.pki.ports import DeviceCertificates

log = logging.getLogger("iotiam.enrollment")

MAX_NOTE_CHARS = 500


@dataclass(frozen=True)
class QueueLimits:
    """Bounds of the queue and what clients are told."""

    per_source: int = 20
    total: int = 10_000
    #: a pending request older than this is dropped (the device may ask again)
    stale_after: timedelta = timedelta(days=7)
    retry_after_seconds: int = 60


@dataclass(frozen=True)
class Holding:
    """What a first contact presented, to be queued."""

    device_id: str
    reason: HoldReason
    detail: str
    source: str
    presented: str
    csr: x509.CertificateSigningRequest
    profile: str | None = None
    manufacturer: Manufacturer | None = None
    idevid_pem: str | None = None


def csr_sha256(csr: x509.CertificateSigningRequest) -> str:
    """SHA-256 of the DER CSR: the same request whether it came as PEM or DER."""
    return hashlib.sha256(csr.public_bytes(serialization.Encoding.DER)).hexdigest()


def _visible(uow: EnrollmentUnitOfWork, actor: Principal, request_id: str) -> EnrollmentRequest:
    request = uow.enrollment_requests.get(request_id)
    if request is None or not _sees(actor, request):
        raise NotFound(f"enrollment request {request_id[:64]!r} not found")
    return request


def _sees(actor: Principal, request: EnrollmentRequest) -> bool:
    # a request tied to no org unit (unknown device or manufacturer) is the root's business
    if request.org_path is None:
        return actor.is_global
    return actor.sees(request.org_path)


class EnrollmentQueue:
    """Hold, list, approve and reject first enrollments."""

    def __init__(self, uow: Transactions[EnrollmentUnitOfWork], clock: Clock, audit: Auditor,
                 pki: DeviceCertificates[EnrollmentUnitOfWork],
                 limits: QueueLimits | None = None, *,
                 sightings: SightingSink = NO_SIGHTINGS) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._pki = pki
        self.limits = limits or QueueLimits()
        self._sightings = sightings

    # -- the device side ---------------------------------------------------------------

    def hold(self, holding: Holding) -> Held:
        """Queue a first contact and record the finding; a full queue is a 429."""
        now = self._clock.now()
        maker = holding.manufacturer
        csr_hash = csr_sha256(holding.csr)
        request = EnrollmentRequest(
            id=secrets.token_hex(8), device_id=holding.device_id, reason=holding.reason,
            detail=holding.detail[:1024], source=holding.source[:128],
            presented=holding.presented[:2048],
            csr_pem=holding.csr.public_bytes(serialization.Encoding.PEM).decode(),
            csr_sha256=csr_hash,
            public_key_sha256=spki_sha256(holding.csr.public_key()),
            status=RequestStatus.PENDING, created_at=now, last_seen_at=now,
            org_unit_id=maker.org_unit_id if maker else None,
            org_path=maker.org_path if maker else None,
            manufacturer=maker.name if maker else None, profile=holding.profile,
            idevid_pem=holding.idevid_pem,
        )
        try:
            with self._uow() as uow:
                uow.enrollment_requests.drop_stale(now - self.limits.stale_after)
                if uow.enrollment_requests.count_pending() >= self.limits.total:
                    raise TooManyRequests("too many enrollment requests are waiting for "
                                          "approval; try again later")
                if (uow.enrollment_requests.count_pending(source=request.source)
                        >= self.limits.per_source):
                    raise TooManyRequests(f"too many enrollment requests from {request.source} "
                                          "are waiting for approval; try again later")
                uow.enrollment_requests.add(request)
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.ENROLLMENT_HELD, actor=f"est:{request.source}",
                    org_path=request.org_path or ROOT_PATH,
                    subject=f"device:{request.device_id}", outcome=Outcome.DENIED,
                    reason=request.detail[:500],
                    details={"request": request.id, "finding": str(request.reason),
                             "source": request.source, "presented": request.presented[:500],
                             "manufacturer": request.manufacturer},
                ))
        except Conflict:
            # the same CSR raced in twice: both callers wait on the one stored request
            with self._uow.reading() as uow:
                stored = uow.enrollment_requests.by_csr(csr_hash)
            if stored is None:
                raise
            request = stored
        self._sighted(request)
        return Held(request, self.limits.retry_after_seconds)

    def polled(self, request: EnrollmentRequest) -> Held:
        """A device asked again while its request is still pending."""
        with self._uow() as uow:
            uow.enrollment_requests.touch(request.id, self._clock.now())
        self._sighted(request)
        return Held(request, self.limits.retry_after_seconds)

    def _sighted(self, request: EnrollmentRequest) -> None:
        """Tell discovery a device is waiting for approval (the sink queues)."""
        try:
            self._sightings.observe([sighting_of_held_request(
                request, self._clock.now().timestamp())])
        except Exception:  # discovery's trouble is not the enrolling device's
            log.exception("handing the sighting of enrollment request %s to discovery "
                          "failed", request.id)

    def find(self, csr: x509.CertificateSigningRequest) -> EnrollmentRequest | None:
        """The request an earlier attempt with this CSR left, if any."""
        with self._uow.reading() as uow:
            return uow.enrollment_requests.by_csr(csr_sha256(csr))

    # -- the admin side ----------------------------------------------------------------

    def list_requests(
        self, actor: Principal, *, status: RequestStatus | None = RequestStatus.PENDING,
        limit: int = 100,
    ) -> list[EnrollmentRequest]:
        """Requests the caller may see, oldest first (``status=None``: every status)."""
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit must be between 1 and 1000")
        with self._uow.reading() as uow:
            return uow.enrollment_requests.page(org_path=actor.org_path,
                                                include_unscoped=actor.is_global,
                                                status=status, limit=limit)

    def get(self, actor: Principal, request_id: str) -> EnrollmentRequest:
        """One request the caller may see."""
        with self._uow.reading() as uow:
            return _visible(uow, actor, request_id)

    def approve(
        self, actor: Principal, request_id: str, *, type_name: str | None = None,
        org_unit_id: str | None = None,
    ) -> tuple[EnrollmentRequest, CertificateRecord]:
        """Certify the request's key; the device is registered first if it is new."""
        draft = AuditDraft(tag=AuditTag.ENROLLMENT_APPROVED, actor=actor.name,
                           org_path=actor.org_path,
                           subject=f"enrollment-request:{request_id[:64]}")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "approving enrollment requests")
            with self._uow.reading() as uow:
                request = _visible(uow, actor, request_id)
                _require_pending(request)
                csr = parse_csr(request.csr_pem.encode())
                device, is_new = self._target_device(uow, actor, request, type_name, org_unit_id)
                device_type = uow.device_types.get(device.type_name)
            if device_type is None:
                raise InvalidInput(f"unknown device type {device.type_name!r}")
            self._pki.check_issuable(csr, device, device_type, request.profile, admin=True)
            now = self._clock.now()
            if is_new:
                with self._uow() as uow:
                    onboarding.register(uow, self._audit, device, actor.name,
                                        {"enrollment_request": request.id})

            def decide(uow: EnrollmentUnitOfWork, current: Device) -> None:
                # in the reservation's transaction: approved exactly once, with its record
                if not uow.enrollment_requests.decide(request.id, RequestStatus.APPROVED, now,
                                                      actor.name, None):
                    raise Conflict(f"enrollment request {request.id} was decided meanwhile")
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.ENROLLMENT_APPROVED, actor=actor.name,
                    org_path=current.org_path, subject=f"device:{current.id}",
                    details={"request": request.id, "finding": str(request.reason),
                             "source": request.source, "new_device": is_new},
                ))

            record = self._pki.issue_certificate(
                actor, device_id=device.id, csr_data=request.csr_pem.encode(),
                profile=request.profile, fresh_key=True, on_reserve=decide,
            )
        with self._uow() as uow:
            uow.enrollment_requests.set_certificate(request.id, record.serial_hex)
        return replace(request, status=RequestStatus.APPROVED, decided_at=now,
                       decided_by=actor.name, certificate_serial=record.serial_hex), record

    def _target_device(
        self, uow: EnrollmentUnitOfWork, actor: Principal, request: EnrollmentRequest,
        type_name: str | None, org_unit_id: str | None,
    ) -> tuple[Device, bool]:
        existing = uow.devices.get(request.device_id)
        if existing is not None:
            if not actor.sees(existing.org_path):
                raise NotFound(f"device {request.device_id!r} not found")
            if type_name or org_unit_id:
                raise InvalidInput(f"device {existing.id!r} is already registered; a type or "
                                   "org unit applies only to a new device")
            return existing, False
        unit = self._unit(uow, actor, org_unit_id or request.org_unit_id or actor.org_unit_id)
        maker = uow.manufacturers.get(request.manufacturer) if request.manufacturer else None
        chosen = type_name or (maker.device_type if maker else None)
        if chosen is None:
            raise InvalidInput("name the device type: the request does not come from a "
                               "registered manufacturer")
        device_type = self._device_type(uow, chosen)
        attributes = {"manufacturer": maker.name} if maker else {}
        return onboarding.new_device(request.device_id, device_type, unit, self._clock.now(),
                                     attributes), True

    @staticmethod
    def _unit(uow: EnrollmentUnitOfWork, actor: Principal, unit_id: str) -> OrgUnit:
        unit = uow.org_units.get(unit_id)
        if unit is None or not actor.sees(unit.path):
            raise NotFound(f"org unit {unit_id!r} not found")
        return unit

    @staticmethod
    def _device_type(uow: EnrollmentUnitOfWork, name: str) -> DeviceType:
        device_type = uow.device_types.get(name)
        if device_type is None:
            raise InvalidInput(f"unknown device type {name!r}")
        return device_type

    def reject(self, actor: Principal, request_id: str, note: str = "") -> EnrollmentRequest:
        """Refuse a request for good: later polls with its CSR get a 403."""
        draft = AuditDraft(tag=AuditTag.ENROLLMENT_REJECTED, actor=actor.name,
                           org_path=actor.org_path,
                           subject=f"enrollment-request:{request_id[:64]}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.ADMIN, "rejecting enrollment requests")
            if len(note) > MAX_NOTE_CHARS or "\x00" in note:
                raise InvalidInput(f"the reason is longer than {MAX_NOTE_CHARS} characters or "
                                   "has a NUL byte")
            request = _visible(uow, actor, request_id)
            _require_pending(request)
            now = self._clock.now()
            if not uow.enrollment_requests.decide(request.id, RequestStatus.REJECTED, now,
                                                  actor.name, note or None):
                raise Conflict(f"enrollment request {request.id} was decided meanwhile")
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.ENROLLMENT_REJECTED, actor=actor.name,
                org_path=request.org_path or ROOT_PATH, subject=f"device:{request.device_id}",
                details={"request": request.id, "finding": str(request.reason),
                         "source": request.source, "note": note},
            ))
        return replace(request, status=RequestStatus.REJECTED, decided_at=now,
                       decided_by=actor.name, decision_note=note or None)


def _require_pending(request: EnrollmentRequest) -> None:
    if request.status is not RequestStatus.PENDING:
        by = f" by {request.decided_by}" if request.decided_by else ""
        raise Conflict(f"enrollment request {request.id} is already {request.status}{by}")
