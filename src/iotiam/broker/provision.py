"""Prepare ``<data-dir>/broker`` for the managed Mosquitto (idempotent, keeps secrets)."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from iotiam.broker.layout import (
    BrokerConfig,
    BrokerFiles,
    dynsec_plugin,
    dynsec_seed,
    render_config,
)
from iotiam.broker.plugin_build import auth_plugin_library
from iotiam.config import write_private_file
from iotiam.pki.authority import create_server_tls_certificate
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.signer import SigningCa

#: renew the broker's own certificate when less than this much of it is left
_RENEW_DAYS = 30


def provision_broker(
    files: BrokerFiles,
    config: BrokerConfig,
    *,
    issuing: SigningCa,
    root: x509.Certificate,
    names: list[str],
    now: datetime,
    serial: int,
) -> None:
    """Write the configuration, CA bundle and (if missing or ageing) the broker certificate.

    The dynsec state and admin password are created once and never replaced: they hold
    what the sync put there, and a restart must find it.
    """
    files.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = serialization.Encoding.PEM
    write_private_file(files.ca, issuing.certificate.public_bytes(pem)
                       + root.public_bytes(pem))
    renew_broker_certificate(files, issuing=issuing, names=names, now=now, serial=serial)
    if not files.admin_password.exists():
        write_private_file(files.admin_password, secrets.token_urlsafe(32))
    if not files.dynsec.exists():
        write_private_file(files.dynsec, dynsec_seed(admin_password(files)))
    if not files.psk_file.exists():
        write_private_file(files.psk_file, "")
    auth_plugin = auth_plugin_library(files.root) if config.auth == "plugin" else None
    write_private_file(files.config, render_config(config, files, dynsec_plugin(), auth_plugin))


def renew_broker_certificate(files: BrokerFiles, *, issuing: SigningCa, names: list[str],
                             now: datetime, serial: int) -> bool:
    """A new key pair and certificate for the broker when it has none, it ages, or
    ``issuing`` (the active issuing CA) did not sign it; True if one was written (the
    running broker re-reads it at SIGHUP)."""
    if not _needs_certificate(files.certificate, now, issuing.certificate):
        return False
    pem = serialization.Encoding.PEM
    server = create_server_tls_certificate(
        issuer=issuing, alg=KeyAlgorithm.EC_P256, names=names, now=now, serial=serial,
        urls=None)
    # Mosquitto cannot ask for a passphrase: the key is unencrypted, 0600, and made here.
    # Two renames, not one: the installer that calls this sends its SIGHUP after both
    # (``installed_files``); a reload falling between them (the log's rotation) would
    # read a mismatched pair, which that installer's SIGHUP then replaces.
    write_private_file(files.key, server.key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    write_private_file(files.certificate, server.certificate.public_bytes(pem)
                       + issuing.certificate.public_bytes(pem))
    return True


def admin_password(files: BrokerFiles) -> str:
    """The dynsec admin password iotiam created."""
    return files.admin_password.read_text().strip()


def _needs_certificate(path: Path, now: datetime, issuing: x509.Certificate) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return True
    # after a rotation or a compromise the broker is certified by the active issuing CA
    return (cert.not_valid_after_utc - now).days < _RENEW_DAYS or cert.issuer != issuing.subject
