"""Leaf certificate issuance: the RFC 5280 end-entity profile.

Everything that depends only on the issuer (AKI, AIA, CRL distribution points, key
usage and EKU variants) is built once per :class:`LeafBuilder`, so a single issuance
costs one SKI hash and one signature. :class:`LeafBuilder` is the plain
:class:`~iotiam.pki.ports.LeafSigner`; ``iotiam.fast.leaf_encoding`` holds one that
skips the builder.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from iotiam.errors import InvalidInput, SetupError
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import PublicKey
from iotiam.pki.models import CertificateProfile
from iotiam.pki.signer import Signer

if TYPE_CHECKING:
    # Only a type: authority.py imports this module to issue its server certificate.
    from iotiam.pki.authority import PublicUrls

Ext = x509.Extension[x509.ExtensionType]

# RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets.
_MAX_SERIAL_BITS = 159


class LeafBuilder:
    """Issues end-entity certificates under one CA, reusing every issuer-only extension."""

    def __init__(
        self, signer: Signer, issuer_cert: x509.Certificate, urls: PublicUrls | None
    ) -> None:
        if signer.public_key() != issuer_cert.public_key():
            raise SetupError("the signing key does not match the issuing CA certificate")
        self._signer = signer
        self._issuer_name = issuer_cert.subject
        self._issuer_not_after = issuer_cert.not_valid_after_utc
        # RFC 5280 §4.2.1.9: end entities assert cA=FALSE, marked critical.
        self._basic_constraints = _encoded(x509.BasicConstraints(ca=False, path_length=None), True)
        self._key_usage = {
            kind: _encoded(_leaf_key_usage(kind), True) for kind in ("rsa", "ec", "other")
        }
        self._eku: dict[tuple[bool, bool], Ext | None] = {}
        self._issuer_extensions = [_encoded(authority_key_identifier(issuer_cert), False)]
        if urls is not None:
            self._issuer_extensions += [
                _encoded(authority_information_access(urls), False),
                _encoded(crl_distribution_points(urls), False),
            ]

    def issue(
        self,
        public_key: PublicKey,
        identity: LeafIdentity,
        profile: CertificateProfile,
        serial: int,
        not_before: datetime,
    ) -> x509.Certificate:
        """Sign a leaf for ``public_key`` named by ``identity`` and shaped by ``profile``."""
        not_after = self._not_after(identity, profile, serial, not_before)
        extensions = [
            self._basic_constraints,
            self._key_usage[key_kind(public_key)],
        ]
        eku = self._extended_key_usage(profile)
        if eku is not None:
            extensions.append(eku)
        extensions.append(_ext(x509.SubjectKeyIdentifier.from_public_key(public_key), False))
        extensions.extend(self._issuer_extensions)
        names = identity.general_names()
        if names:
            # RFC 5280 §4.2.1.6: with an empty subject the SAN carries the identity and
            # must be critical.
            extensions.append(_ext(x509.SubjectAlternativeName(names), not identity.subject))
        # The constructor skips the per-setter copies of the fluent API; every value
        # here was checked above or built by this class.
        builder = x509.CertificateBuilder(
            issuer_name=self._issuer_name,
            subject_name=identity.subject,
            public_key=public_key,
            serial_number=serial,
            not_valid_before=not_before,
            not_valid_after=not_after,
            extensions=extensions,
        )
        return self._signer.sign_certificate(builder)

    def issue_der(
        self,
        public_key: PublicKey,
        identity: LeafIdentity,
        profile: CertificateProfile,
        serial: int,
        not_before: datetime,
        *,
        spki_der: bytes | None = None,
    ) -> bytes:
        """:meth:`issue`, as DER (``spki_der`` is not needed here)."""
        return self.issue(public_key, identity, profile, serial, not_before).public_bytes(
            serialization.Encoding.DER)

    def _not_after(self, identity: LeafIdentity, profile: CertificateProfile, serial: int,
                   not_before: datetime) -> datetime:
        if serial <= 0 or serial.bit_length() > _MAX_SERIAL_BITS:
            raise ValueError("a serial must be positive and fit in 20 octets (RFC 5280 §4.1.2.2)")
        if not_before.tzinfo is None:
            raise ValueError("not_before must be timezone-aware")
        if not identity.subject and not identity.has_names:
            raise InvalidInput("a certificate needs a subject name or a subjectAltName")
        # A certificate must not outlive its issuer: validators reject the chain then.
        not_after = min(not_before + profile.lifetime, self._issuer_not_after)
        if not_after <= not_before:
            raise SetupError(
                f"the issuing CA {self._issuer_name.rfc4514_string()} expired at "
                f"{self._issuer_not_after.isoformat()}; rotate it"
            )
        return not_after

    def _extended_key_usage(self, profile: CertificateProfile) -> Ext | None:
        wanted = (profile.client_auth, profile.server_auth)
        if wanted not in self._eku:
            usages = []
            if profile.client_auth:
                usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
            if profile.server_auth:
                usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            self._eku[wanted] = _encoded(x509.ExtendedKeyUsage(usages), False) if usages else None
        return self._eku[wanted]


def build_leaf_certificate(
    *,
    signer: Signer,
    issuer_cert: x509.Certificate,
    public_key: PublicKey,
    identity: LeafIdentity,
    profile: CertificateProfile,
    serial: int,
    not_before: datetime,
    urls: PublicUrls,
) -> x509.Certificate:
    """Issue one leaf certificate; prefer a long-lived :class:`LeafBuilder` in hot paths."""
    return LeafBuilder(signer, issuer_cert, urls).issue(
        public_key, identity, profile, serial, not_before
    )


def authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AKI naming ``issuer_cert``'s key, copied from its SKI (RFC 5280 §4.2.1.1)."""
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        # An imported CA without SKI: derive it by method 1 of RFC 5280 §4.2.1.2.
        derived = x509.SubjectKeyIdentifier.from_public_key(issuer_cert.public_key())
        return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(derived)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)


def authority_information_access(urls: PublicUrls) -> x509.AuthorityInformationAccess:
    """AIA with the OCSP responder and the issuer certificate URL (RFC 5280 §4.2.2.1)."""
    return x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp_url)
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls.ca_issuers_url),
            ),
        ]
    )


def crl_distribution_points(urls: PublicUrls) -> x509.CRLDistributionPoints:
    """One full-name distribution point for the issuer's CRL (RFC 5280 §4.2.1.13)."""
    return x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(urls.crl_url)],
                relative_name=None,
                reasons=None,
                crl_issuer=None,
            )
        ]
    )


def key_kind(public_key: PublicKey) -> str:
    """Which key usage a leaf for ``public_key`` gets: ``rsa``, ``ec`` or ``other``."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec"
    return "other"


def _leaf_key_usage(kind: str) -> x509.KeyUsage:
    # RFC 5280 §4.2.1.3 with RFC 4055 / RFC 5480 §3: RSA keys may also encipher a TLS
    # 1.2 premaster secret, EC keys may do ECDH; Ed25519 keys only sign (RFC 8410 §5).
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=kind == "rsa",
        data_encipherment=False,
        key_agreement=kind == "ec",
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ext(value: x509.ExtensionType, critical: bool) -> Ext:
    return x509.Extension(value.oid, critical, value)


def _encoded(value: x509.ExtensionType, critical: bool) -> Ext:
    """``value`` encoded to DER once; signing then copies bytes instead of walking the
    Python object (~15 µs a certificate for the issuer-only extensions)."""
    der = value.public_bytes()
    return x509.Extension(value.oid, critical, x509.UnrecognizedExtension(value.oid, der))
