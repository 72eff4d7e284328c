"""Builders for a manufacturer's side of zero-touch enrollment: a CA and IDevIDs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotiam.pki.keys import PrivateKey


@dataclass(frozen=True)
class Issuer:
    """A certificate and its key."""

    certificate: x509.Certificate
    key: PrivateKey

    @property
    def pem(self) -> str:
        """The certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def key_pem(self) -> bytes:
        """The private key, unencrypted PKCS#8 PEM."""
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())


def make_manufacturer_ca(
    name: str = "Acme Devices IDevID CA",
    *,
    now: datetime | None = None,
    lifetime: timedelta = timedelta(days=3650),
    ca: bool = True,
) -> Issuer:
    """A self-signed manufacturer CA (``ca=False`` makes a look-alike that is not one)."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Devices"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False), critical=True)
    return Issuer(builder.sign(key, hashes.SHA256()), key)


def make_idevid(
    ca: Issuer,
    serial_number: str | None,
    *,
    key: PrivateKey | None = None,
    common_name: str | None = "Acme Sensor",
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    is_ca: bool = False,
) -> Issuer:
    """An IEEE 802.1AR IDevID: subject serialNumber = the device's serial, long-lived."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = []
    if common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    if serial_number:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    start = not_before or datetime.now(UTC) - timedelta(days=1)
    ca_key_id = x509.SubjectKeyIdentifier.from_public_key(ca.certificate.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        # 802.1AR §8.5: an IDevID may never expire (99991231235959Z)
        .not_valid_after(not_after or datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_key_id), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=is_ca, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
    )
    return Issuer(builder.sign(ca.key, hashes.SHA256()), key)
