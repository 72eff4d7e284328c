"""The CAs a process signs and verifies with: the active issuing CA, the issuing CAs
before it (retiring, or revoked after a compromise), the root and the OCSP responders.

After ``iotiam ca rotate`` the newest issuing CA certifies every new key; the ones before
it stay trusted for what they signed (their CRLs keep being published, their OCSP
answered, the chains served name them) until they are revoked (``docs/ca-rotation.md``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from iotiam.errors import NotFound
from iotiam.pki.models import CaRole
from iotiam.pki.signer import SigningCa


class CaState(enum.StrEnum):
    """Where an issuing CA is in its life."""

    #: certifies every new key
    ACTIVE = "active"
    #: superseded: trusted for the certificates it signed until the last one expires
    RETIRING = "retiring"
    #: on the root's CRL: nothing it signed is accepted anywhere
    REVOKED = "revoked"


@dataclass(frozen=True)
class FormerIssuer:
    """An issuing CA that no longer certifies new keys, with its OCSP responder."""

    id: str
    ca: SigningCa
    responder: SigningCa
    revoked: bool


@dataclass(frozen=True)
class CaSet:
    """The loaded key pairs the service signs with."""

    issuing_id: str
    issuing: SigningCa
    root_id: str
    root: SigningCa
    responder: SigningCa
    #: the issuing CAs before the active one, newest first
    former: tuple[FormerIssuer, ...] = ()

    def material(self, ca_id: str) -> SigningCa:
        """Key pair of an issuer by id."""
        if ca_id == self.issuing_id:
            return self.issuing
        if ca_id == self.root_id:
            return self.root
        for former in self.former:
            if former.id == ca_id:
                return former.ca
        raise NotFound(f"no CA {ca_id!r}")

    @property
    def issuer_ids(self) -> tuple[str, ...]:
        """Every CA that publishes a CRL: the issuing CAs (a revoked one too: its CRL
        still names what it signed) and the root (which lists a revoked issuing CA)."""
        return (self.issuing_id, *(f.id for f in self.former), self.root_id)

    def issuing_ids(self) -> tuple[str, ...]:
        """Every issuing CA, the active one first."""
        return (self.issuing_id, *(f.id for f in self.former))

    def trusted_issuers(self) -> Iterator[tuple[str, SigningCa]]:
        """The issuing CAs whose certificates are accepted: the active one, then those
        retiring. A revoked one is left out: nothing it signed counts any more."""
        yield self.issuing_id, self.issuing
        for former in self.former:
            if not former.revoked:
                yield former.id, former.ca

    def trusted_issuer_of(self, cert: x509.Certificate) -> str | None:
        """The id of the trusted issuing CA that signed ``cert`` (name and signature),
        or None."""
        for ca_id, ca in self.trusted_issuers():
            if cert.issuer == ca.certificate.subject and _signed_by(cert, ca.certificate):
                return ca_id
        return None

    def issuer_named(self, name: x509.Name) -> str | None:
        """The id of the issuing CA (any state) whose subject is ``name``."""
        if name == self.issuing.certificate.subject:
            return self.issuing_id
        for former in self.former:
            if name == former.ca.certificate.subject:
                return former.id
        return None

    def trusted_certificates(self) -> list[x509.Certificate]:
        """The trusted issuing CAs' certificates, the active one first."""
        return [ca.certificate for _, ca in self.trusted_issuers()]

    def state_of(self, ca_id: str) -> CaState:
        """Active, retiring or revoked."""
        if ca_id == self.issuing_id:
            return CaState.ACTIVE
        for former in self.former:
            if former.id == ca_id:
                return CaState.REVOKED if former.revoked else CaState.RETIRING
        raise NotFound(f"no issuing CA {ca_id!r}")

    def responders(self) -> Iterator[tuple[str, SigningCa, SigningCa]]:
        """(issuer id, issuing CA, its OCSP responder) for every issuing CA, the active
        one first."""
        yield self.issuing_id, self.issuing, self.responder
        for former in self.former:
            yield former.id, former.ca, former.responder

    def chain_pem(self) -> str:
        """The trusted issuing CAs (the active one first) then the root, PEM: during a
        rotation's overlap a relying party given this chain accepts both generations."""
        certificates = [*self.trusted_certificates(), self.root.certificate]
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode()
                       for c in certificates)


def ca_id_of(role: CaRole, certificate: x509.Certificate) -> str:
    """Stable id of a key pair: its role and the start of its key identifier."""
    ski = x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest.hex()
    return f"{role}-{ski[:12]}"


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
