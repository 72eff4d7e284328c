"""The exact pkilint command lines, run as real processes (other tests lint in-process)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from iotiam.pki.crl import build_crl
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.models import Revocation, RevocationReason
from iotiam.pki.ocsp import CertStatusInfo, OcspResponder
from iotiam.pki.profiles import DEVICE

DER = serialization.Encoding.DER
CERT = ["lint_pkix_cert", "lint", "-s", "ERROR"]
CRL = ["lint_crl", "lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR"]
OCSP = ["lint_ocsp_response", "lint", "-s", "ERROR"]


@pytest.fixture(scope="module")
def documents(hierarchy, leaf_builder, device_identity, ec_key, now, tmp_path_factory):
    """Every kind of document iotiam signs, written to disk: name → (command, path)."""
    directory = tmp_path_factory.mktemp("pkilint-cli")
    # DNS names only: pkilint rejects URI SANs outside http(s)-like schemes.
    identity = LeafIdentity(subject=device_identity.subject, dns_names=device_identity.dns_names)
    device = leaf_builder.issue(
        ec_key.public_key(), identity, DEVICE, x509.random_serial_number(), now
    )
    crl = build_crl(
        signer=hierarchy.issuing.signer,
        issuer_cert=hierarchy.issuing.certificate,
        revocations=[
            Revocation(device.serial_number, now, RevocationReason.KEY_COMPROMISE, now),
            Revocation(0x42, now, RevocationReason.UNSPECIFIED, now),
        ],
        crl_number=1,
        this_update=now,
        next_update=now + timedelta(days=1),
    )
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(device, hierarchy.issuing.certificate, hashes.SHA256())
        .add_extension(x509.OCSPNonce(b"\x5a" * 32), critical=False)
        .build()
        .public_bytes(DER)
    )
    responder = OcspResponder.from_material(hierarchy.issuing.certificate, hierarchy.responder)
    revoked = CertStatusInfo("revoked", now, RevocationReason.KEY_COMPROMISE)
    items = {
        "root": (CERT, hierarchy.root.certificate.public_bytes(DER)),
        "issuing": (CERT, hierarchy.issuing.certificate.public_bytes(DER)),
        "responder": (CERT, hierarchy.responder.certificate.public_bytes(DER)),
        "server": (CERT, hierarchy.server.certificate.public_bytes(DER)),
        "device": (CERT, device.public_bytes(DER)),
        "crl": (CRL, crl.public_bytes(DER)),
        "ocsp-revoked": (OCSP, responder.respond(request, lambda serial: revoked, now)),
    }
    result = {}
    for name, (command, der) in items.items():
        path = directory / f"{name}.der"
        path.write_bytes(der)
        result[name] = (command, path)
    return result


@pytest.mark.parametrize(
    "name", ["root", "issuing", "responder", "server", "device", "crl", "ocsp-revoked"]
)
def test_pkilint_cli_ok_clean_at_error_level(documents, pkilint_cli, name):
    command, path = documents[name]
    result = pkilint_cli(command, path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
