"""IEEE 802.1AR initial device identities (IDevIDs): checks with no I/O.

A manufacturer's CA signs an IDevID into each device at the factory; iotiam trusts a
registered manufacturer CA to vouch for the devices in its manifest, and gives each
one an operational certificate (an LDevID) from its own CA on first contact.

Python's ``ssl`` module exposes only the leaf a client sent (before 3.13), so the
registered CA must be the one that signs the IDevIDs directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from iotiam.enrollment.models import Manufacturer
from iotiam.errors import InvalidInput, Unauthenticated
from iotiam.inventory.models import check_identifier, is_reserved_id

_SHOWN = 200


def certificate_sha256(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def spki_sha256(public_key: PublicKeyTypes) -> str:
    """SHA-256 over the DER SubjectPublicKeyInfo (what a manifest may list)."""
    spki = public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def describe(cert: x509.Certificate) -> str:
    """Subject, issuer and serial of a presented certificate, for the queue and the audit."""
    return (f"subject={cert.subject.rfc4514_string()[:_SHOWN]}; "
            f"issuer={cert.issuer.rfc4514_string()[:_SHOWN]}; serial={cert.serial_number:x}")


def check_device_id(value: str, what: str) -> str:
    """A device id iotiam may certify: a valid identifier that no privileged user holds."""
    check_identifier(value, what)
    if is_reserved_id(value):
        raise InvalidInput(f"{what} {value!r} is reserved; it can never name a device")
    return value


def device_id_of(cert: x509.Certificate) -> str:
    """The device an IDevID names: its subject's serialNumber, else its commonName."""
    for oid in (NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME):
        for attribute in cert.subject.get_attributes_for_oid(oid):
            if isinstance(attribute.value, str) and attribute.value:
                return check_device_id(attribute.value, "the IDevID's serial number")
    raise Unauthenticated("the IDevID names no device: its subject has neither a "
                          "serialNumber nor a commonName")


def load_ca_certificate(pem: str, now: datetime) -> x509.Certificate:
    """Parse a manufacturer CA certificate and refuse anything that is not a usable CA."""
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as e:
        raise InvalidInput("the manufacturer CA is not a PEM certificate") from e
    if len(certificates) != 1:
        raise InvalidInput("send exactly one certificate: the CA that signs the IDevIDs")
    ca = certificates[0]
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = _key_usage(ca)
    except (ValueError, x509.DuplicateExtension) as e:
        raise InvalidInput(f"the manufacturer CA has malformed extensions: {e}") from e
    except x509.ExtensionNotFound:
        constraints = None
        usage = None
    # RFC 5280 §4.2.1.9: only a certificate with cA=TRUE may sign others
    if constraints is None or not constraints.ca:
        raise InvalidInput("the certificate is not a CA certificate (basicConstraints cA=TRUE "
                           "is missing); register the CA that signs the IDevIDs")
    if usage is not None and not usage.key_cert_sign:
        raise InvalidInput("the CA certificate's keyUsage does not allow keyCertSign")
    if now >= ca.not_valid_after_utc:
        raise InvalidInput(f"the CA certificate expired at {ca.not_valid_after_utc.isoformat()}")
    return ca


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` (names and signature)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def find_issuer(
    cert: x509.Certificate, candidates: Iterable[tuple[Manufacturer, x509.Certificate]]
) -> tuple[Manufacturer, x509.Certificate] | None:
    """The registered manufacturer whose CA signed ``cert``, if any."""
    for manufacturer, ca in candidates:
        if issued_by(cert, ca):
            return manufacturer, ca
    return None


def check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    """RFC 5280 §4.1.2.5, on the service clock: refuse before notBefore and from notAfter."""
    if now < cert.not_valid_before_utc:
        raise Unauthenticated(
            f"the {what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now >= cert.not_valid_after_utc:
        raise Unauthenticated(f"the {what} expired at {cert.not_valid_after_utc.isoformat()}")


def is_ca(cert: x509.Certificate) -> bool:
    """Whether a certificate claims to be a CA (a CA is never a device's identity)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return False
