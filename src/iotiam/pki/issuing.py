"""Certificate issuance, one request or many in the same two transactions.

Order (G1, G5): validate the CSR, *reserve* the serial in a committed row, sign, then
store the certificate with its audit record. A crash between the two commits leaves a
reserved serial that is never handed out again.

A batch runs every request's checks and reservation in one transaction and every
completion in another, so the per-transaction cost (BEGIN, COMMIT, the WAL write) is
paid once per batch instead of twice per certificate. A request that fails is
refused on its own; the others go on.

What signs the certificate (:class:`~iotiam.pki.ports.LeafSigner`) and whether proofs
of possession are checked on another core (:class:`~iotiam.pki.ports.ProofChecks`)
are ports; when concurrent callers share a batch is decided outside, in
``iotiam.fast`` (wired in ``bootstrap.py``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.errors import Conflict, Forbidden, IamError, NotFound, contained
from iotiam.inventory.lifecycle import Transport, allowed_states, refusal
from iotiam.inventory.models import Device, DeviceType, is_reserved_id
from iotiam.kernel import Principal, Role, Transactions
from iotiam.pki.csr import LeafIdentity, parse_csr, validate_csr
from iotiam.pki.issuance_batch import (
    Checked,
    Reserved,
    SignedBatch,
    Verdicts,
    Window,
    complete_batch,
)
from iotiam.pki.keys import PublicKey
from iotiam.pki.models import (
    CertificateProfile,
    CertificateRecord,
    CertificateStatus,
    IssueRequest,
    PkiConfig,
    SerialInUse,
)
from iotiam.pki.ports import (
    LeafSigner,
    PkiUnitOfWork,
    ProofChecks,
    SerialSource,
)
from iotiam.pki.profiles import get_profile
from iotiam.pki.signer import SigningCa

#: how a bug met by one request of a batch names that request in its error
_ONE = "a certificate request"
SERIAL_RETRIES = 3


#: a batch of certificate requests, each with its actor, to the result of each in order
IssueBatch = Callable[[Sequence[tuple[Principal, IssueRequest]]],
                      list[CertificateRecord | IamError]]


def public_key_sha256(public_key: PublicKey) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo."""
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def device_identity(device: Device) -> LeafIdentity:
    """The name a device's certificate carries: CN = device id, OU = its org unit.

    No URI SAN: a ``spiffe://`` or ``urn:`` URI is valid RFC 5280 but pkilint (which
    we promise to pass) rejects non-hierarchical schemes, and MQTT brokers read the CN.
    """
    return LeafIdentity(
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, device.org_unit_id),
                x509.NameAttribute(NameOID.COMMON_NAME, device.id),
            ]
        ),
    )


@dataclass(frozen=True, slots=True)
class _Batch:
    """A batch's requests, each one's result once known, the CSRs that parsed, and the
    proofs checked elsewhere."""

    #: each request with its actor (an ``authenticate`` hook's, once it ran)
    items: list[tuple[Principal, IssueRequest]]
    results: list[CertificateRecord | IamError | None]
    parsed: list[tuple[int, x509.CertificateSigningRequest]]
    proofs: Verdicts | None


