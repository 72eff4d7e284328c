"""Storage and outside systems the PKI needs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from cryptography import x509

from iotiam.audit.models import AuditDraft
from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.inventory.models import Device, DeviceType
from iotiam.inventory.ports import CredentialHolders, DeviceTypeStore
from iotiam.kernel import Principal
from iotiam.pki.ca_set import CaSet
from iotiam.pki.crl import RevocationRow
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import PublicKey
from iotiam.pki.models import (
    CaRole,
    CertificateProfile,
    CertificateRecord,
    CertificateStatus,
    IssueRequest,
    Revocation,
    RevocationReason,
)
from iotiam.pki.signer import Signer

#: a source of certificate serial numbers (G1: at least 64 random bits)
SerialSource = Callable[[], int]


@dataclass(frozen=True)
class SignedCertificate:
    """A signed certificate to store against its reservation."""

    issuer_id: str
    serial: int
    pem: str
    fingerprint_sha256: str
    #: the holder its reservation named (None: no device), whose standing moves with it
    device_id: str | None


@dataclass(frozen=True)
class StoredCa:
    """A key pair iotiam holds, with its key encrypted at rest.

    For a key held in a hardware module ``encrypted_key_pem`` is the key's PKCS#11 URI
    (RFC 7512, never with a PIN) instead: nothing of the key is stored (docs/hsm.md).
    """

    id: str
    role: CaRole
    certificate_pem: str
    encrypted_key_pem: str
    created_at: datetime

    @property
    def key_uri(self) -> str | None:
        """The PKCS#11 URI of a key held in a module, else ``None``."""
        value = self.encrypted_key_pem
        return value if value.startswith("pkcs11:") else None


@dataclass(frozen=True)
class StoredCrl:
    """A published CRL."""

    issuer_id: str
    number: int
    this_update: datetime
    next_update: datetime
    revocation_watermark: int
    der: bytes


@dataclass(frozen=True)
class CrlInfo:
    """A published CRL's metadata."""

    issuer_id: str
    number: int
    next_update: datetime
    revocation_watermark: int


class CaStore(Protocol):
    """CA certificates and their encrypted keys."""

    def add(self, ca: StoredCa) -> None:
        """Store a CA key pair."""
        ...

    def get(self, ca_id: str) -> StoredCa | None:
        """One by id."""
        ...

    def active(self, role: CaRole) -> StoredCa | None:
        """The newest key pair of a role."""
        ...

    def list_all(self) -> list[StoredCa]:
        """Every stored key pair."""
        ...


