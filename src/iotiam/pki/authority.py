"""The CA hierarchy ``iotiam init`` builds: root → issuing CA → OCSP responder, server TLS.

Every certificate here follows the RFC 5280 profile and lints clean with pkilint.
Serials are passed in: callers draw them with ``x509.random_serial_number()`` (G1).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from iotiam.errors import InvalidInput
from iotiam.pki.csr import IpAddress, LeafIdentity
from iotiam.pki.keys import PrivateKey, PublicKey, generate_private_key
from iotiam.pki.leaf_builder import (
    LeafBuilder,
    authority_information_access,
    authority_key_identifier,
    crl_distribution_points,
)
from iotiam.pki.models import CertificateProfile, KeyAlgorithm
from iotiam.pki.signer import LocalKeySigner, Signer, SigningCa

#: notBefore is set this far before ``now`` so that peers whose clocks lag a little
#: accept a certificate created moments ago (step-ca and Let's Encrypt do the same).
BACKDATE = timedelta(minutes=5)

# X.520 / RFC 5280 Appendix A: ub-common-name and ub-organization-name.
_MAX_NAME_CHARS = 64

Ext = x509.Extension[x509.ExtensionType]


@dataclass(frozen=True)
class CaMaterial:
    """A certificate with the private key that belongs to it."""

    certificate: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def signer(self) -> Signer:
        """A signer over this material's key."""
        return LocalKeySigner(self.key)


@dataclass(frozen=True)
class HeldCa:
    """A certificate whose key is held elsewhere (a PKCS#11 token), with its signer."""

    certificate: x509.Certificate
    signer: Signer


@dataclass(frozen=True)
class PublicUrls:
    """Where relying parties fetch revocation data and the issuer's certificate."""

    ocsp_url: str
    ca_issuers_url: str
    crl_url: str


def create_root_ca(
    *,
    alg: KeyAlgorithm,
    common_name: str,
    organization: str,
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365 * 20),
) -> CaMaterial:
    """Create a self-signed root CA (a trust anchor; RFC 5280 §4.2.1.9 cA=TRUE)."""
    key = generate_private_key(alg)
    return CaMaterial(root_certificate(LocalKeySigner(key), common_name=common_name,
                                       organization=organization, now=now, serial=serial,
                                       lifetime=lifetime), key)


def root_certificate(
    signer: Signer,
    *,
    common_name: str,
    organization: str,
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365 * 20),
) -> x509.Certificate:
    """The self-signed root certificate of ``signer``'s key (wherever that is held)."""
    public_key = signer.public_key()
    name = _ca_name(common_name, organization)
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    extensions = [
        _ext(x509.BasicConstraints(ca=True, path_length=None), True),
        _ext(_ca_key_usage(), True),
        _ext(ski, False),
        # RFC 5280 §4.2.1.1 lets a self-signed root omit the AKI; including it lets
        # path builders match the root by key identifier like every other cert.
        _ext(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False),
    ]
    builder = _builder(name, name, public_key, serial, now, now + lifetime, extensions)
    return signer.sign_certificate(builder)


def create_issuing_ca(
    *,
    root: SigningCa,
    alg: KeyAlgorithm,
    common_name: str,
    organization: str,
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365 * 5),
    root_urls: PublicUrls | None = None,
) -> CaMaterial:
    """Create the online CA that signs leaves; pathLenConstraint 0 keeps it from minting CAs."""
    key = generate_private_key(alg)
    return CaMaterial(issuing_certificate(key.public_key(), root=root, common_name=common_name,
                                          organization=organization, now=now, serial=serial,
                                          lifetime=lifetime, root_urls=root_urls), key)


def issuing_certificate(
    public_key: PublicKey,
    *,
    root: SigningCa,
    common_name: str,
    organization: str,
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365 * 5),
    root_urls: PublicUrls | None = None,
) -> x509.Certificate:
    """The issuing CA's certificate for ``public_key`` (wherever its private half is)."""
    extensions = [
        # RFC 5280 §4.2.1.9: pathLenConstraint 0 — only end entities below this CA.
        _ext(x509.BasicConstraints(ca=True, path_length=0), True),
        _ext(_ca_key_usage(), True),
        _ext(x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        _ext(authority_key_identifier(root.certificate), False),
    ]
    if root_urls is not None:
        extensions += [
            _ext(authority_information_access(root_urls), False),
            _ext(crl_distribution_points(root_urls), False),
        ]
    builder = _builder(
        root.certificate.subject,
        _ca_name(common_name, organization),
        public_key,
        serial,
        now,
        _capped(now + lifetime, root.certificate),
        extensions,
    )
    return root.signer.sign_certificate(builder)


def create_ocsp_responder(
    *,
    issuer: SigningCa,
    alg: KeyAlgorithm,
    common_name: str,
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365),
) -> CaMaterial:
    """Create a delegated OCSP responder certificate for ``issuer`` (RFC 6960 §4.2.2.2)."""
    key = generate_private_key(alg)
    return CaMaterial(responder_certificate(key.public_key(), issuer=issuer,
                                            common_name=common_name, now=now, serial=serial,
                                            lifetime=lifetime), key)


