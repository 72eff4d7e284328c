"""Issuing-CA rotation and issuing-CA compromise (``docs/ca-rotation.md``).

``rotate`` puts a new issuing CA (and its OCSP responder) under the same root, its key
made where the CA keys live; new certificates come from it at once and the CA before it
retires: still trusted for what it signed, its CRL published and its OCSP answered.

``revoke`` is the compromise playbook: the root's CRL lists the issuing CA, a new one
takes over if it was the active one, and every certificate it signed is revoked in
batches (one transaction each, one change per certificate: OCSP, the PDP, the broker's
kick and CRL follow the feed exactly as for a single revocation, G3).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import CertificateRevoked, IssuingCasChanged
from iotiam.clock import Clock
from iotiam.errors import Conflict, Forbidden, InvalidInput, NotFound
from iotiam.kernel import ROOT_ORG_ID, ROOT_PATH, Principal, Role, Transactions
from iotiam.pki.authority import issuing_certificate, responder_certificate
from iotiam.pki.ca_set import CaState, ca_id_of
from iotiam.pki.models import (
    CaRole,
    CertificateRecord,
    CertificateStatus,
    RevocationReason,
    revocation_counter,
    serial_hex,
)
from iotiam.pki.ports import (
    CaKeyring,
    CaRotationUnitOfWork,
    SerialSource,
    SessionCount,
    SignedCertificate,
    StoredCa,
)
from iotiam.pki.service import Pki
from iotiam.pki.signer import Signer

#: certificates revoked per transaction when an issuing CA is compromised
BATCH_CERTIFICATES = 500
_TICK = timedelta(milliseconds=1)


@dataclass(frozen=True)
class CaSummary:
    """One CA as ``iotiam ca list`` shows it."""

    id: str
    role: str
    state: str
    subject: str
    serial: str
    not_before: datetime
    not_after: datetime
    #: issued certificates not expired yet (None for the root)
    live_certificates: int | None
    #: ``database`` (encrypted there) or the key's PKCS#11 URI
    key: str


@dataclass(frozen=True)
class RotationReport:
    """What a rotation did (or, dry, would do)."""

    dry_run: bool
    previous: str
    new: str | None
    subject: str
    #: certificates of the previous CA that move to the new one at their next renewal
    moving: int


@dataclass(frozen=True)
class ActiveIssuer:
    """What agents ask (``GET /ca/issuing.json``): the active issuing CA, and whether
    certificates of the others are to be renewed now rather than at their time."""

    id: str
    subject: str
    migrate: bool


@dataclass(frozen=True)
class CompromiseReport:
    """What revoking an issuing CA did (or, dry or drilled, would do)."""

    ca_id: str
    reason: str
    dry_run: bool
    certificates: int
    devices: int
    #: devices with a live session on the managed broker (None: not known here)
    sessions: int | None
    #: the issuing CA that takes over (None: the revoked one was not the active one)
    successor: str | None
    drill: bool = False
    #: a drill: certificates of the CA still live afterwards (0: all taken away)
    left_live: int | None = None


class CaRotation:
    """Rotates the issuing CA and revokes a compromised one."""

    def __init__(self, uow: Transactions[CaRotationUnitOfWork], clock: Clock, audit: Auditor,
                 pki: Pki, keyring: CaKeyring, serials: SerialSource,
                 sessions: SessionCount, *, batch: int = BATCH_CERTIFICATES) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._pki = pki
        self._keyring = keyring
        self._serials = serials
        self.sessions = sessions
        self._batch = batch
        # one rotation or revocation at a time in this process (two would both name
        # their new CA "Issuing CA <n>"; across processes the subject check refuses it)
        self._lock = threading.Lock()

    # -- list ----------------------------------------------------------------------------

    def list_cas(self, actor: Principal) -> list[CaSummary]:
        """The root and every issuing CA with its state and live certificates."""
        actor.require(Role.OPERATOR, "listing the CAs")
        cas, now = self._pki.cas, self._clock.now()
        with self._uow.reading() as uow:
            stored = {c.id: c for c in uow.cas.list_all()}
            counts = {i: uow.certificates.count_live(i, now) for i in cas.issuing_ids()}
        out = [_summary(stored.get(cas.root_id), cas.root.certificate, cas.root_id, "root",
                        "active", None)]
        for ca_id in cas.issuing_ids():
            out.append(_summary(stored.get(ca_id), cas.material(ca_id).certificate, ca_id,
                                "issuing", str(cas.state_of(ca_id)), counts[ca_id]))
        return out

    # -- rotation ------------------------------------------------------------------------

    def rotate(self, actor: Principal, *, dry_run: bool = False) -> RotationReport:
        """A new issuing CA under the same root takes over issuance now."""
        draft = AuditDraft(tag=AuditTag.CA_CHANGE_REFUSED, actor=actor.name,
                           org_path=actor.org_path, subject="ca:rotate")
        with self._audit.refusals(draft):
            actor.require(Role.OPERATOR if dry_run else Role.ADMIN, "rotating the issuing CA")
            self._require_root_org(actor)
            with self._lock:
                return self._rotate(actor, dry_run=dry_run, why="rotation")

    def _rotate(self, actor: Principal, *, dry_run: bool, why: str) -> RotationReport:
        cas, now = self._pki.cas, self._clock.now()
        number = len(cas.issuing_ids()) + 1
        organization = _organization(cas.issuing.certificate)
        common_name = f"{organization} Issuing CA {number}" if organization \
            else f"Issuing CA {number}"
        with self._uow.reading() as uow:
            moving = uow.certificates.count_live(cas.issuing_id, now)
            old_issuing = uow.cas.get(cas.issuing_id)
            old_responder = uow.cas.active(CaRole.OCSP_RESPONDER)
        if old_issuing is None or old_responder is None:
            raise NotFound("the active issuing CA is not in the database")
        if dry_run:
            return RotationReport(True, cas.issuing_id, None, common_name, moving)
        label = secrets.token_hex(4)
        # where the CA keys live: the same PKCS#11 token, or encrypted in the database
        signer, key_field = self._keyring.new_key(old_issuing, f"issuing-ca-{label}")
        certificate = self._certified(signer, common_name, organization, now)
        serial = certificate.serial_number
        responder_signer, responder_field = self._keyring.new_key(
            old_responder, f"ocsp-responder-{label}")
        responder = responder_certificate(
            responder_signer.public_key(), issuer=_Held(certificate, signer),
            common_name=f"{common_name[:48]} OCSP Responder", now=now,
            serial=self._serials())
        new_id = ca_id_of(CaRole.ISSUING, certificate)
        # the newest of a role is the active one: strictly after those before it
        stored_at = max(now, old_issuing.created_at + _TICK, old_responder.created_at + _TICK)
        with self._uow() as uow:
            if any(_subject(c) == certificate.subject for c in uow.cas.list_all()
                   if c.role is CaRole.ISSUING):
                raise Conflict("another rotation made an issuing CA of this name meanwhile; "
                               "see `iotiam ca list`")
            uow.certificates.complete([SignedCertificate(
                cas.root_id, serial, _pem(certificate), _fingerprint(certificate), None)])
            uow.cas.add(StoredCa(new_id, CaRole.ISSUING, _pem(certificate), key_field,
                                 stored_at))
            uow.cas.add(StoredCa(ca_id_of(CaRole.OCSP_RESPONDER, responder),
                                 CaRole.OCSP_RESPONDER, _pem(responder), responder_field,
                                 stored_at))
            uow.changes.record(IssuingCasChanged(new_id, "rotated"))
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.CA_ROTATED, actor=actor.name, org_path=ROOT_PATH,
                subject=f"ca:{new_id}",
                details={"previous": cas.issuing_id, "why": why,
                         "subject": certificate.subject.rfc4514_string(),
                         "serial": serial_hex(serial), "moving": moving,
                         "key": key_field if key_field.startswith("pkcs11:") else "database"}))
        self._pki.use_cas(self._keyring.load())
        return RotationReport(False, cas.issuing_id, new_id,
                              certificate.subject.rfc4514_string(), moving)

    def _certified(self, signer: Signer, common_name: str, organization: str,
                   now: datetime) -> x509.Certificate:
        """The new issuing CA's certificate, its serial on record under the root before
        the root signs it (G5, G1)."""
        cas, serial = self._pki.cas, self._serials()
        placeholder = CertificateRecord(
            issuer_id=cas.root_id, serial=serial, device_id=None, org_unit_id=ROOT_ORG_ID,
            org_path=ROOT_PATH, profile="issuing-ca", subject=f"CN={common_name}",
            not_before=now, not_after=cas.root.certificate.not_valid_after_utc,
            status=CertificateStatus.RESERVED, fingerprint_sha256=None, pem=None,
            created_at=now)
        with self._uow() as uow:
            if uow.certificates.reserve_many([placeholder]):
                raise Conflict("the serial drawn for the new issuing CA is taken; try again")
        return issuing_certificate(signer.public_key(), root=cas.root,
                                   common_name=common_name, organization=organization,
                                   now=now, serial=serial)

    # -- moving devices ------------------------------------------------------------------

    def migrate(self, actor: Principal) -> RotationReport:
        """Ask every agent whose certificate another issuing CA signed to renew now (it
        learns at its next look at ``/ca/issuing.json``, spread by jitter), instead of
        at its usual time."""
        draft = AuditDraft(tag=AuditTag.CA_CHANGE_REFUSED, actor=actor.name,
                           org_path=actor.org_path, subject="ca:migrate")
        with self._audit.refusals(draft):
            actor.require(Role.ADMIN, "moving devices to the active issuing CA")
            self._require_root_org(actor)
            cas, now = self._pki.cas, self._clock.now()
            with self._uow() as uow:
                moving = sum(uow.certificates.count_live(i, now) for i, _ in
                             cas.trusted_issuers() if i != cas.issuing_id)
                uow.counters.next(_migrate_counter(cas.issuing_id))
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.CA_MIGRATION_REQUESTED, actor=actor.name,
                    org_path=ROOT_PATH, subject=f"ca:{cas.issuing_id}",
                    details={"moving": moving}))
        return RotationReport(False, cas.issuing_id, cas.issuing_id,
                              cas.issuing.certificate.subject.rfc4514_string(), moving)

    def active_issuer(self) -> ActiveIssuer:
        """The active issuing CA and whether a migration to it was asked for."""
        cas = self._pki.cas
        with self._uow.reading() as uow:
            migrate = uow.counters.current(_migrate_counter(cas.issuing_id)) > 0
        return ActiveIssuer(cas.issuing_id, cas.issuing.certificate.subject.rfc4514_string(),
                            migrate)

    # -- compromise ----------------------------------------------------------------------

    def revoke(self, actor: Principal, ca_id: str, reason: str = "keyCompromise", *,
               dry_run: bool = False) -> CompromiseReport:
        """Revoke an issuing CA and everything it signed; a new one takes over if it was
        the active one. ``dry_run``: what would be taken away, changing nothing."""
        draft = AuditDraft(tag=AuditTag.CA_CHANGE_REFUSED, actor=actor.name,
                           org_path=actor.org_path, subject=f"ca:{ca_id[:64]}:revoke")
        with self._audit.refusals(draft):
            actor.require(Role.OPERATOR if dry_run else Role.ADMIN, "revoking an issuing CA")
            self._require_root_org(actor)
            parsed, state = self._revocable(ca_id, reason)
            live = self._live(ca_id)
            devices = sorted({d for _, d in live if d is not None})
            if dry_run:
                return CompromiseReport(ca_id, str(parsed), True, len(live), len(devices),
                                        self.sessions.connected(devices), None)
            sessions = self.sessions.connected(devices)
            with self._lock:
                self._revocable(ca_id, reason)  # another call may have revoked it meanwhile
                successor = None
                if state is CaState.ACTIVE:
                    successor = self._rotate(actor, dry_run=False, why=f"{ca_id} revoked").new
                with self._uow() as uow:
                    self._revoke_ca(uow, actor, ca_id, parsed, len(live), len(devices))
                revoked = self._revoke_signed(actor, ca_id, parsed)
                self._pki.use_cas(self._keyring.load())
        devices_hit = sorted({d for _, d in revoked if d is not None})
        return CompromiseReport(ca_id, str(parsed), False, len(revoked), len(devices_hit),
                                sessions, successor)

    def _revoke_signed(self, actor: Principal, ca_id: str, reason: RevocationReason
                       ) -> list[tuple[int, str | None]]:
        """Every live certificate of the CA, batch by batch; then read once more, for a
        batch that was being signed when the CA stopped issuing."""
        revoked: list[tuple[int, str | None]] = []
        number = 0
        for _ in range(2):
            live = self._live(ca_id)
            for start in range(0, len(live), self._batch):
                number += 1
                with self._uow() as uow:
                    self._revoke_batch(uow, actor, ca_id, number,
                                       live[start:start + self._batch], reason)
            revoked += live
        return revoked

    def drill(self, actor: Principal, ca_id: str, reason: str = "keyCompromise"
              ) -> CompromiseReport:
        """Rehearse ``revoke``: the CA's and its certificates' revocations written in one
        transaction that is rolled back (no key is made, nothing is published); only the
        drill is audited."""
        actor.require(Role.ADMIN, "drilling an issuing-CA compromise")
        self._require_root_org(actor)
        parsed, state = self._revocable(ca_id, reason)
        outcome: list[tuple[int, int, int]] = []
        try:
            with self._uow() as uow:
                live = uow.certificates.live_issued_by(ca_id, self._clock.now())
                devices = {d for _, d in live if d is not None}
                self._revoke_ca(uow, actor, ca_id, parsed, len(live), len(devices),
                                audited=False)
                for start in range(0, len(live), self._batch):
                    self._revoke_batch(uow, actor, ca_id, 0, live[start:start + self._batch],
                                       parsed, audited=False)
                left = uow.certificates.count_live(ca_id, self._clock.now())
                outcome.append((len(live), len(devices), left))
                raise _RolledBack
        except _RolledBack:
            pass
        certificates, devices_count, left = outcome[0]
        report = CompromiseReport(
            ca_id, str(parsed), True, certificates, devices_count,
            self.sessions.connected(sorted(devices)), "a new issuing CA"
            if state is CaState.ACTIVE else None, drill=True, left_live=left)
        self._audit.record(AuditDraft(
            tag=AuditTag.CA_COMPROMISE_DRILLED, actor=actor.name, org_path=ROOT_PATH,
            subject=f"ca:{ca_id}", details={"reason": report.reason,
                                            "certificates": certificates,
                                            "devices": devices_count, "left_live": left}))
        return report

    def _revocable(self, ca_id: str, reason: str) -> tuple[RevocationReason, CaState]:
        parsed = RevocationReason.parse(reason)
        cas = self._pki.cas
        if ca_id == cas.root_id:
            raise InvalidInput("the root CA cannot be revoked here: a new root is a new "
                               "installation (`iotiam init` in a new data directory)")
        if ca_id not in cas.issuing_ids():
            raise NotFound(f"no issuing CA {ca_id!r} (see `iotiam ca list`)")
        state = cas.state_of(ca_id)
        if state is CaState.REVOKED:
            raise Conflict(f"the issuing CA {ca_id} is revoked already; revocation is final")
        return parsed, state

    def _live(self, ca_id: str) -> list[tuple[int, str | None]]:
        with self._uow.reading() as uow:
            return uow.certificates.live_issued_by(ca_id, self._clock.now())

    def _revoke_ca(self, uow: CaRotationUnitOfWork, actor: Principal, ca_id: str,
                   reason: RevocationReason, certificates: int, devices: int, *,
                   audited: bool = True) -> None:
        """The root's CRL lists the issuing CA from this transaction on (RFC 5280 §5.3.1:
        its reason, e.g. keyCompromise or cACompromise)."""
        cas, now = self._pki.cas, self._clock.now()
        certificate = cas.material(ca_id).certificate
        serial = certificate.serial_number
        if uow.certificates.get(cas.root_id, serial) is None:
            # an issuing CA made by `init` was never on record as the root's certificate
            uow.certificates.reserve_many([CertificateRecord(
                issuer_id=cas.root_id, serial=serial, device_id=None, org_unit_id=ROOT_ORG_ID,
                org_path=ROOT_PATH, profile="issuing-ca",
                subject=certificate.subject.rfc4514_string(),
                not_before=certificate.not_valid_before_utc,
                not_after=certificate.not_valid_after_utc, status=CertificateStatus.RESERVED,
                fingerprint_sha256=None, pem=None, created_at=now)])
            uow.certificates.complete([SignedCertificate(
                cas.root_id, serial, _pem(certificate), _fingerprint(certificate), None)])
        uow.certificates.revoke(cas.root_id, serial, now, reason)
        uow.counters.next(revocation_counter(cas.root_id))
        uow.changes.record(CertificateRevoked(serial, cas.root_id, None))
        uow.changes.record(IssuingCasChanged(ca_id, "revoked"))
        if audited:
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.CA_REVOKED, actor=actor.name, org_path=ROOT_PATH,
                subject=f"ca:{ca_id}",
                details={"reason": str(reason), "serial": serial_hex(serial),
                         "root": cas.root_id, "certificates": certificates,
                         "devices": devices}))

    def _revoke_batch(self, uow: CaRotationUnitOfWork, actor: Principal, ca_id: str,
                      number: int, batch: Sequence[tuple[int, str | None]],
                      reason: RevocationReason, *, audited: bool = True) -> None:
        now = self._clock.now()
        uow.certificates.revoke_many(ca_id, [s for s, _ in batch], now, reason)
        uow.counters.next(revocation_counter(ca_id))
        for serial, device_id in batch:
            uow.changes.record(CertificateRevoked(serial, ca_id, device_id))
        devices = sorted({d for _, d in batch if d is not None})
        for device_id in devices:
            # tokens got with a certificate of the compromised CA end with it
            uow.devices.end_tokens(device_id, now)
        if audited:
            self._audit.append(uow, AuditDraft(
                tag=AuditTag.CA_CERTIFICATES_REVOKED, actor=actor.name, org_path=ROOT_PATH,
                subject=f"ca:{ca_id}:{number}",
                details={"reason": str(reason), "certificates": len(batch),
                         "devices": len(devices),
                         "first": serial_hex(batch[0][0]), "last": serial_hex(batch[-1][0])}))

    @staticmethod
    def _require_root_org(actor: Principal) -> None:
        if actor.org_path != ROOT_PATH:
            # G9: the CAs serve every tenant; a tenant's admin does not change them
            raise Forbidden("only an admin of the root org unit changes the CAs")


def _migrate_counter(issuing_id: str) -> str:
    return f"ca-migrate:{issuing_id}"


class _RolledBack(Exception):
    """Ends a drill's transaction: everything it wrote is rolled back."""


@dataclass(frozen=True)
class _Held:
    """A CA certificate with the signer of its key (``SigningCa``)."""

    certificate: x509.Certificate
    signer: Signer


def _summary(stored: StoredCa | None, cert: x509.Certificate, ca_id: str, role: str,
             state: str, live: int | None) -> CaSummary:
    key = "database"
    if stored is not None and stored.key_uri is not None:
        key = stored.key_uri
    return CaSummary(ca_id, role, state, cert.subject.rfc4514_string(),
                     serial_hex(cert.serial_number), cert.not_valid_before_utc,
                     cert.not_valid_after_utc, live, key)


def _subject(stored: StoredCa) -> x509.Name:
    return x509.load_pem_x509_certificate(stored.certificate_pem.encode()).subject


def _organization(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else ""


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()

