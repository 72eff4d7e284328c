"""The server's own TLS certificate follows the active issuing CA (docs/ca-rotation.md):
re-issued by the process that reissues, loaded by every process, audited."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from expect import audit_records

from conftest import Installation
from iotiam.config import ca_passphrase
from iotiam.kernel import SYSTEM
from iotiam.pki.models import CaRole
from iotiam.server_certificate import ServerCertificate


def follower(installation: Installation, *, reissues: bool
             ) -> tuple[ServerCertificate, list[Path]]:
    """A ``ServerCertificate`` whose live context is a list of loaded files."""
    services = installation.services
    own = ServerCertificate(installation.settings, services.database,
                            lambda: services.pki.cas,
                            ca_passphrase(installation.settings, create=False),
                            installation.clock, services.audit, reissues=reissues)
    loaded: list[Path] = []
    own.serve_with(lambda cert, key, password: loaded.append(cert))
    return own, loaded


def served(installation: Installation) -> x509.Certificate:
    """The leaf ``server.pem`` holds, checked to load with its key as a server would."""
    tls = installation.settings.tls_dir
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls / "server.pem", tls / "server.key",
                            ca_passphrase(installation.settings, create=False))
    return x509.load_pem_x509_certificate((tls / "server.pem").read_bytes())


def server_rows(installation: Installation) -> int:
    with installation.services.database.reading() as uow:
        return sum(1 for c in uow.cas.list_all() if c.role is CaRole.SERVER_TLS)


def test_ok_kept_while_its_issuer_is_active(sql_installation: Installation) -> None:
    own, loaded = follower(sql_installation, reissues=True)
    first = own.follow()
    assert len(loaded) == 1 and server_rows(sql_installation) == 1
    assert own.follow() == first and len(loaded) == 1  # nothing new: nothing reloaded
    assert served(sql_installation).issuer == \
        sql_installation.services.pki.cas.issuing.certificate.subject


def test_ok_moves_after_rotation_and_compromise(sql_installation: Installation) -> None:
    services = sql_installation.services
    own, loaded = follower(sql_installation, reissues=True)
    reader, reader_loaded = follower(sql_installation, reissues=False)  # another worker
    before = own.follow()
    reader.follow()
    assert services.ca_rotation is not None
    old_id = services.pki.cas.issuing_id
    services.ca_rotation.revoke(SYSTEM, old_id, "keyCompromise")
    active = services.pki.cas.issuing
    assert services.pki.cas.issuing_id != old_id
    assert reader.follow() == before  # a reader does not make one
    after = own.follow()
    assert after != before and len(loaded) == 2
    cert = served(sql_installation)
    assert cert.issuer == active.certificate.subject
    assert cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
        x509.load_der_x509_certificate(before).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert reader.follow() == after and len(reader_loaded) == 2  # ...but loads it
    records = [r for r in audit_records(sql_installation.api())
               if r["tag"] == "pki:server-certificate:reissued"]
    assert len(records) == 1, records
    assert records[0]["details"]["why"] == "issuer revoked"
    assert records[0]["details"]["issuer"] == services.pki.cas.issuing_id