class CertificateIssuance:
    """Issues leaf certificates from the issuing CA."""

    def __init__(
        self,
        uow: Transactions[PkiUnitOfWork],
        clock: Clock,
        audit: Auditor,
        config: PkiConfig,
        issuing_id: str,
        issuing: SigningCa,
        leaf_signer: LeafSigner,
        serials: SerialSource,
        proofs: ProofChecks | None = None,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._config = config
        self._issuing_id = issuing_id
        self._issuing_not_after = issuing.certificate.not_valid_after_utc
        self._leaf = leaf_signer
        self._serials = serials
        self._proofs = proofs

    def issue_many(self, items: Sequence[tuple[Principal, IssueRequest]]
                   ) -> list[CertificateRecord | IamError]:
        """Certify each request's key for its actor, in two transactions for them all; a
        refused request yields its error, in order."""
        answers: list[list[CertificateRecord | IamError] | Exception] = []
        self.issue_stream(items, following=tuple, answer=answers.append)
        (answer,) = answers
        if isinstance(answer, Exception):
            raise answer
        return answer

    def issue_stream(self, items: Sequence[tuple[Principal, IssueRequest]],
                     following: Callable[[], Sequence[tuple[Principal, IssueRequest]]],
                     answer: Callable[[list[CertificateRecord | IamError] | Exception], None],
                     ) -> None:
        """Certify ``items``, then each batch ``following()`` gives until it gives none,
        answering each batch in order (its outcomes, or the error that failed it whole).

        The transaction that stores a batch's certificates also takes the next batch
        (``following()`` is asked in it, once the batch is stored: the next one holds
        whoever came meanwhile, as it would after a commit of its own) and reserves its
        serials, so a stream of batches pays one commit per batch, not two. G5 holds
        unchanged: a batch's serials commit before it is signed, and its certificates
        with their audit records commit before it is answered.
        """
        first = self._batch(items)
        # 2. every check, then the serials reserved in a committed row (G1, G5)
        reserved = self._reserve(first)
        batch: _Batch | None = first
        while batch is not None:
            # 3. sign (RFC 5280 §4.1); a failure leaves its serial reserved, never reused
            done = SignedBatch(batch.items, self._sign_each(reserved, batch.results),
                               batch.results)
            # 4. store each certificate with its audit record, audit each refusal, and
            # take and reserve the next batch (2.) in the same transaction
            batch, reserved = self._store_and_next(done, following)
            answer(done.outcome)

    def _batch(self, items: Sequence[tuple[Principal, IssueRequest]]) -> _Batch:
        """1. an operator's request, with a CSR that parses (RFC 2986)."""
        results: list[CertificateRecord | IamError | None] = [None] * len(items)
        parsed: list[tuple[int, x509.CertificateSigningRequest]] = []
        for i, (actor, request) in enumerate(items):
            try:
                if request.authenticate is None:  # else known in the reservation
                    actor.require(Role.OPERATOR, "issuing certificates")
                parsed.append((i, parse_csr(request.csr_data)))
            except Exception as e:  # each request fails alone, even on a bug (G12)
                results[i] = contained(e, _ONE)
        # RFC 2986 §3: part of a batch's proofs of possession may be checked elsewhere
        # while this process does the other checks
        pending = self._proofs.start([csr for _, csr in parsed]
                                     ) if self._proofs and parsed else None
        return _Batch(list(items), results, parsed, Verdicts(pending) if pending else None)

    # -- reservation and completion ----------------------------------------------------

    def _reserve(self, batch: _Batch) -> list[Reserved]:
        """Check every request, then record the survivors' serials, in one transaction."""
        try:
            with self._uow() as uow:
                return self._check_and_reserve(uow, batch)
        except IamError as e:
            # the transaction itself failed: nothing of it was kept
            for index, _ in batch.parsed:
                batch.results[index] = e
            return []

    def _store_and_next(
        self, done: SignedBatch,
        following: Callable[[], Sequence[tuple[Principal, IssueRequest]]],
    ) -> tuple[_Batch | None, list[Reserved]]:
        """Store ``done``; in the same transaction, the next batch if one waits, with its
        serials reserved. ``done.failed`` says if it could not be stored."""
        taken: _Batch | None = None
        reserved: list[Reserved] = []
        try:
            with self._uow() as uow:
                drafts = complete_batch(uow, done, self._clock)
                items = following()
                if items:
                    taken = self._batch(items)
                    reserved = self._check_and_reserve(uow, taken)
                # the audit head's lock last, held the shortest: another serving process
                # waits on it (PostgreSQL)
                self._audit.append_many(uow, drafts)
            return taken, reserved
        except IamError as e:
            if taken is None:  # nothing of the batch was stored
                done.failed = e
                return None, []
        # the shared transaction kept nothing: the signed batch is stored alone, then
        # the next one reserved alone, each failing only itself
        try:
            with self._uow() as uow:
                self._audit.append_many(uow, complete_batch(uow, done, self._clock))
        except IamError as stored:
            done.failed = stored
        for index, _ in taken.parsed:
            taken.results[index] = None
        return taken, self._reserve(taken)

    def _check_and_reserve(self, uow: PkiUnitOfWork, batch: _Batch) -> list[Reserved]:
        items, parsed, results, proofs = batch.items, batch.parsed, batch.results, batch.proofs
        if not parsed:
            return []
        devices = uow.devices.get_many([items[i][1].device_id for i, _ in parsed])
        now = self._clock.now()
        types: dict[str, DeviceType | None] = {}
        windows: dict[CertificateProfile, Window] = {}
        # the first ``proofs.count`` requests wait for the verdicts from elsewhere
        elsewhere = [index for index, _ in parsed[:proofs.count]] if proofs else []
        later = set(elsewhere)
        checked: list[Checked] = []
        waiting: list[tuple[int, x509.CertificateSigningRequest, Device, Window]] = []
        for index, csr in parsed:
            actor, request = items[index]
            try:
                if request.authenticate is not None:
                    # who asks first: nothing else is told to a caller not yet known
                    actor = request.authenticate(uow, devices.get(request.device_id))
                    actor.require(Role.OPERATOR, "issuing certificates")
                    items[index] = actor, request
                device, window = self._check_request(
                    uow, actor, request, devices.get(request.device_id), types, windows, now)
                if index in later:
                    waiting.append((index, csr, device, window))
                else:
                    checked.append(self._check_csr(index, csr, device, window, None))
            except Exception as e:
                results[index] = contained(e, _ONE)
        if proofs is not None:
            # read even if nothing waits: unread answers must not linger
            verdicts = dict(zip(elsewhere, proofs.verdicts(), strict=True))
            for index, csr, device, window in waiting:
                try:
                    checked.append(self._check_csr(index, csr, device, window,
                                                   verdicts[index]))
                except Exception as e:
                    results[index] = contained(e, _ONE)
            checked.sort(key=lambda item: item.index)
        accepted = self._claim_keys(uow, items, checked, results)
        return self._reserve_serials(uow, accepted, now)

    def _check_request(
        self,
        uow: PkiUnitOfWork,
        actor: Principal,
        request: IssueRequest,
        device: Device | None,
        types: dict[str, DeviceType | None],
        windows: dict[CertificateProfile, Window],
        now: datetime,
    ) -> tuple[Device, Window]:
        """The checks of one request before its CSR: device, state, profile."""
        if device is None or not actor.sees(device.org_path):
            raise NotFound(f"device {request.device_id!r} not found")
        if is_reserved_id(device.id):
            # the CN would be a privileged broker user, with no password (docs/measured-facts.md)
            raise Forbidden(f"{device.id!r} is a reserved name: no certificate carries it")
        refused = refusal(device.id, device.state, Transport.ENROLL)
        if refused is not None:
            raise Conflict(f"{refused}; certificates are issued only to "
                           f"{allowed_states(Transport.ENROLL)} devices")
        if device.type_name not in types:
            types[device.type_name] = uow.device_types.get(device.type_name)
        device_type = types[device.type_name]
        profile = get_profile(
            request.profile or (device_type.certificate_profile if device_type else "device"))
        if profile.server_auth and not (
            (device_type is not None and profile.name == device_type.certificate_profile)
            or actor.has_role(Role.ADMIN)
        ):
            # a server-auth certificate lets its holder impersonate a service
            raise Forbidden(
                f"the {profile.name!r} profile needs an admin for a {device.type_name} device")
        if device_type is not None and device_type.rotation.certificate_lifetime:
            # the device type's rotation policy beats the profile's default lifetime
            profile = replace(profile, lifetime=device_type.rotation.certificate_lifetime)
        window = windows.get(profile)
        if window is None:
            window = windows[profile] = self._window(profile, now)
        return device, window

    @staticmethod
    def _check_csr(index: int, csr: x509.CertificateSigningRequest, device: Device,
                   window: Window, signature_valid: bool | None) -> Checked:
        """The CSR's checks: key, proof of possession (``signature_valid`` if it was
        checked elsewhere), names the inventory gives this device."""
        identity = device_identity(device)
        public_key = validate_csr(csr, identity, signature_valid=signature_valid)
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return Checked(index, device, identity, public_key, spki,
                        hashlib.sha256(spki).hexdigest(), window)

    def _window(self, profile: CertificateProfile, now: datetime) -> Window:
        # backdate for skewed device clocks, but never eat much of a short lifetime
        not_before = (now - min(self._config.backdate, profile.lifetime / 10)
                      ).replace(microsecond=0)
        not_after = min((not_before + profile.lifetime).replace(microsecond=0),
                        self._issuing_not_after)
        # the signer derives notAfter from the lifetime: make it land exactly here
        return Window(replace(profile, lifetime=not_after - not_before), not_before, not_after)

    def _claim_keys(
        self,
        uow: PkiUnitOfWork,
        items: Sequence[tuple[Principal, IssueRequest]],
        checked: list[Checked],
        results: list[CertificateRecord | IamError | None],
    ) -> list[Checked]:
        """Refuse shared or replayed keys (one query for the batch), then run the hooks."""
        holders: dict[str, list[str | None]] = {}
        for key_hash, device_id in uow.certificates.key_holders([c.key_hash for c in checked]):
            holders.setdefault(key_hash, []).append(device_id)
        accepted: list[Checked] = []
        for item in checked:
            request = items[item.index][1]
            try:
                for other in holders.get(item.key_hash, ()):
                    if other != item.device.id or request.fresh_key:
                        raise Conflict(
                            "this public key is already certified "
                            f"({'for this device' if other == item.device.id else 'elsewhere'}"
                            "): a replayed request or a shared key; generate a new key"
                        )
                if request.on_reserve is not None:
                    request.on_reserve(uow, item.device)
            except Exception as e:
                results[item.index] = contained(e, _ONE)
                continue
            # a later request of this batch with the same key sees this one
            holders.setdefault(item.key_hash, []).append(item.device.id)
            accepted.append(item)
        return accepted

    def _reserve_serials(self, uow: PkiUnitOfWork, accepted: list[Checked], now: datetime
                         ) -> list[Reserved]:
        """Reserve a fresh serial for each request (G1): drawn distinct within the batch,
        stored in one statement, drawn again for those the issuer had used already."""
        serials = [self._serials() for _ in range(len(accepted))]
        records: dict[int, CertificateRecord] = {}
        pending = list(range(len(accepted)))
        for attempt in range(SERIAL_RETRIES):
            waiting = set(pending)
            seen = {serials[i] for i in range(len(serials)) if i not in waiting}
            fresh: list[int] = []
            clashes: list[int] = []
            for i in pending:
                (clashes if serials[i] in seen else fresh).append(i)
                seen.add(serials[i])
            for i in fresh:
                records[i] = self._record(accepted[i], serials[i], now)
            used = uow.certificates.reserve_many([records[i] for i in fresh]) if fresh else set()
            clashes = sorted(clashes + [i for i in fresh if serials[i] in used])
            if not clashes:
                return [Reserved(item, records[i]) for i, item in enumerate(accepted)]
            if attempt < SERIAL_RETRIES - 1:
                for i in clashes:
                    serials[i] = self._serials()
                pending = clashes
        # ~2^-159 per draw: a source this unlucky is broken; refusing the whole batch
        # (the transaction rolls back) keeps G1 and leaves nothing half-written
        raise SerialInUse(f"{len(clashes)} freshly drawn serial(s) already in use")

    def _record(self, item: Checked, serial: int, now: datetime) -> CertificateRecord:
        device = item.device
        return CertificateRecord(
            issuer_id=self._issuing_id,
            serial=serial,
            device_id=device.id,
            org_unit_id=device.org_unit_id,
            org_path=device.org_path,
            profile=item.window.profile.name,
            subject=f"CN={device.id}",
            not_before=item.window.not_before,
            not_after=item.window.not_after,
            status=CertificateStatus.RESERVED,
            fingerprint_sha256=None,
            pem=None,
            created_at=now,
            public_key_sha256=item.key_hash,
        )

    # -- signing and completion --------------------------------------------------------

    def _sign_each(self, reserved: list[Reserved],
                   results: list[CertificateRecord | IamError | None]
                   ) -> list[tuple[Reserved, tuple[str, str]]]:
        """Sign every reserved certificate; one that fails leaves its serial reserved (G1)
        and fails its request alone."""
        signed = []
        for item in reserved:
            try:
                signed.append((item, self._sign(item)))
            except Exception as e:
                results[item.checked.index] = contained(e, _ONE)
        return signed

    def _sign(self, item: Reserved) -> tuple[str, str]:
        """Sign a reserved certificate: its PEM and SHA-256 fingerprint."""
        record = item.record
        checked = item.checked
        der = self._leaf.issue_der(
            checked.public_key, checked.identity, checked.window.profile, record.serial,
            record.not_before, spki_der=checked.spki_der)
        return pem_certificate(der), hashlib.sha256(der).hexdigest()

def pem_certificate(der: bytes) -> str:
    """RFC 7468 PEM of a DER certificate, byte for byte what ``public_bytes(PEM)`` gives."""
    text = base64.b64encode(der).decode()
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