def responder_certificate(
    public_key: PublicKey,
    *,
    issuer: SigningCa,
    common_name: str,
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365),
) -> x509.Certificate:
    """The delegated OCSP responder's certificate for ``public_key``."""
    extensions = [
        _ext(x509.BasicConstraints(ca=False, path_length=None), True),
        _ext(_signing_key_usage(), True),
        # RFC 6960 §4.2.2.2: the delegation is this EKU in a cert issued by the CA itself.
        _ext(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False),
        # RFC 6960 §4.2.2.2.1: clients need not check the responder's own revocation
        # (there is nothing to ask but itself), so keep its lifetime short instead.
        _ext(x509.OCSPNoCheck(), False),
        _ext(x509.SubjectKeyIdentifier.from_public_key(public_key), False),
        _ext(authority_key_identifier(issuer.certificate), False),
    ]
    builder = _builder(
        issuer.certificate.subject,
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _checked("common name", common_name))]),
        public_key,
        serial,
        now,
        _capped(now + lifetime, issuer.certificate),
        extensions,
    )
    return issuer.signer.sign_certificate(builder)


def create_server_tls_certificate(
    *,
    issuer: SigningCa,
    alg: KeyAlgorithm,
    names: Sequence[str],
    now: datetime,
    serial: int,
    lifetime: timedelta = timedelta(days=365),
    urls: PublicUrls | None,
) -> CaMaterial:
    """Create a serverAuth certificate for iotiam's own endpoints (API, EST, broker)."""
    if not names:
        raise InvalidInput("a server certificate needs at least one DNS name or IP address")
    dns_names: list[str] = []
    ips: list[IpAddress] = []
    for raw in names:
        name = raw.strip()
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            host = _dns_name(name)
            if host not in dns_names:
                dns_names.append(host)
        else:
            if ip not in ips:
                ips.append(ip)
    # The CN is legacy for servers (RFC 6125 §6.4.4: clients match the SAN first), but
    # older MQTT client libraries still read it; it must fit ub-common-name.
    common_names = [n for n in dns_names if len(n) <= _MAX_NAME_CHARS][:1]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, n) for n in common_names])
    identity = LeafIdentity(subject=subject, dns_names=tuple(dns_names), ips=tuple(ips))
    profile = CertificateProfile(
        name="server-tls", lifetime=lifetime + BACKDATE, client_auth=False, server_auth=True
    )
    key = generate_private_key(alg)
    leaf_builder = LeafBuilder(issuer.signer, issuer.certificate, urls)
    certificate = leaf_builder.issue(key.public_key(), identity, profile, serial, now - BACKDATE)
    return CaMaterial(certificate, key)


def _builder(
    issuer: x509.Name,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    now: datetime,
    not_after: datetime,
    extensions: list[Ext],
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .issuer_name(issuer)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
    )
    for extension in extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder


def _capped(not_after: datetime, issuer: x509.Certificate) -> datetime:
    """A certificate must not outlive its issuer; validators would reject it then."""
    return min(not_after, issuer.not_valid_after_utc)


def _ca_name(common_name: str, organization: str) -> x509.Name:
    attributes = []
    if organization:
        attributes.append(
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _checked("organization", organization))
        )
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, _checked("common name", common_name)))
    return x509.Name(attributes)


def _checked(what: str, value: str) -> str:
    if not value.strip() or len(value) > _MAX_NAME_CHARS:
        raise InvalidInput(f"a CA {what} must be 1 to {_MAX_NAME_CHARS} characters, got {value!r}")
    return value


def _dns_name(name: str) -> str:
    """A DNS SAN must be an ASCII host name (RFC 5280 §4.2.1.6, IDNs as A-labels)."""
    host = name.rstrip(".").lower()
    labels = host.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]  # RFC 6125 §6.4.3: a wildcard only as the whole left-most label
    if not host.isascii() or len(host) > 253 or not all(_is_ldh_label(x) for x in labels):
        raise InvalidInput(f"{name!r} is neither an IP address nor an ASCII DNS name")
    return host


def _is_ldh_label(label: str) -> bool:
    """RFC 1123 §2.1 letters-digits-hyphen label."""
    return (
        0 < len(label) <= 63
        and not label.startswith("-")
        and not label.endswith("-")
        and all(c.isalnum() or c == "-" for c in label)
    )


def _ca_key_usage() -> x509.KeyUsage:
    # RFC 5280 §4.2.1.3: a CA key signs certificates and CRLs, nothing else.
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _signing_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _ext(value: x509.ExtensionType, critical: bool) -> Ext:
    return x509.Extension(value.oid, critical, value)
