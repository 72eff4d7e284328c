"""First contact with a one-time claim: the agent's enrollment core, with no storage.

A key made here, a CSR for it, ``cacerts`` + ``simpleenroll`` on one new TLS
connection. ``Agent.enroll`` stores what comes back in its directory on the device;
``iotiam simulate`` keeps it in memory for the moment it checks it (a simulated fleet
of thousands has no device to keep it on).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from iotiam.agent.est_client import EnrollmentRefused, EstClient
from iotiam.agent.paths import AgentError
from iotiam.enrollment.idevid import device_id_of
from iotiam.errors import IamError
from iotiam.pki.external_signer import ExternalKeySigner
from iotiam.pki.keys import PrivateKey

#: a key the device signs with: in this process, or in a token (``agent.token_key``)
DeviceKey = PrivateKey | ExternalKeySigner


def read_file(path: Path, what: str) -> bytes:
    """The bytes of a file the user named, or one ``AgentError`` line."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise AgentError(f"cannot read the {what} {path}: {e.strerror or e}") from e


def load_idevid(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, str]:
    """The IDevID certificate and the device id it names, checked against its key file."""
    try:
        cert = x509.load_pem_x509_certificate(read_file(cert_path, "IDevID certificate"))
    except ValueError as e:
        raise AgentError(f"{cert_path} is not a PEM certificate") from e
    try:
        key = serialization.load_pem_private_key(read_file(key_path, "IDevID key"), password=None)
    except TypeError as e:
        raise AgentError(f"the IDevID key {key_path} is encrypted; the agent needs it "
                         "unencrypted (e.g. exported by the secure element's driver)") from e
    except ValueError as e:
        raise AgentError(f"{key_path} is not a PEM private key") from e
    if key.public_key() != cert.public_key():
        raise AgentError(f"the IDevID key {key_path} does not match the certificate "
                         f"{cert_path}")
    try:
        return cert, device_id_of(cert)
    except IamError as e:
        raise AgentError(f"{cert_path}: {e.detail}") from e


def new_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key, generated where it is used."""
    return ec.generate_private_key(ec.SECP256R1())


def csr_der(key: DeviceKey, device_id: str) -> bytes:
    """A DER PKCS#10 request for ``key``, its subject the device id."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, device_id)])
    )
    if isinstance(key, ExternalKeySigner):  # signed in the token
        return key.sign_csr(builder).public_bytes(serialization.Encoding.DER)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issuing_first(cert: x509.Certificate, cas: list[x509.Certificate]
                  ) -> list[x509.Certificate]:
    """``cas`` ordered from ``cert``'s issuer up to the root, any others after them.

    ``cacerts`` is a PKCS#7 SET, which comes back in no set order (the root first, as
    cryptography reads iotiam's answer); the agent's ``chain.pem`` and ``fullchain.pem``
    are issuing CA first.
    """
    ordered: list[x509.Certificate] = []
    rest = list(cas)
    current = cert
    while (parent := next((c for c in rest if c.subject == current.issuer), None)):
        ordered.append(parent)
        rest.remove(parent)
        if parent.subject == parent.issuer:
            break
        current = parent
    return ordered + rest


@dataclass(frozen=True)
class Enrolled:
    """What a first enrollment gave: the key made for it, its certificate, the CA chain."""

    key: DeviceKey
    certificate: x509.Certificate
    #: the CA certificates, issuing CA first, then up to the root (``issuing_first``)
    chain: list[x509.Certificate]

    def chain_pem(self) -> str:
        """The chain as concatenated PEM."""
        return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in self.chain)

    def check(self, device_id: str, now: datetime) -> None:
        """The certificate is this device's: its name, its key, valid now, signed by a
        CA of the chain; ``AgentError`` saying which is not."""
        cert = self.certificate
        names = [str(a.value) for a in
                 cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if names != [device_id]:
            raise AgentError(f"the certificate names {names}, not {device_id!r}")
        if cert.public_key() != self.key.public_key():
            raise AgentError("the certificate is not for the key this device made")
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise AgentError(f"the certificate is not valid now ({now.isoformat()})")
        issuer = next((c for c in self.chain if c.subject == cert.issuer), None)
        if issuer is None:
            raise AgentError(f"no CA in the chain is the certificate's issuer "
                             f"{cert.issuer.rfc4514_string()}")
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as e:
            raise AgentError(f"the certificate was not issued by the chain's CA: {e}") from e


def enroll_with_claim(est: EstClient, device_id: str, claim: str,
                      key: DeviceKey | None = None) -> Enrolled:
    """Enroll ``device_id`` with its one-time ``claim`` onto ``key`` (by default a new
    key made here)."""
    key = key if key is not None else new_key()
    try:
        cert, cas = est.enroll_with_chain(device_id, claim, csr_der(key, device_id))
    except EnrollmentRefused as e:
        raise AgentError(f"enrollment refused: {e}") from e
    except httpx.HTTPError as e:
        raise AgentError(f"cannot reach {est.url}: {e}") from e
    return Enrolled(key, cert, issuing_first(cert, cas))
