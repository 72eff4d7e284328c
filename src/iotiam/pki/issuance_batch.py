"""One batch of certificate requests on its way through issuance (``pki/issuing.py``):
the values each step hands the next, and the batch's completion, which stores its
certificates with their audit records and audits its refusals (G5, G8)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from iotiam.audit.models import AuditDraft, AuditTag, refused
from iotiam.changes import DeviceChanged
from iotiam.clock import Clock
from iotiam.errors import Conflict, IamError
from iotiam.inventory.models import Device, DeviceState
from iotiam.kernel import Principal
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import PublicKey
from iotiam.pki.models import CertificateProfile, CertificateRecord, CertificateStatus, IssueRequest
from iotiam.pki.ports import PendingProofs, PkiUnitOfWork, SignedCertificate


@dataclass(frozen=True, slots=True)
class Checked:
    """A request that passed every check that needs no write, waiting for its serial."""

    index: int
    device: Device
    identity: LeafIdentity
    public_key: PublicKey
    spki_der: bytes
    key_hash: str
    window: Window


@dataclass(frozen=True, slots=True)
class Window:
    """Validity of every certificate of one profile in one batch, in whole seconds.

    X.509 times carry no fractions, so the reserved row, the signed certificate and
    the audit record all state exactly the same instants (G5).
    """

    profile: CertificateProfile
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True, slots=True)
class Reserved:
    """A request whose serial is recorded, waiting for its signature."""

    checked: Checked
    record: CertificateRecord


class SignedBatch:
    """A batch signed and waiting to be stored, then answered."""

    __slots__ = ("failed", "items", "results", "signed")

    def __init__(self, items: Sequence[tuple[Principal, IssueRequest]],
                 signed: list[tuple[Reserved, tuple[str, str]]],
                 results: list[CertificateRecord | IamError | None]) -> None:
        self.items = items
        self.signed = signed
        self.results = results
        #: what failed its storing as a whole (nothing of it was stored)
        self.failed: IamError | None = None

    @property
    def outcome(self) -> list[CertificateRecord | IamError] | Exception:
        """Each request's certificate or error, in order, once stored."""
        if self.failed is not None:
            return self.failed
        results = list(self.results)
        for item, (pem, fingerprint) in self.signed:
            results[item.checked.index] = issued_record(item.record, pem, fingerprint)
        return [r if r is not None else Conflict("not issued") for r in results]


class Verdicts:
    """A batch's proofs checked elsewhere, read once however often asked (a reservation
    that failed is retried with the verdicts it had read)."""

    __slots__ = ("_pending", "_read")

    def __init__(self, pending: PendingProofs) -> None:
        self._pending = pending
        self._read: list[bool | None] | None = None

    @property
    def count(self) -> int:
        """How many CSRs were taken elsewhere."""
        return self._pending.count

    def verdicts(self) -> list[bool | None]:
        """The verdicts, asked of the helper the first time."""
        if self._read is None:
            self._read = self._pending.verdicts()
        return self._read


def complete_batch(uow: PkiUnitOfWork, done: SignedBatch, clock: Clock) -> list[AuditDraft]:
    """Store a batch's certificates; the audit records of its certificates and refusals,
    to append in the same transaction."""
    items, signed, results = done.items, done.signed, done.results
    drafts: list[AuditDraft] = []
    uow.certificates.complete([
        SignedCertificate(item.record.issuer_id, item.record.serial, pem, fingerprint,
                          item.record.device_id)
        for item, (pem, fingerprint) in signed
    ])
    # only a still-pending device becomes active; a state changed meanwhile stays.
    # Activation is published: the broker lets the device in, caches see it
    activated = sorted({item.checked.device.id for item, _ in signed
                        if item.checked.device.state is DeviceState.PENDING})
    uow.devices.activate_if_pending(activated, clock.now())
    if activated:
        uow.changes.record(DeviceChanged(tuple(activated)))
    # a device that had lost its last credential has one again: caches and the
    # broker sync see the moved updated_at on their safety-net poll. (Publishing
    # every renewal cost a change row and its delivery per certificate, ~0.09 ms
    # of CPU, for what is not a loss of rights: G3 is about revocation.)
    uow.devices.touch(
        sorted({item.checked.device.id for item, _ in signed
                if item.checked.device.state is not DeviceState.PENDING}),
        clock.now())
    for item, (_, fingerprint) in signed:
        record = item.record
        actor, request = items[item.checked.index]
        drafts.append(AuditDraft(
            tag=AuditTag.CERTIFICATE_ISSUED, actor=actor.name,
            org_path=record.org_path, subject=f"device:{record.device_id}",
            details={
                "serial": record.serial_hex,
                "issuer": record.issuer_id,
                "profile": record.profile,
                "not_after": record.not_after.isoformat(),
                "sha256": fingerprint,
            },
        ))
        if request.also_audit is not None:
            drafts.append(request.also_audit(record))
    for index, result in enumerate(results):
        if isinstance(result, IamError):
            actor, request = items[index]
            drafts.append(refusal_draft(actor, request, result))
            if request.also_refused is not None:
                drafts.append(request.also_refused(result))
    return drafts



def issued_record(record: CertificateRecord, pem: str, fingerprint: str) -> CertificateRecord:
    # spelled out: dataclasses.replace costs ~9 µs a certificate on the hot path
    return CertificateRecord(
        issuer_id=record.issuer_id, serial=record.serial, device_id=record.device_id,
        org_unit_id=record.org_unit_id, org_path=record.org_path, profile=record.profile,
        subject=record.subject, not_before=record.not_before, not_after=record.not_after,
        status=CertificateStatus.ISSUED, fingerprint_sha256=fingerprint, pem=pem,
        created_at=record.created_at, public_key_sha256=record.public_key_sha256,
    )


def refusal_draft(actor: Principal, request: IssueRequest, error: IamError) -> AuditDraft:
    return refused(AuditDraft(
        tag=AuditTag.CERTIFICATE_REFUSED, actor=actor.name, org_path=actor.org_path,
        subject=f"device:{request.device_id[:128]}"), error)
