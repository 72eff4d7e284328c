"""PKI use cases: issue, look up, revoke, publish CRLs, answer OCSP.

Issuance itself (G1, G5: reserve, sign, store) lives in ``issuing.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import CertificateRevoked, Published
from iotiam.clock import Clock
from iotiam.errors import Conflict, Forbidden, IamError, InvalidInput, NotFound
from iotiam.inventory.models import Device, DeviceType
from iotiam.kernel import SYSTEM, Principal, Role, Transactions
from iotiam.pki.authority import PublicUrls
from iotiam.pki.ca_set import CaSet
from iotiam.pki.crl import CrlEntryCache, sign_crl_entries
from iotiam.pki.csr import validate_csr
from iotiam.pki.issuing import (
    CertificateIssuance,
    IssueBatch,
    device_identity,
    public_key_sha256,
)
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import (
    CertificateRecord,
    CertificateStatus,
    IssueRequest,
    PkiConfig,
    ReservationHook,
    RevocationReason,
    parse_serial,
    revocation_counter,
    serial_hex,
)
from iotiam.pki.ocsp import UNAUTHORIZED, CertStatusInfo, OcspResponder, StatusLookup
from iotiam.pki.ports import (
    CertificateStatusReader,
    LeafSigner,
    PkiUnitOfWork,
    ProofChecks,
    SerialSource,
    StoredCrl,
)
from iotiam.pki.profiles import get_profile
from iotiam.pki.signer import Signer

#: makes the leaf signer of the issuing CA (``LeafBuilder``, or a faster one)
LeafSigners = Callable[[Signer, x509.Certificate, PublicUrls], LeafSigner]


def public_urls(base_url: str, ca_id: str) -> PublicUrls:
    """The plain-HTTP URLs relying parties use for a CA (AIA and CDP)."""
    return PublicUrls(
        ocsp_url=f"{base_url}/ocsp",
        ca_issuers_url=f"{base_url}/ca/{ca_id}.crt",
        crl_url=f"{base_url}/crl/{ca_id}.crl",
    )


def crl_number_counter(issuer_id: str) -> str:
    """Counter giving each CRL of an issuer its number (G2)."""
    return f"crl-number:{issuer_id}"


class Pki:
    """The built-in CA: issuance, revocation, CRL and OCSP."""

    def __init__(
        self,
        uow: Transactions[PkiUnitOfWork],
        clock: Clock,
        audit: Auditor,
        config: PkiConfig,
        cas: CaSet,
        serials: SerialSource,
        status_reader: CertificateStatusReader,
        *,
        leaf_signers: LeafSigners = LeafBuilder,
        proofs: ProofChecks | None = None,
        batching: Callable[[IssueBatch], IssueBatch] | None = None,
        reload: Callable[[], CaSet] | None = None,
    ) -> None:
        """``leaf_signers``, ``proofs`` and ``batching`` are where speed plugs in
        (``iotiam.fast``, wired by ``bootstrap.py``): what signs a leaf, whether proofs
        of possession are checked on another core, and how calls from many threads
        reach :meth:`CertificateIssuance.issue_many` (combined into shared batches, or
        each on its own). ``reload`` reads the CAs from the database again (after a
        rotation, ``cas_changed``)."""
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._config = config
        self._status = status_reader
        self._leaf_signers = leaf_signers
        self._serials = serials
        self._proofs = proofs
        self._reload = reload
        self._crl_lock = threading.Lock()
        self._crl_entries: dict[str, CrlEntryCache] = {}
        self.use_cas(cas)
        issue_many = self._issue_many
        self._issue = batching(issue_many) if batching is not None else issue_many

    def use_cas(self, cas: CaSet) -> None:
        """Sign and answer with ``cas`` from now on (a rotation or a revoked issuing CA,
        in this process or, through the change feed, in another): a batch already being
        signed finishes under the CA it started with."""
        self._issuance = CertificateIssuance(
            self._uow, self._clock, self._audit, self._config, cas.issuing_id, cas.issuing,
            self._leaf_signers(cas.issuing.signer, cas.issuing.certificate,
                               public_urls(self._config.public_base_url, cas.issuing_id)),
            self._serials,
            self._proofs,
        )
        self._ocsp: list[tuple[str, OcspResponder, StatusLookup]] = [
            (issuer_id, OcspResponder(issuing.certificate, responder.certificate,
                                      responder.signer, validity=self._config.ocsp_validity),
             self._status_lookup(issuer_id))
            for issuer_id, issuing, responder in cas.responders()]
        self.cas = cas

    def cas_changed(self, published: Published) -> None:
        """An issuing CA was rotated in or revoked (in any process): load them again."""
        if self._reload is not None:
            self.use_cas(self._reload())

    def _issue_many(self, items: Sequence[tuple[Principal, IssueRequest]]
                    ) -> list[CertificateRecord | IamError]:
        return self._issuance.issue_many(items)

    # -- issuance ----------------------------------------------------------------------

    def issue_certificate(
        self,
        actor: Principal,
        *,
        device_id: str,
        csr_data: bytes,
        profile: str | None = None,
        fresh_key: bool = False,
        on_reserve: ReservationHook | None = None,
        also_audit: Callable[[CertificateRecord], AuditDraft] | None = None,
        also_refused: Callable[[IamError], AuditDraft] | None = None,
    ) -> CertificateRecord:
        """Certify a device's key; the name comes from the inventory, the key from the CSR.

        A key certified for another device is always refused (a shared identity);
        ``fresh_key`` also refuses one this device already has (first contact, where a
        known key means a replayed request). ``on_reserve`` runs inside the reservation
        transaction (e.g. to redeem a claim token atomically with it).
        """
        return self.issue(actor, IssueRequest(device_id, csr_data, profile, fresh_key,
                                              on_reserve, also_audit, also_refused))

    def issue(self, actor: Principal, request: IssueRequest) -> CertificateRecord:
        """``issue_certificate`` with the request spelled as a value."""
        (result,) = self._issue([(actor, request)])
        if isinstance(result, IamError):
            raise result
        return result

    def issue_certificates(
        self, actor: Principal, requests: Sequence[IssueRequest]
    ) -> list[CertificateRecord | IamError]:
        """Certify many keys in two transactions; a refused request yields its error."""
        return self._issue([(actor, request) for request in requests])

    def issue_batch(self, items: Sequence[tuple[Principal, IssueRequest]]
                    ) -> list[CertificateRecord | IamError]:
        """One batch as it comes, each request with its own actor, in two transactions,
        not combined with other callers': for a combiner that gathers requests itself
        (the API's, ``group_commits.certificate_batches``)."""
        return self._issuance.issue_many(items)

    def issue_batches(
        self, first: Sequence[tuple[Principal, IssueRequest]],
        following: Callable[[], Sequence[tuple[Principal, IssueRequest]]],
        answer: Callable[[list[CertificateRecord | IamError] | Exception], None],
    ) -> None:
        """Batch after batch as they come (``first``, then what ``following()`` gives until
        it gives none), each answered in order, one commit per batch under load: for a
        combiner that gathers requests itself (``group_commits.certificate_batches``)."""
        self._issuance.issue_stream(first, following, answer)

    def check_issuable(
        self, csr: x509.CertificateSigningRequest, device: Device, device_type: DeviceType,
        profile: str | None, *, admin: bool,
    ) -> None:
        """What ``issue_certificate(fresh_key=True)`` would refuse, checked up front (for a
        device first seen at enrollment, before it is stored)."""
        chosen = get_profile(profile or device_type.certificate_profile)
        if chosen.server_auth and chosen.name != device_type.certificate_profile and not admin:
            raise Forbidden(
                f"the {chosen.name!r} profile needs an admin for a {device_type.name} device")
        key = validate_csr(csr, device_identity(device))
        with self._uow.reading() as uow:
            certified = uow.certificates.with_public_key(public_key_sha256(key))
        if certified:
            raise Conflict("this public key is already certified (a replayed request or a "
                           "shared key); generate a new key")

    @property
    def issuing_id(self) -> str:
        """The id of the CA that certifies devices."""
        return self.cas.issuing_id

    @property
    def issuing_certificate(self) -> x509.Certificate:
        """The certificate of the CA that certifies devices."""
        return self.cas.issuing.certificate

    def issuer_named(self, name: x509.Name) -> str | None:
        """The id of the issuing CA (active, retiring or revoked) named ``name``."""
        return self.cas.issuer_named(name)

    def trusted_issuer_of(self, cert: x509.Certificate) -> str | None:
        """The id of the trusted (not revoked) issuing CA that signed ``cert``."""
        return self.cas.trusted_issuer_of(cert)

    # -- lookup ------------------------------------------------------------------------

    def get_certificate(self, actor: Principal, serial_text: str) -> CertificateRecord:
        """One certificate by serial (hex, colons allowed), inside the caller's subtree."""
        serial = parse_serial(serial_text)
        with self._uow.reading() as uow:
            return self._visible_certificate(uow, actor, serial)

    def list_certificates(
        self,
        actor: Principal,
        *,
        device_id: str | None = None,
        status: CertificateStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CertificateRecord]:
        """Certificates in the caller's subtree, newest first."""
        if not 1 <= limit <= 1000 or offset < 0:
            raise InvalidInput("limit must be 1-1000 and offset >= 0")
        with self._uow.reading() as uow:
            return uow.certificates.page(
                org_path=actor.org_path, device_id=device_id, status=status,
                limit=limit, offset=offset,
            )

    @staticmethod
    def _visible_certificate(
        uow: PkiUnitOfWork, actor: Principal, serial: int
    ) -> CertificateRecord:
        found = [c for c in uow.certificates.find_by_serial(serial) if actor.sees(c.org_path)]
        if not found:
            raise NotFound(f"certificate {serial_hex(serial)} not found")
        if len(found) > 1:
            raise Conflict(f"serial {serial_hex(serial)} exists under several issuers")
        return found[0]

    # -- revocation --------------------------------------------------------------------

    def revoke_certificate(
        self, actor: Principal, serial_text: str, reason: str = "unspecified"
    ) -> CertificateRecord:
        """Revoke one certificate; final (G4), visible to OCSP when this returns (G3)."""
        draft = AuditDraft(
            tag=AuditTag.REVOCATION_REFUSED, actor=actor.name, org_path=actor.org_path,
            subject=f"certificate:{serial_text[:64]}",
        )
        with self._audit.refusals(draft):
            actor.require(Role.OPERATOR, "revoking certificates")
            parsed_reason = RevocationReason.parse(reason)
            serial = parse_serial(serial_text)
            with self._uow() as uow:
                record = self._visible_certificate(uow, actor, serial)
                revoked = self._revoke(uow, actor, record, parsed_reason)
        return revoked

    def revoke_device(
        self, actor: Principal, device_id: str, reason: str = "unspecified"
    ) -> list[CertificateRecord]:
        """Revoke every live certificate of a device."""
        draft = AuditDraft(
            tag=AuditTag.REVOCATION_REFUSED, actor=actor.name, org_path=actor.org_path,
            subject=f"device:{device_id}",
        )
        with self._audit.refusals(draft):
            actor.require(Role.OPERATOR, "revoking certificates")
            parsed_reason = RevocationReason.parse(reason)
            with self._uow() as uow:
                device = uow.devices.get(device_id)
                if device is None or not actor.sees(device.org_path):
                    raise NotFound(f"device {device_id!r} not found")
                revoked = [
                    self._revoke(uow, actor, record, parsed_reason)
                    for record in self._live_certificates(uow, device.id)
                ]
                # tokens it got with another key (a registered JWK) end too, for good
                uow.devices.end_tokens(device.id, self._clock.now())
        return revoked

    def revoke_device_credentials(
        self, uow: PkiUnitOfWork, actor: Principal, device: Device, reason: str
    ) -> int:
        """Inside a caller's transaction (e.g. decommission): revoke all live certificates."""
        parsed = RevocationReason.parse(reason)
        count = 0
        for record in self._live_certificates(uow, device.id):
            self._revoke(uow, actor, record, parsed)
            count += 1
        uow.devices.end_tokens(device.id, self._clock.now())
        return count

    def _live_certificates(self, uow: PkiUnitOfWork, device_id: str) -> list[CertificateRecord]:
        now = self._clock.now()
        return [
            c for c in uow.certificates.for_device(device_id)
            # a reserved serial was never handed out: nothing to revoke
            if c.status is CertificateStatus.ISSUED and c.not_after > now
        ]

    def _revoke(
        self, uow: PkiUnitOfWork, actor: Principal, record: CertificateRecord,
        reason: RevocationReason,
    ) -> CertificateRecord:
        if record.status is CertificateStatus.REVOKED:
            at = record.revoked_at.isoformat() if record.revoked_at else "earlier"
            raise Conflict(
                f"certificate {record.serial_hex} was already revoked ({at}, "
                f"{record.revocation_reason}); revocation is final"
            )
        now = self._clock.now()
        uow.certificates.revoke(record.issuer_id, record.serial, now, reason)
        uow.counters.next(revocation_counter(record.issuer_id))
        uow.changes.record(CertificateRevoked(record.serial, record.issuer_id, record.device_id))
        self._audit.append(
            uow,
            AuditDraft(
                tag=AuditTag.CERTIFICATE_REVOKED,
                actor=actor.name,
                org_path=record.org_path,
                subject=f"device:{record.device_id}" if record.device_id
                else f"certificate:{record.serial_hex}",
                details={"serial": record.serial_hex, "issuer": record.issuer_id,
                         "reason": str(reason)},
            ),
        )
        return replace(record, status=CertificateStatus.REVOKED, revoked_at=now,
                       revocation_reason=reason)

    # -- CRL ---------------------------------------------------------------------------

    def current_crl(self, issuer_id: str) -> StoredCrl:
        """The newest CRL, rebuilt first if a revocation is missing or nextUpdate is near."""
        self.cas.material(issuer_id)
        if (fresh := self._fresh_crl(issuer_id)) is not None:
            return fresh
        with self._crl_lock:
            # another thread may have built it while we waited
            if (fresh := self._fresh_crl(issuer_id)) is not None:
                return fresh
            return self._publish(issuer_id)

    def crl_version(self, issuer_id: str) -> tuple[int, int]:
        """(newest CRL number, revocations counted): cheap, changes when the CRL does."""
        with self._uow.reading() as uow:
            info = uow.crls.latest_info(issuer_id)
            watermark = uow.counters.current(revocation_counter(issuer_id))
        return (info.number if info else 0, watermark)

    def refresh_crls(self) -> None:
        """Rebuild every CRL that is out of date (called by the scheduler)."""
        for issuer_id in self.cas.issuer_ids:
            self.current_crl(issuer_id)

    def _fresh_crl(self, issuer_id: str) -> StoredCrl | None:
        with self._uow.reading() as uow:
            info = uow.crls.latest_info(issuer_id)
            watermark = uow.counters.current(revocation_counter(issuer_id))
            if info is None or info.revocation_watermark < watermark:
                return None
            if info.next_update - self._clock.now() <= self._config.crl_refresh_margin:
                return None
            return uow.crls.latest(issuer_id)

    def _publish(self, issuer_id: str) -> StoredCrl:
        material = self.cas.material(issuer_id)
        with self._uow() as uow:
            # G2: the number comes from a database counter, consumed even if we crash
            number = uow.counters.next(crl_number_counter(issuer_id))
        now = self._clock.now()
        with self._uow.reading() as uow:
            # read the watermark first: a revocation racing us is then rebuilt again later
            watermark = uow.counters.current(revocation_counter(issuer_id))
            rows = uow.certificates.revocation_rows(
                issuer_id, expired_after=now - self._config.crl_expired_buffer
            )
        cache = self._crl_entries.setdefault(issuer_id, CrlEntryCache())
        entries = cache.entries(rows)
        crl = sign_crl_entries(
            signer=material.signer,
            issuer_cert=material.certificate,
            entries=entries,
            crl_number=number,
            this_update=now,
            next_update=now + self._config.crl_validity,
        )
        stored = StoredCrl(
            issuer_id=issuer_id,
            number=number,
            this_update=now,
            next_update=now + self._config.crl_validity,
            revocation_watermark=watermark,
            der=crl.public_bytes(serialization.Encoding.DER),
        )
        with self._uow() as uow:
            uow.crls.add(stored)
            self._audit.append(
                uow,
                AuditDraft(
                    tag=AuditTag.CRL_PUBLISHED,
                    actor=SYSTEM.name,
                    org_path=SYSTEM.org_path,
                    subject=f"crl:{issuer_id}:{number}",
                    details={"entries": len(entries), "next_update":
                             stored.next_update.isoformat()},
                ),
            )
        return stored

    # -- OCSP --------------------------------------------------------------------------

    def ocsp_response(self, request_der: bytes) -> bytes:
        """Answer an OCSP request (RFC 6960); status read from the database every time (G3).

        Each issuing CA has its own delegated responder (RFC 6960 §4.2.2.2); the one
        whose CA the request's CertID names answers, the active CA's asked first. A
        request naming none of them is ``unauthorized`` (RFC 5019 §2.2.3)."""
        now = self._clock.now()
        answer = UNAUTHORIZED
        for _, responder, lookup in self._ocsp:
            answer = responder.respond(request_der, lookup, now)
            if answer != UNAUTHORIZED:
                return answer
        return answer

    def forget_ocsp_response(self, published: Published) -> None:
        """Drop the cached OCSP answer of a revoked certificate (the status is read on
        every request anyway, G3; this only frees the stale entry at once)."""
        change = published.change
        if isinstance(change, CertificateRevoked):
            for issuer_id, responder, _ in self._ocsp:
                if issuer_id == change.issuer_id:
                    responder.forget(change.serial)

    def _status_lookup(self, issuer_id: str) -> StatusLookup:
        def lookup(serial: int) -> CertStatusInfo:
            return self._ocsp_status(issuer_id, serial)
        return lookup

    def _ocsp_status(self, issuer_id: str, serial: int) -> CertStatusInfo:
        found = self._status.status_of(issuer_id, serial)
        if found is None:
            return CertStatusInfo("unknown")
        status, revoked_at, reason = found
        if status is CertificateStatus.REVOKED:
            return CertStatusInfo("revoked", revoked_at, reason)
        if status is CertificateStatus.ISSUED:
            return CertStatusInfo("good")
        # a reserved serial was never handed out
        return CertStatusInfo("unknown")

    def now(self) -> datetime:
        """Current time of the service clock."""
        return self._clock.now()
