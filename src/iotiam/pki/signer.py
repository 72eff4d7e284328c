"""The signing port: everything a CA key does, behind one small protocol."""

from __future__ import annotations

from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp

from iotiam.pki.keys import PrivateKey, PublicKey


class Signer(Protocol):
    """A CA or responder key that signs certificates, CRLs and OCSP responses.

    This is the port a PKCS#11 / HSM / cloud-KMS signer implements later; domain code
    never touches private key material directly, only this protocol.
    """

    def public_key(self) -> PublicKey:
        """The public half of the signing key."""
        ...

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a fully populated certificate builder."""
        ...

    def sign_bytes(self, data: bytes) -> bytes:
        """The signatureValue over ``data`` (e.g. a TBSCertificate joined by
        ``iotiam.fast.leaf_encoding``), with the algorithm ``sign_certificate`` uses:
        DER Ecdsa-Sig-Value, PKCS#1 v1.5 or raw Ed25519."""
        ...

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a fully populated CRL builder."""
        ...

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse:
        """Sign a fully populated OCSP response builder."""
        ...


class SigningCa(Protocol):
    """A CA as the PKI signs with it: its certificate and the signer that holds its key.

    ``authority.CaMaterial`` is one, with the key in this process; a CA whose key lives
    in a hardware module is any object with these two attributes, built where
    ``bootstrap.load_ca_set`` builds the others.
    """

    @property
    def certificate(self) -> x509.Certificate:
        """The CA's certificate."""
        ...

    @property
    def signer(self) -> Signer:
        """What signs with the CA's key."""
        ...


class LocalKeySigner:
    """A :class:`Signer` over a private key held in this process's memory."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self._public_key: PublicKey = key.public_key()
        # RFC 8410 §6: Ed25519 signs the message itself, so there is no hash to name.
        self._hash: hashes.SHA256 | None = (
            None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        )

    def public_key(self) -> PublicKey:
        """The public half of the signing key."""
        return self._public_key

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        """Sign a certificate with SHA-256 (EC, RSA PKCS#1 v1.5) or pure Ed25519."""
        return builder.sign(self._key, self._hash)

    def sign_bytes(self, data: bytes) -> bytes:
        """Sign ``data`` as ``sign_certificate`` signs a TBSCertificate."""
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        if isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return key.sign(data)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        """Sign a CRL with SHA-256 (EC, RSA PKCS#1 v1.5) or pure Ed25519."""
        return builder.sign(self._key, self._hash)

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse:
        """Sign an OCSP response with SHA-256 (EC, RSA PKCS#1 v1.5) or pure Ed25519."""
        return builder.sign(self._key, self._hash)
