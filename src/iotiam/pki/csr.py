"""Certificate signing requests: parse them and decide whether iotiam will certify them.

A CSR proves possession of a key and nothing else. The name in the certificate comes
from the inventory (:class:`LeafIdentity`); the CSR may only repeat it, never extend it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import NameOID

from iotiam.errors import InvalidInput, PayloadTooLarge
from iotiam.pki.keys import PublicKey, require_leaf_public_key

MAX_CSR_BYTES = 16 * 1024

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_A_CSR = "not a PEM or DER PKCS#10 certificate request"
_SHOWN_CHARS = 80


@dataclass(frozen=True)
class LeafIdentity:
    """The name iotiam puts in a leaf certificate; it comes from the inventory, never a CSR."""

    subject: x509.Name
    dns_names: tuple[str, ...] = ()
    uris: tuple[str, ...] = ()
    ips: tuple[IpAddress, ...] = ()

    @property
    def common_name(self) -> str | None:
        """The subject's (first) commonName, if it has one."""
        attributes = self.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attributes[0].value) if attributes else None

    @property
    def has_names(self) -> bool:
        """Whether the identity has subjectAltName entries."""
        return bool(self.dns_names or self.uris or self.ips)

    def general_names(self) -> list[x509.GeneralName]:
        """The subjectAltName entries for this identity, DNS names first."""
        names: list[x509.GeneralName] = [x509.DNSName(n) for n in self.dns_names]
        names.extend(x509.UniformResourceIdentifier(u) for u in self.uris)
        names.extend(x509.IPAddress(ip) for ip in self.ips)
        return names


def parse_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Load a PKCS#10 request (RFC 2986) from PEM or DER; anything else is InvalidInput."""
    if len(data) > MAX_CSR_BYTES:
        raise PayloadTooLarge(
            f"certificate request is {len(data)} bytes; at most {MAX_CSR_BYTES} are accepted"
        )
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(data)
        return x509.load_der_x509_csr(data)
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm) as e:
        raise InvalidInput(_NOT_A_CSR) from e


def validate_csr(
    csr: x509.CertificateSigningRequest,
    identity: LeafIdentity,
    *,
    signature_valid: bool | None = None,
) -> PublicKey:
    """Check a CSR's proof of possession, key and requested names; return its public key.

    ``signature_valid`` is the verdict of a check already made on these very bytes
    elsewhere (``ports.ProofChecks``); None verifies here.
    """
    try:
        raw_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidInput("CSR public key is malformed or of an unsupported type") from e
    # The key check comes first: it is cheap and keeps hostile keys away from the verifier.
    public_key = require_leaf_public_key(raw_key)
    try:
        signature_ok = (csr.is_signature_valid if signature_valid is None
                        else signature_valid)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidInput("CSR signature algorithm is not supported") from e
    if not signature_ok:
        # RFC 2986 §3: the signature over certificationRequestInfo is the proof that
        # the requester holds the private key.
        raise InvalidInput("CSR signature does not verify (no proof of possession)")
    try:
        subject = csr.subject
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise InvalidInput(f"CSR subject or extension request is malformed: {e}") from e
    _check_subject(subject, identity)
    _check_extension_request(extensions, identity)
    # Returned so callers need not parse the key a second time (~20 µs on the hot path).
    return public_key


def _check_subject(subject: x509.Name, identity: LeafIdentity) -> None:
    expected = identity.common_name
    for attribute in subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        asked = attribute.value if isinstance(attribute.value, str) else repr(attribute.value)
        if asked != expected:
            device = _show(expected) if expected is not None else "unnamed"
            raise InvalidInput(f"CSR asks for name {_show(asked)}, this device is {device}")


def _check_extension_request(extensions: x509.Extensions, identity: LeafIdentity) -> None:
    for extension in extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            # RFC 5280 §4.2.1.9: only CAs carry cA=TRUE; a device never becomes one.
            raise InvalidInput("CSR asks for a CA certificate (basicConstraints cA=TRUE)")
        if isinstance(value, x509.SubjectAlternativeName):
            for name in value:
                if not _identity_has(identity, name):
                    raise InvalidInput(
                        f"CSR asks for subjectAltName {_describe_name(name)}, "
                        "which this device does not have"
                    )


def _identity_has(identity: LeafIdentity, name: x509.GeneralName) -> bool:
    if isinstance(name, x509.DNSName):
        # RFC 5280 §7.2: DNS names compare case-insensitively.
        wanted = name.value.lower()
        return any(dns.lower() == wanted for dns in identity.dns_names)
    if isinstance(name, x509.UniformResourceIdentifier):
        return name.value in identity.uris
    if isinstance(name, x509.IPAddress):
        return name.value in identity.ips
    return False


def _describe_name(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return "DNS:" + _show(name.value)
    if isinstance(name, x509.UniformResourceIdentifier):
        return "URI:" + _show(name.value)
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return "email:" + _show(name.value)
    return type(name).__name__


def _show(text: str) -> str:
    """Quote untrusted text for an error message: repr escapes control characters."""
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "…"
    return repr(text)
