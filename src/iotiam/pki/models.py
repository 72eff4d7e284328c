"""PKI value types: key algorithms, revocation reasons, certificate records."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from cryptography import x509

from iotiam.audit.models import AuditDraft
from iotiam.errors import Conflict, IamError, InvalidInput
from iotiam.inventory.models import Device
from iotiam.kernel import Principal


class KeyAlgorithm(enum.StrEnum):
    """Key algorithms iotiam can create for its own CAs."""

    EC_P256 = "ec-p256"
    ED25519 = "ed25519"
    RSA_3072 = "rsa-3072"


class CaRole(enum.StrEnum):
    """What a key pair held by iotiam is for."""

    ROOT = "root"
    ISSUING = "issuing"
    OCSP_RESPONDER = "ocsp"
    SERVER_TLS = "server-tls"


class CertificateStatus(enum.StrEnum):
    """Lifecycle of an issued certificate as iotiam records it.

    ``reserved`` is written *before* signing (G5); it becomes ``issued`` once the
    signed certificate is stored. A reserved row left behind by a crash is never
    reused, so a serial can never be issued twice (G1).
    """

    RESERVED = "reserved"
    ISSUED = "issued"
    REVOKED = "revoked"


class RevocationReason(enum.StrEnum):
    """RFC 5280 §5.3.1 reason codes that iotiam accepts.

    ``certificateHold`` is not offered: revocation in iotiam is final (G4).
    """

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"

    @property
    def flag(self) -> x509.ReasonFlags:
        """The matching ``cryptography`` flag."""
        return _REASON_FLAGS[self]

    @classmethod
    def parse(cls, text: str) -> RevocationReason:
        """Accept RFC names in any case and with ``-``/``_`` separators, or the code."""
        wanted = text.strip().replace("-", "").replace("_", "").lower()
        for reason in cls:
            if reason.value.lower() == wanted or str(_REASON_CODES[reason]) == wanted:
                return reason
        names = ", ".join(r.value for r in cls)
        raise InvalidInput(f"unknown revocation reason {text!r}; use one of: {names}")


_REASON_FLAGS = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}
_REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}


class SerialInUse(Conflict):
    """A freshly drawn serial already exists under the issuer (G1 keeps it unique)."""

    kind = "serial-in-use"


def parse_serial(text: str) -> int:
    """Parse a serial as openssl prints it: hex, with or without colons or ``0x``."""
    cleaned = text.strip().lower().replace(":", "")
    if cleaned.startswith("0x"):
        cleaned = cleaned[2:]
    if not cleaned or len(cleaned) > 40 or any(c not in "0123456789abcdef" for c in cleaned):
        raise InvalidInput(f"{text!r} is not a certificate serial (hex, up to 20 bytes)")
    return int(cleaned, 16)


def serial_hex(serial: int) -> str:
    """Canonical text form of a serial: lowercase hex, even length, no colons."""
    text = format(serial, "x")
    return text if len(text) % 2 == 0 else "0" + text


@dataclass(frozen=True)
class CertificateProfile:
    """What a kind of leaf certificate looks like (RFC 5280 §4.2 extensions)."""

    name: str
    lifetime: timedelta
    client_auth: bool
    server_auth: bool
    #: a device certified so may act for devices registered under it (a gateway's
    #: children, docs/gateways.md)
    acts_for_children: bool = False


@dataclass(frozen=True)
class CertificateRecord:
    """One certificate iotiam issued (or reserved a serial for)."""

    issuer_id: str
    serial: int
    device_id: str | None
    org_unit_id: str
    org_path: str
    profile: str
    subject: str
    not_before: datetime
    not_after: datetime
    status: CertificateStatus
    fingerprint_sha256: str | None
    pem: str | None
    created_at: datetime
    revoked_at: datetime | None = None
    revocation_reason: RevocationReason | None = None
    public_key_sha256: str | None = None

    @property
    def serial_hex(self) -> str:
        """Serial as lowercase hex."""
        return serial_hex(self.serial)


class Revocation(NamedTuple):
    """A revoked certificate as it appears on a CRL.

    A NamedTuple rather than a dataclass: a CRL rebuild makes 100k of these.
    """

    serial: int
    revoked_at: datetime
    reason: RevocationReason
    not_after: datetime | None = None


@dataclass(frozen=True)
class PkiConfig:
    """Knobs of the built-in CA, CRL and OCSP (``iotiam.config.Settings.pki`` builds it)."""

    public_base_url: str
    crl_validity: timedelta = timedelta(hours=24)
    # rebuild the CRL when less than this is left before nextUpdate
    crl_refresh_margin: timedelta = timedelta(hours=12)
    # G6: revoked certificates stay on the CRL this long after they expire
    crl_expired_buffer: timedelta = timedelta(days=7)
    ocsp_validity: timedelta = timedelta(hours=1)
    # leaf notBefore is backdated a little for devices with skewed clocks
    backdate: timedelta = timedelta(minutes=5)


#: Runs inside the reservation transaction with the device being certified (e.g. to
#: redeem a claim token atomically with the reservation). A hook that refuses must
#: raise before it writes: a batch shares the transaction with other requests. It sees
#: the transaction as its caller's own unit of work (``ports.DeviceCertificates``; the
#: SQL unit of work is every domain's), which this module does not name.
ReservationHook = Callable[[Any, Device], None]
#: Who asks, when only the reservation transaction can tell (a claim token, read beside
#: the device): called in that transaction with the device as read (None: unknown)
#: before any other check of the request, it returns the principal the request is then
#: checked and audited as, or raises the refusal that answers the request. The item's
#: own actor stands in until then (it audits that refusal), so it should hold no rights.
ReservationAuthentication = Callable[[Any, Device | None], Principal]


@dataclass(frozen=True)
class IssueRequest:
    """One certificate wanted for one device."""

    device_id: str
    csr_data: bytes
    profile: str | None = None
    #: also refuse a key this device already has (first contact: a known key is a replay)
    fresh_key: bool = False
    on_reserve: ReservationHook | None = None
    #: another audit record to commit with the certificate (e.g. the enrollment it ends)
    also_audit: Callable[[CertificateRecord], AuditDraft] | None = None
    #: another audit record to commit if this request is refused (e.g. the enrollment
    #: it was for), in the same transaction as the refusal's own
    also_refused: Callable[[IamError], AuditDraft] | None = None
    #: who asks, told by the reservation transaction (a claim token)
    authenticate: ReservationAuthentication | None = None


def revocation_counter(issuer_id: str) -> str:
    """Counter bumped by every revocation under an issuer; CRLs record the value they cover
    (the PKI's revocations and a set revocation's batches both bump it)."""
    return f"revocations:{issuer_id}"
