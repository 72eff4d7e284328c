"""Stock OpenSSL, as a device maker and a relying party, agrees with the live service.

Keys and CSRs come from ``openssl req``; chains, CRLs and OCSP answers are checked
with ``openssl verify`` and ``openssl ocsp``, at the URLs the certificate itself names
(RFC 5280 §4.2.1.13 CDP, §4.2.2.1 AIA), over plain HTTP as fetched by curl.
"""

from __future__ import annotations

import base64
import secrets
import urllib.parse

import httpx
import pytest

from .live_server import Server
from .relying_party import (
    crl_serials,
    crl_url,
    enroll,
    fetch_crl,
    ocsp,
    ocsp_status,
    ocsp_url,
    run,
    verify,
)

pytestmark = pytest.mark.integration


def _device_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def test_chain_verifies_ok(server: Server, openssl: str) -> None:
    cred = enroll(server, openssl, _device_id("chain"))
    result = verify(openssl, server, cred.leaf)
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"{cred.leaf}: OK"
    # the chain handed out with the certificate is the one the server publishes
    assert cred.chain.read_text() == server.chain_pem.read_text()


def test_urls_in_certificate_point_at_this_server(server: Server, openssl: str) -> None:
    cred = enroll(server, openssl, _device_id("urls"))
    assert ocsp_url(openssl, cred.leaf) == f"{server.http_url}/ocsp"
    assert crl_url(openssl, cred.leaf).startswith(f"{server.http_url}/crl/")


def test_crl_check_passes_then_fails_with_error_23_after_revoke(
    server: Server, openssl: str, curl: str
) -> None:
    cred = enroll(server, openssl, _device_id("crl"))
    url = crl_url(openssl, cred.leaf)

    before = fetch_crl(openssl, curl, url, server.work_dir, f"{cred.device_id}-before")
    assert cred.serial_int not in crl_serials(openssl, before)
    ok = verify(openssl, server, cred.leaf, "-crl_check", "-CRLfile", before)
    assert ok.returncode == 0, ok
    assert ok.stdout.strip() == f"{cred.leaf}: OK"

    server.cli("cert", "revoke", cred.serial, "--reason", "keyCompromise")

    after = fetch_crl(openssl, curl, url, server.work_dir, f"{cred.device_id}-after")
    assert cred.serial_int in crl_serials(openssl, after)
    refused = verify(openssl, server, cred.leaf, "-crl_check", "-CRLfile", after)
    assert refused.returncode != 0, refused
    assert "error 23" in refused.stdout + refused.stderr, refused
    assert "certificate revoked" in refused.stdout + refused.stderr, refused


def test_crl_check_all_with_root_crl_ok(server: Server, openssl: str, curl: str) -> None:
    """The root publishes a CRL too; with it the whole chain checks (``-crl_check_all``)."""
    cred = enroll(server, openssl, _device_id("crlall"))
    with server.api() as api:
        root_id = api.get("/v1/ca").json()["root"]["id"]
    leaf_crl = fetch_crl(openssl, curl, crl_url(openssl, cred.leaf), server.work_dir,
                         f"{cred.device_id}-issuing")
    root_crl = fetch_crl(openssl, curl, f"{server.http_url}/crl/{root_id}.crl",
                         server.work_dir, f"{cred.device_id}-root")
    both = server.work_dir / f"{cred.device_id}-crls.pem"
    both.write_text(leaf_crl.read_text() + root_crl.read_text())
    result = verify(openssl, server, cred.leaf, "-crl_check_all", "-CRLfile", both)
    assert result.returncode == 0, result


@pytest.mark.parametrize(
    "how",
    ["serial-as-openssl-prints-it", "serial-with-colons", "serial-lower-case", "device"],
    ids=["ok/serial-upper", "ok/serial-colons", "ok/serial-lower", "ok/by-device"],
)
def test_ocsp_good_then_revoked_at_once(server: Server, openssl: str, how: str) -> None:
    cred = enroll(server, openssl, _device_id("ocsp"))
    assert ocsp_status(ocsp(openssl, server, cred.leaf), cred.leaf) == "good"
    assert ocsp_status(ocsp(openssl, server, cred.leaf, sha256=True), cred.leaf) == "good"

    if how == "device":
        target = ["--device", cred.device_id]
    elif how == "serial-with-colons":
        target = [":".join(cred.serial[i:i + 2] for i in range(0, len(cred.serial), 2))]
    elif how == "serial-lower-case":
        target = [cred.serial.lower()]
    else:
        target = [cred.serial]
    server.cli("cert", "revoke", *target, "--reason", "keyCompromise")

    # G3: the very next OCSP request sees it, with a nonce, without, and with SHA-256 CertIDs
    for result in (ocsp(openssl, server, cred.leaf),
                   ocsp(openssl, server, cred.leaf, "-no_nonce"),
                   ocsp(openssl, server, cred.leaf, "-no_nonce", sha256=True)):
        assert ocsp_status(result, cred.leaf) == "revoked"
        assert "Reason: keyCompromise" in result.stdout, result.stdout
        assert "Revocation Time:" in result.stdout


def test_ocsp_over_get_ok(server: Server, openssl: str) -> None:
    """RFC 6960 Appendix A.1 GET: base64 request in the path, answer read by ``-respin``."""
    cred = enroll(server, openssl, _device_id("ocspget"))
    request = server.work_dir / f"{cred.device_id}.ocspreq"
    run(openssl, "ocsp", "-issuer", server.issuing_pem, "-cert", cred.leaf, "-no_nonce",
        "-reqout", request)
    encoded = urllib.parse.quote(base64.b64encode(request.read_bytes()).decode(), safe="")
    answer = httpx.get(f"{ocsp_url(openssl, cred.leaf)}/{encoded}", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/ocsp-response"
    response = server.work_dir / f"{cred.device_id}.ocspresp"
    response.write_bytes(answer.content)
    checked = run(openssl, "ocsp", "-respin", response, "-issuer", server.issuing_pem,
                  "-cert", cred.leaf, "-CAfile", server.root_pem, "-no_nonce")
    assert ocsp_status(checked, cred.leaf) == "good"


def test_ocsp_unknown_serial_is_not_good(server: Server, openssl: str) -> None:
    """A serial the CA never issued must not be vouched for."""
    result = run(openssl, "ocsp", "-issuer", server.issuing_pem, "-serial",
                 "0x" + secrets.token_hex(16), "-url", f"{server.http_url}/ocsp",
                 "-CAfile", server.root_pem, "-no_nonce")
    assert "Response verify OK" in result.stderr, result
    assert ": unknown" in result.stdout, result.stdout
