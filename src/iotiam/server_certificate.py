"""The server's own TLS certificate follows the active issuing CA (docs/ca-rotation.md).

``iotiam init`` makes it; ``serve`` makes a new one (new key, made here, encrypted under
the CA passphrase like the first) when the CA that signed it is no longer the active
one — rotated out or revoked — and loads it into the live TLS context of every process.
One process writes the new key pair (the first of ``serve --workers``); its row and an
``IssuingCasChanged`` commit together, and every process, itself included, then writes
the files and loads them. Composition level, like ``installation.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import IssuingCasChanged, Published
from iotiam.clock import Clock
from iotiam.config import Settings, write_private_file
from iotiam.kernel import ROOT_PATH, SYSTEM, Transactions
from iotiam.pki.authority import CaMaterial, create_server_tls_certificate
from iotiam.pki.ca_set import CaSet, ca_id_of
from iotiam.pki.keys import encrypt_private_key, load_private_key
from iotiam.pki.models import CaRole, KeyAlgorithm
from iotiam.pki.ports import CaRotationUnitOfWork, StoredCa

log = logging.getLogger(__name__)

#: a server certificate with less than this left is replaced
RENEW_BEFORE = timedelta(days=30)
#: what ``IssuingCasChanged.action`` says when only the server certificate moved
REISSUED = "server-certificate"

#: loads (certificate file, key file, key passphrase) into a live TLS context
Reload = Callable[[Path, Path, bytes], None]


def replacement_due(cert: x509.Certificate, names: list[str], cas: CaSet, clock: Clock
                    ) -> str | None:
    """Why ``cert`` must be replaced (names changed, ageing, not signed by the active
    issuing CA), or None."""
    if cert.issuer != cas.issuing.certificate.subject:
        revoked = cas.issuer_named(cert.issuer) not in dict(cas.trusted_issuers())
        return "issuer revoked" if revoked else "issuer rotated"
    if _san_names(cert) != set(names):
        return "names changed"
    if cert.not_valid_after_utc - clock.now() <= RENEW_BEFORE:
        return "expiring"
    return None


def ensure_server_certificate(database: Transactions[CaRotationUnitOfWork], cas: CaSet,
                              names: list[str], passphrase: bytes, clock: Clock, *,
                              alg: KeyAlgorithm | None = None,
                              audit: Auditor | None = None) -> tuple[CaMaterial, str | None]:
    """The server's key pair, replaced first when due; and why it was replaced (None:
    kept). With ``audit`` the replacement is audited and announced on the change feed."""
    with database() as uow:  # the check and the new row in one write transaction
        current = uow.cas.active(CaRole.SERVER_TLS)
        why: str | None = "none yet"
        if current is not None:
            cert = x509.load_pem_x509_certificate(current.certificate_pem.encode())
            why = replacement_due(cert, names, cas, clock)
            if why is None:
                return CaMaterial(cert, load_private_key(
                    current.encrypted_key_pem.encode(), passphrase)), None
            alg = alg or _algorithm(cert)
        alg = alg or KeyAlgorithm.EC_P256
        material = create_server_tls_certificate(
            issuer=cas.issuing, alg=KeyAlgorithm.EC_P256 if alg is KeyAlgorithm.ED25519
            else alg, names=names, now=clock.now(), serial=x509.random_serial_number(),
            urls=None)
        identifier = ca_id_of(CaRole.SERVER_TLS, material.certificate)
        # the newest row is the one served: a clock that did not move (or stepped back)
        # must not leave the old one newest
        created = clock.now() if current is None else max(
            clock.now(), current.created_at + timedelta(microseconds=1))
        uow.cas.add(StoredCa(
            id=identifier, role=CaRole.SERVER_TLS,
            certificate_pem=material.certificate.public_bytes(
                serialization.Encoding.PEM).decode(),
            encrypted_key_pem=encrypt_private_key(material.key, passphrase).decode(),
            created_at=created))
        if audit is not None:
            audit.append(uow, AuditDraft(
                tag=AuditTag.SERVER_CERTIFICATE_REISSUED, actor=SYSTEM.name,
                org_path=ROOT_PATH, subject="server:api",
                details={"why": why, "issuer": cas.issuing_id,
                         "serial": format(material.certificate.serial_number, "x")}))
            uow.changes.record(IssuingCasChanged(identifier, REISSUED))
    return material, why


def write_server_files(settings: Settings, material: CaMaterial, cas: CaSet,
                       passphrase: bytes) -> None:
    """``server.pem`` (leaf + chain), ``server.key`` (encrypted), ``ca.pem`` (the root)
    and ``client-ca.pem`` (what device certificates chain to), each atomically."""
    tls = settings.tls_dir
    leaf = material.certificate.public_bytes(serialization.Encoding.PEM).decode()
    write_private_file(tls / "server.pem", leaf + cas.chain_pem())
    write_private_file(tls / "server.key", encrypt_private_key(material.key, passphrase))
    write_private_file(tls / "ca.pem", cas.root.certificate.public_bytes(
        serialization.Encoding.PEM))
    # the issuing CAs too, so a device that sends only its leaf still verifies
    write_private_file(tls / "client-ca.pem", cas.chain_pem())


class ServerCertificate:
    """Keeps this process's live TLS context(s) presenting a certificate of the active
    issuing CA; ``reissues``: this process makes the new one when due."""

    def __init__(self, settings: Settings, database: Transactions[CaRotationUnitOfWork],
                 cas: Callable[[], CaSet], passphrase: bytes, clock: Clock, audit: Auditor, *,
                 reissues: bool, serving: bytes | None = None) -> None:
        """``serving``: the DER of the certificate the files hold already."""
        self._settings = settings
        self._database = database
        self._cas = cas
        self._passphrase = passphrase
        self._clock = clock
        self._audit = audit
        self._reissues = reissues
        self._reloads: list[Reload] = []
        self._serving = serving

    def serve_with(self, reload: Reload) -> None:
        """Load a new certificate into this live context too."""
        self._reloads.append(reload)

    def follow(self) -> bytes:
        """Replace the certificate if due (when this process reissues), then make the
        files and the live contexts hold the stored one; returns its DER."""
        names = list(dict.fromkeys(self._settings.server_names))
        cas = self._cas()
        if self._reissues:
            _, why = ensure_server_certificate(self._database, cas, names, self._passphrase,
                                               self._clock, audit=self._audit)
            if why is not None:
                log.warning("server TLS certificate re-issued under %s: %s",
                            cas.issuing_id, why)
        with self._database.reading() as uow:
            stored = uow.cas.active(CaRole.SERVER_TLS)
        if stored is None:
            return b""
        cert = x509.load_pem_x509_certificate(stored.certificate_pem.encode())
        der = cert.public_bytes(serialization.Encoding.DER)
        if der != self._serving:
            key = load_private_key(stored.encrypted_key_pem.encode(), self._passphrase)
            write_server_files(self._settings, CaMaterial(cert, key), cas, self._passphrase)
            tls = self._settings.tls_dir
            for reload in self._reloads:
                reload(tls / "server.pem", tls / "server.key", self._passphrase)
            self._serving = der
        return der

    def cas_changed(self, published: Published) -> None:
        """An issuing CA was rotated in or revoked, or another process made a new
        server certificate: follow."""
        try:
            self.follow()
        except Exception:  # a feed subscriber must not stop the feed; the next change retries
            log.exception("could not move the server TLS certificate to the active CA")


def _algorithm(cert: x509.Certificate) -> KeyAlgorithm:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return KeyAlgorithm.RSA_3072 if isinstance(cert.public_key(), rsa.RSAPublicKey) \
        else KeyAlgorithm.EC_P256


def _san_names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }
