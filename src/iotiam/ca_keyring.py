"""Where the CA keys live, at the composition level: loading every CA a process signs
with (``load_ca_set``) and making a new CA key where the installation keeps them
(``StoredCaKeys``: in the PKCS#11 token of the key it replaces, or here, encrypted
under the CA passphrase; ``docs/ca-rotation.md``)."""

from __future__ import annotations

from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from iotiam.config import pkcs11_config
from iotiam.errors import SetupError
from iotiam.hsm.pkcs11_signer import open_signer
from iotiam.hsm.uri import parse_pkcs11_uri
from iotiam.kernel import Transactions
from iotiam.pki.authority import CaMaterial, HeldCa
from iotiam.pki.ca_set import CaSet, FormerIssuer
from iotiam.pki.keys import encrypt_private_key, generate_private_key, load_private_key
from iotiam.pki.models import CaRole, CertificateStatus, KeyAlgorithm
from iotiam.pki.ports import CaStore, CertificateStore, StoredCa
from iotiam.pki.signer import LocalKeySigner, Signer, SigningCa


class CaReadUnitOfWork(Protocol):
    """What loading the CAs reads: the CAs, and the root's certificates (a revoked
    issuing CA is one the root's CRL lists)."""

    @property
    def cas(self) -> CaStore:
        """CA certificates and their encrypted keys."""
        ...

    @property
    def certificates(self) -> CertificateStore:
        """Issued certificates (the root's record of each issuing CA)."""
        ...


def load_ca_set(database: Transactions[CaReadUnitOfWork], passphrase: bytes) -> CaSet:
    """Decrypt the CA keys for this process (or open them in their PKCS#11 tokens): the
    newest issuing CA is the active one, those before it retiring or revoked."""
    with database.reading() as uow:
        every = uow.cas.list_all()
        active = {role: uow.cas.active(role) for role in CaRole}
        root = active[CaRole.ROOT]
        revoked = set()
        if root is not None:
            revoked = {c.id for c in every if c.role is CaRole.ISSUING and _revoked(
                uow.certificates, root.id, _certificate(c))}
    missing = [str(r) for r in (CaRole.ROOT, CaRole.ISSUING, CaRole.OCSP_RESPONDER)
               if active[r] is None]
    if missing:
        raise SetupError(f"no {', '.join(missing)} CA in the database; run `iotiam init`")
    assert root is not None
    issuing, responder = active[CaRole.ISSUING], active[CaRole.OCSP_RESPONDER]
    assert issuing is not None and responder is not None
    # the root first: a token without the keys is named by its first one (docs/hsm.md)
    opened_root = _opened(root, passphrase)
    opened_issuing = _opened(issuing, passphrase)
    opened_responder = _opened(responder, passphrase)
    responders = [c for c in every if c.role is CaRole.OCSP_RESPONDER]
    former = []
    for stored in sorted((c for c in every if c.role is CaRole.ISSUING and c.id != issuing.id),
                         key=lambda c: c.created_at, reverse=True):
        own = _responder_of(_certificate(stored), responders)
        if own is None:
            continue  # no responder certified by it: nothing to answer OCSP with
        former.append(FormerIssuer(stored.id, _opened(stored, passphrase),
                                   _opened(own, passphrase), stored.id in revoked))
    return CaSet(issuing_id=issuing.id, issuing=opened_issuing, root_id=root.id,
                 root=opened_root, responder=opened_responder, former=tuple(former))


class StoredCaKeys:
    """``pki.ports.CaKeyring`` over the database and the CA passphrase."""

    def __init__(self, database: Transactions[CaReadUnitOfWork], passphrase: bytes) -> None:
        self._database = database
        self._passphrase = passphrase

    def new_key(self, like: StoredCa, label: str) -> tuple[Signer, str]:
        """A key of ``like``'s algorithm where ``like``'s is, and what to store for it."""
        if like.key_uri is not None:
            uri = parse_pkcs11_uri(like.key_uri).for_object(label)
            signer = open_signer(uri, pkcs11_config(), create=True)
            return signer, str(uri)
        key = generate_private_key(_algorithm(_certificate(like)))
        return LocalKeySigner(key), encrypt_private_key(key, self._passphrase).decode()

    def load(self) -> CaSet:
        """Every CA as the database now holds them."""
        return load_ca_set(self._database, self._passphrase)


def _opened(item: StoredCa, passphrase: bytes) -> SigningCa:
    cert = _certificate(item)
    if item.key_uri is not None:  # held in a PKCS#11 token: opened, checked, kept open
        signer = open_signer(parse_pkcs11_uri(item.key_uri), pkcs11_config(),
                             expected=cert.public_key())
        return HeldCa(cert, signer)
    return CaMaterial(cert, load_private_key(item.encrypted_key_pem.encode(), passphrase))


def _certificate(item: StoredCa) -> x509.Certificate:
    return x509.load_pem_x509_certificate(item.certificate_pem.encode())


def _revoked(certificates: CertificateStore, root_id: str, cert: x509.Certificate) -> bool:
    record = certificates.get(root_id, cert.serial_number)
    return record is not None and record.status is CertificateStatus.REVOKED


def _responder_of(issuing: x509.Certificate, responders: list[StoredCa]) -> StoredCa | None:
    """The newest responder certificate ``issuing`` signed."""
    ski = x509.SubjectKeyIdentifier.from_public_key(issuing.public_key()).digest
    for stored in sorted(responders, key=lambda c: c.created_at, reverse=True):
        cert = _certificate(stored)
        try:
            aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            continue
        if aki.key_identifier == ski:
            return stored
    return None


def _algorithm(cert: x509.Certificate) -> KeyAlgorithm:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return KeyAlgorithm.EC_P256
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(key, rsa.RSAPublicKey):
        return KeyAlgorithm.RSA_3072
    raise SetupError(f"cannot make a CA key like {type(key).__name__}")