class CertificateStore(Protocol):
    """Issued certificates and revocations."""

    def taken_serials(self, issuer_id: str, serials: Sequence[int]) -> set[int]:
        """Which of these serials the issuer has already used (reserved or issued)."""
        ...

    def reserve_many(self, records: Sequence[CertificateRecord]) -> set[int]:
        """Record certificates (distinct serials) before they are signed (G5); the serials
        the issuer had used already are left out and returned, the others reserved (G1)."""
        ...

    def complete(self, signed: Sequence[SignedCertificate]) -> None:
        """Store signed certificates for their reserved serials (Conflict if one is not)."""
        ...

    def get(self, issuer_id: str, serial: int, *, for_update: bool = False
            ) -> CertificateRecord | None:
        """One certificate."""
        ...

    def find_by_serial(self, serial: int) -> list[CertificateRecord]:
        """Certificates with this serial under any issuer."""
        ...

    def status_of(self, issuer_id: str, serial: int
                  ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Fast status lookup for OCSP."""
        ...

    def revoke(self, issuer_id: str, serial: int, at: datetime, reason: RevocationReason) -> None:
        """Mark a certificate revoked."""
        ...

    def page(
        self,
        *,
        org_path: str,
        device_id: str | None = None,
        status: CertificateStatus | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[CertificateRecord]:
        """Certificates under ``org_path``, newest first."""
        ...

    def for_device(self, device_id: str) -> list[CertificateRecord]:
        """Every certificate of a device."""
        ...

    def for_devices(self, device_ids: Sequence[str]) -> dict[str, list[CertificateRecord]]:
        """Every certificate of each of these devices, oldest first (a device without
        any is absent): one read for a batch, not one per device."""
        ...

    def key_holders(self, key_hashes: Sequence[str]) -> list[tuple[str, str | None]]:
        """(key hash, device id) of every certificate (any status) for one of these keys."""
        ...

    def with_public_key(self, public_key_sha256: str) -> list[CertificateRecord]:
        """Certificates (any status) for this key."""
        ...

    def revocations(self, issuer_id: str, *, expired_after: datetime) -> Sequence[Revocation]:
        """Revoked certificates that expire after ``expired_after`` (G6)."""
        ...

    def revocation_rows(self, issuer_id: str, *, expired_after: datetime
                        ) -> Sequence[RevocationRow]:
        """The same as raw rows (serial hex, revocation time, reason): the CRL hot path."""
        ...

    def iter_device_certificates(self, *, org_path: str) -> Iterator[CertificateRecord]:
        """Issued or revoked device certificates under ``org_path`` (without PEM bodies)."""
        ...

    def live_issued_by(self, issuer_id: str, now: datetime) -> list[tuple[int, str | None]]:
        """(serial, device id) of every issued certificate of an issuer unexpired at
        ``now``, oldest first: what a compromised CA's revocation takes away."""
        ...

    def count_live(self, issuer_id: str, now: datetime) -> int:
        """How many issued certificates of an issuer are unexpired at ``now``."""
        ...

    def revoke_many(self, issuer_id: str, serials: Sequence[int], at: datetime,
                    reason: RevocationReason) -> None:
        """Revoke these certificates of an issuer in one statement (those revoked already
        are left as they are, G4)."""
        ...


class CertificateStatusReader(Protocol):
    """The OCSP hot path: a certificate's current status straight from the database."""

    def status_of(self, issuer_id: str, serial: int
                  ) -> tuple[CertificateStatus, datetime | None, RevocationReason | None] | None:
        """Status, revocation time and reason, or None for an unknown serial."""
        ...


class CrlStore(Protocol):
    """Published CRLs."""

    def add(self, crl: StoredCrl) -> None:
        """Store a newly built CRL."""
        ...

    def latest(self, issuer_id: str) -> StoredCrl | None:
        """The newest CRL of an issuer."""
        ...

    def latest_info(self, issuer_id: str) -> CrlInfo | None:
        """Number, validity and watermark of the newest CRL, without its body."""
        ...


class CounterStore(Protocol):
    """Monotonic per-name counters (CRL numbers, revocation watermarks), G2."""

    def next(self, name: str) -> int:
        """Increment and return; never repeats, across restarts and replicas."""
        ...

    def current(self, name: str) -> int:
        """Current value (0 if never incremented)."""
        ...


class CaUnitOfWork(Protocol):
    """A transaction that reads or stores the CAs themselves (start-up, ``iotiam init``)."""

    @property
    def cas(self) -> CaStore:
        """CA certificates and their encrypted keys."""
        ...


class DeviceIssuers(Protocol):
    """The issuing CAs whose certificates identify devices (``pki.service.Pki``): the
    active one and those before it (docs/ca-rotation.md)."""

    @property
    def issuing_id(self) -> str:
        """The id of the active issuing CA (most certificates presented are its)."""
        ...

    def issuer_named(self, name: x509.Name) -> str | None:
        """The id of the issuing CA whose subject is ``name``, or None. A revoked one is
        named too: every certificate it signed is revoked, which the caller's status
        check refuses."""
        ...


class CaKeyring(Protocol):
    """Makes CA keys where the installation keeps them, and loads the CAs back."""

    def new_key(self, like: StoredCa, label: str) -> tuple[Signer, str]:
        """A new key pair of ``like``'s algorithm, made where ``like``'s key is (in its
        PKCS#11 token, labelled ``label``, or in this process), and what to store for
        it in ``StoredCa.encrypted_key_pem`` (the encrypted key, or its URI)."""
        ...

    def load(self) -> CaSet:
        """Every CA as the database now holds them (``bootstrap.load_ca_set``)."""
        ...


class SessionCount(Protocol):
    """How many of some devices hold a live broker session (None: not known here)."""

    def connected(self, device_ids: Sequence[str]) -> int | None:
        """Connected devices among these."""
        ...


class PkiUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores PKI use cases work with, inside one transaction."""

    @property
    def changes(self) -> ChangeRecorder:
        """Publishes what changed when the transaction commits (``iotiam.changes``)."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Issued, reserved and revoked certificates."""
        ...

    @property
    def crls(self) -> CrlStore:
        """Published CRLs."""
        ...

    @property
    def counters(self) -> CounterStore:
        """CRL numbers and revocation watermarks."""
        ...

    @property
    def devices(self) -> CredentialHolders:
        """The devices certified (read; a first certificate activates a pending device, a
        new one touches it, a revocation ends its tokens)."""
        ...

    @property
    def device_types(self) -> DeviceTypeStore:
        """The device types whose profiles and lifetimes issuance follows (read)."""
        ...


class CaRotationUnitOfWork(PkiUnitOfWork, CaUnitOfWork, Protocol):
    """A transaction that adds or revokes issuing CAs and revokes what they signed."""


#: the unit of work a caller's reservation hook sees: the caller's own view of the
#: reservation transaction (the SQL unit of work is every domain's)
CallerUnitOfWork_co = TypeVar("CallerUnitOfWork_co", covariant=True)


class DeviceCertificates(Protocol[CallerUnitOfWork_co]):
    """Certifies devices' keys for another domain's use case (``pki.service.Pki``)."""

    @property
    def issuing_id(self) -> str:
        """The id of the CA that certifies devices."""
        ...

    @property
    def issuing_certificate(self) -> x509.Certificate:
        """The certificate of the CA that certifies devices."""
        ...

    def trusted_issuer_of(self, cert: x509.Certificate) -> str | None:
        """The id of the trusted (active or retiring) issuing CA that signed ``cert``."""
        ...

    def issuer_named(self, name: x509.Name) -> str | None:
        """The id of the issuing CA (any state) named ``name``, or None."""
        ...

    def issue_certificate(
        self,
        actor: Principal,
        *,
        device_id: str,
        csr_data: bytes,
        profile: str | None = None,
        fresh_key: bool = False,
        on_reserve: Callable[[CallerUnitOfWork_co, Device], None] | None = None,
        also_audit: Callable[[CertificateRecord], AuditDraft] | None = None,
    ) -> CertificateRecord:
        """Certify a device's key; ``on_reserve`` runs inside the reservation transaction
        (a refusing hook raises before it writes), ``also_audit`` commits with the
        certificate."""
        ...

    def issue(self, actor: Principal, request: IssueRequest) -> CertificateRecord:
        """Certify one request (``IssueRequest``: its hooks and audit records included);
        raises the error refusing it."""
        ...

    def check_issuable(
        self, csr: x509.CertificateSigningRequest, device: Device, device_type: DeviceType,
        profile: str | None, *, admin: bool,
    ) -> None:
        """Refuse up front what ``issue_certificate(fresh_key=True)`` would refuse for a
        device not stored yet: a profile it may not have, a CSR naming something else, a
        key already certified."""
        ...


class LeafSigner(Protocol):
    """Signs end-entity certificates under the issuing CA (RFC 5280 §4.1), as DER.

    ``pki.leaf_builder.LeafBuilder`` does it with ``cryptography``'s builder;
    ``iotiam.fast.leaf_encoding.DirectLeafSigner`` encodes the same bytes itself.
    """

    def issue_der(self, public_key: PublicKey, identity: LeafIdentity,
                  profile: CertificateProfile, serial: int, not_before: datetime, *,
                  spki_der: bytes | None = None) -> bytes:
        """The signed certificate; ``spki_der`` is the key's SubjectPublicKeyInfo if known."""
        ...


class PendingProofs(Protocol):
    """Verdicts on the CSR signatures handed to :class:`ProofChecks`, read when needed."""

    @property
    def count(self) -> int:
        """How many CSRs were taken: the first ``count`` of those offered."""
        ...

    def verdicts(self) -> list[bool | None]:
        """Per CSR taken: True (verifies), False (does not) or None (check it here).

        Called exactly once, even when no request needs the answers any more.
        """
        ...


class ProofChecks(Protocol):
    """Checks CSR signatures (proof of possession, RFC 2986 §3) outside this process
    while it does a batch's other checks (``iotiam.fast.signature_helper``: another
    core). Any doubt comes back as None: the issuing process checks it itself."""

    def start(self, csrs: Sequence[x509.CertificateSigningRequest]) -> PendingProofs | None:
        """Take the first CSRs of a batch; None if it takes none."""
        ...
