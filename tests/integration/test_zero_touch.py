"""Zero-touch enrollment over real mTLS: IDevIDs with curl + openssl, the CLI, a live server.

The manufacturer CA is registered *after* ``iotiam serve`` started, so every IDevID
handshake here also proves the live TLS context learned the new trust anchor.
"""

from __future__ import annotations

import base64
import subprocess
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from conftest import BACKENDS
from iotiam.testing import Issuer, make_idevid, make_manufacturer_ca, require_binary

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration

EST = "/.well-known/est"


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """The module's live server, telling held clients to retry after 1 s (not 60)."""
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"zt-{request.param}"),
                          {"IOTIAM_EST_RETRY_AFTER": "1"})


@pytest.fixture(scope="module")
def strongswan() -> str:
    """strongSwan's ``pki``."""
    return require_binary("pki")


@pytest.fixture(scope="module")
def maker(server: Server) -> Issuer:
    """A manufacturer registered with the CLI, with ZT-1 and ZT-2 in its manifest."""
    ca = make_manufacturer_ca("Zero Touch Devices CA", now=datetime.now(UTC))
    ca_file = server.work_dir / "maker-ca.pem"
    ca_file.write_text(ca.pem)
    out = server.cli("manufacturer", "add", "zt-maker", "--ca", ca_file, "--type", "sensor").out
    assert "registered manufacturer zt-maker" in out
    manifest = server.work_dir / "manifest.csv"
    manifest.write_text("serial,batch\nZT-1,b1\nZT-2,b1\nZT-4,b1\nZT-5,b2\n")
    assert "imported 4, failed 0" in server.cli("manufacturer", "manifest", "zt-maker",
                                                manifest).out
    listed = server.cli("manufacturer", "list").out
    assert "zt-maker" in listed
    return ca


def device_files(server: Server, ca: Issuer, serial: str, openssl: str) -> tuple[Path, Path,
                                                                                  Path]:
    """IDevID + key files, and a base64 CSR body (CN = serial) made by openssl."""
    identity = make_idevid(ca, serial, not_before=datetime.now(UTC) - timedelta(days=1))
    work = server.work_dir
    cert_file, key_file = work / f"{serial}-idevid.pem", work / f"{serial}-idevid.key"
    cert_file.write_text(identity.pem)
    key_file.write_bytes(identity.key_pem())
    ldevid_key = work / f"{serial}.key"
    req = subprocess.run([openssl, "req", "-new", "-newkey", "ec", "-pkeyopt",
                          "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ldevid_key),
                          "-subj", f"/CN={serial}", "-outform", "DER"],
                         capture_output=True, check=True, timeout=30)
    body = work / f"{serial}.b64"
    body.write_text("\n".join(textwrap.wrap(base64.b64encode(req.stdout).decode(), 64)) + "\n")
    return cert_file, key_file, body


def curl_enroll(server: Server, curl: str, body: Path, cert: Path | None = None,
                key: Path | None = None) -> tuple[int, str, bytes]:
    """POST simpleenroll with curl (mTLS when given a certificate): exit code, headers, body."""
    headers = body.with_suffix(".headers")
    out = body.with_suffix(".out")
    tls = ["--cert", str(cert), "--key", str(key)] if cert and key else []
    proc = subprocess.run(
        [curl, "-sS", "--cacert", str(server.tls_ca_file), *tls,
         "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{body}",
         "-D", str(headers), "-o", str(out), f"{server.api_url}{EST}/simpleenroll"],
        capture_output=True, timeout=30, check=False)
    return (proc.returncode, headers.read_text() if headers.exists() else "",
            out.read_bytes() if out.exists() else proc.stderr)


def status_of(headers: str) -> int:
    """The HTTP status of the (last) response in a curl header dump."""
    lines = [h for h in headers.splitlines() if h.startswith("HTTP/")]
    return int(lines[-1].split()[1])


def certificate(openssl: str, answer: bytes) -> x509.Certificate:
    """The leaf of a base64 certs-only answer, decoded by ``openssl base64 -d``."""
    der = subprocess.run([openssl, "base64", "-d"], input=answer, capture_output=True,
                         check=True, timeout=30).stdout
    return pkcs7.load_der_pkcs7_certificates(der)[0]


def test_idevid_enroll_over_mtls_ok(server: Server, maker: Issuer, openssl: str,
                                    curl: str) -> None:
    cert_file, key_file, body = device_files(server, maker, "ZT-1", openssl)
    rc, headers, answer = curl_enroll(server, curl, body, cert_file, key_file)
    assert rc == 0, answer
    assert status_of(headers) == 200, answer
    leaf = certificate(openssl, answer)
    assert leaf.subject.rfc4514_string() == "CN=ZT-1,OU=root"
    leaf_file = server.work_dir / "ZT-1.pem"
    leaf_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    verify = subprocess.run([openssl, "verify", "-CAfile", str(server.root_pem), "-untrusted",
                             str(server.issuing_pem), str(leaf_file)], capture_output=True,
                            timeout=30, check=False)
    assert verify.returncode == 0, verify.stdout
    shown = server.cli("device", "show", "ZT-1").out
    assert "active" in shown and "sensor" in shown
    # the captured request again (same CSR, same IDevID): a replay, refused
    rc, headers, answer = curl_enroll(server, curl, body, cert_file, key_file)
    assert status_of(headers) == 409, answer


def test_idevid_fail_unknown_manufacturer_at_tls(server: Server, maker: Issuer,
                                                 openssl: str, curl: str) -> None:
    stranger = make_manufacturer_ca("Stranger CA", now=datetime.now(UTC))
    cert_file, key_file, body = device_files(server, stranger, "ZT-2", openssl)
    rc, headers, _ = curl_enroll(server, curl, body, cert_file, key_file)
    # iotiam terminates TLS: a CA it does not trust fails the handshake
    assert rc != 0
    assert not headers.startswith("HTTP/")
    with server.api() as api:
        assert api.get("/v1/devices/ZT-2").status_code == 404
        held = api.get("/v1/enrollment-requests", params={"status": "all"}).json()["items"]
    assert all(r["device"] != "ZT-2" for r in held)


def test_unknown_serial_202_then_approve_and_poll_ok(server: Server, maker: Issuer,
                                                     openssl: str, curl: str) -> None:
    cert_file, key_file, body = device_files(server, maker, "ZT-3", openssl)
    rc, headers, answer = curl_enroll(server, curl, body, cert_file, key_file)
    assert rc == 0, answer
    # RFC 7030 §4.2.3: 202 + Retry-After; the device polls again with the same CSR
    assert status_of(headers) == 202, answer
    assert "retry-after: 1" in headers.lower()
    pending = server.cli("enrollment", "pending").out
    assert "ZT-3" in pending and "serial-not-in-manifest" in pending
    with server.api() as api:
        (request,) = [r for r in api.get("/v1/enrollment-requests").json()["items"]
                      if r["device"] == "ZT-3"]
    _, headers, _ = curl_enroll(server, curl, body, cert_file, key_file)
    assert status_of(headers) == 202
    approved = server.cli("enrollment", "approve", request["id"]).out
    assert f"approved {request['id']}" in approved
    rc, headers, answer = curl_enroll(server, curl, body, cert_file, key_file)
    assert status_of(headers) == 200, answer
    assert certificate(openssl, answer).subject.rfc4514_string() == "CN=ZT-3,OU=root"
    twice = server.cli("enrollment", "approve", request["id"], check=False)
    assert twice.rc == 1
    assert twice.err.startswith("error: ") and "already approved" in twice.err
    assert len(twice.err.strip().splitlines()) == 1


def test_anonymous_unknown_device_rejected_then_poll_403(server: Server, openssl: str,
                                                         curl: str) -> None:
    _, _, body = device_files(server, make_manufacturer_ca(now=datetime.now(UTC)), "anon-1",
                              openssl)
    rc, headers, answer = curl_enroll(server, curl, body)
    assert rc == 0 and status_of(headers) == 202, answer
    with server.api() as api:
        (request,) = [r for r in api.get("/v1/enrollment-requests").json()["items"]
                      if r["device"] == "anon-1"]
    assert request["reason"] == "unknown-device"
    server.cli("enrollment", "reject", request["id"], "--reason", "not ours")
    _, headers, answer = curl_enroll(server, curl, body)
    assert status_of(headers) == 403, answer
    assert b"rejected" in answer


def test_transfer_cli_new_claim_enrolls(server: Server, openssl: str, curl: str) -> None:
    server.cli("org", "create", "zt-tenant", "--kind", "tenant")
    server.register("zt-moving")
    result = server.cli("device", "transfer", "zt-moving", "--to", "zt-tenant", "--ttl", "2h")
    assert "transferred zt-moving from root to zt-tenant" in result.out
    token = result.out.strip().splitlines()[-1]
    assert token.startswith("iotc_")
    _, _, body = device_files(server, make_manufacturer_ca(now=datetime.now(UTC)), "zt-moving",
                              openssl)
    proc = subprocess.run(
        [curl, "-sS", "--fail-with-body", "--cacert", str(server.tls_ca_file), "-u",
         f"zt-moving:{token}", "-H", "Content-Type: application/pkcs10", "--data-binary",
         f"@{body}", f"{server.api_url}{EST}/simpleenroll"],
        capture_output=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stdout
    assert "OU=zt-tenant" in certificate(openssl, proc.stdout).subject.rfc4514_string()
    bad = server.cli("device", "transfer", "ghost", "--to", "zt-tenant", check=False)
    assert (bad.rc, bad.err.strip()) == (1, "error: device 'ghost' not found (HTTP 404)")


def test_manifest_cli_bad_rows_exit_3(server: Server, maker: Issuer) -> None:
    manifest = server.work_dir / "bad-manifest.json"
    manifest.write_text('[{"serial": "ZT-9"}, {"serial": "bad serial"}, 7]')
    result = server.cli("manufacturer", "manifest", "zt-maker", manifest, "--report",
                        server.work_dir / "report.csv", check=False)
    assert result.rc == 3
    assert "imported 1, failed 2 of 3 rows" in result.out
    report = (server.work_dir / "report.csv").read_text().splitlines()
    assert report[0] == "row,serial,error" and len(report) == 3
    missing = server.cli("manufacturer", "add", "m2", "--ca", server.work_dir / "nope.pem",
                         check=False)
    assert missing.rc == 1 and missing.err.startswith("error: cannot read")


def swan_csr(strongswan: str, work: Path, name: str) -> Path:
    """A new key and a DER CSR (CN = ``name``) made by strongSwan."""
    key, csr = work / f"{name}-swan.key", work / f"{name}-swan.csr"
    key.write_bytes(subprocess.run([strongswan, "--gen", "--type", "ecdsa", "--size", "256",
                                    "--outform", "pem"], capture_output=True, check=True,
                                   timeout=30).stdout)
    csr.write_bytes(subprocess.run([strongswan, "--req", "--type", "priv", "--in", str(key),
                                    "--dn", f"CN={name}", "--outform", "der"],
                                   capture_output=True, check=True, timeout=30).stdout)
    return csr


def swan_est(strongswan: str, server: Server, csr: Path, idevid_cert: Path, idevid_key: Path
             ) -> list[str]:
    """``pki --est`` presenting an IDevID; strongSwan sends it to simplereenroll."""
    return [strongswan, "--est", "--url", server.api_url, "--cacert", str(server.root_pem),
            "--cacert", str(server.issuing_pem), "--in", str(csr), "--cert", str(idevid_cert),
            "--key", str(idevid_key), "--outform", "pem", "--interval", "1",
            "--maxpolltime", "20"]


def test_strongswan_idevid_enroll_ok(server: Server, maker: Issuer, strongswan: str,
                                     openssl: str) -> None:
    cert_file, key_file, _ = device_files(server, maker, "ZT-4", openssl)
    csr = swan_csr(strongswan, server.work_dir, "ZT-4")
    done = subprocess.run(swan_est(strongswan, server, csr, cert_file, key_file),
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    leaf = x509.load_pem_x509_certificate(done.stdout)
    assert leaf.subject.rfc4514_string() == "CN=ZT-4,OU=root"


def test_strongswan_polls_until_approved(server: Server, maker: Issuer, strongswan: str,
                                         openssl: str) -> None:
    """RFC 7030 §4.2.3 with a real client: 202, polls with the same CSR, approval, 200."""
    cert_file, key_file, _ = device_files(server, maker, "ZT-6", openssl)
    csr = swan_csr(strongswan, server.work_dir, "ZT-6")
    client = subprocess.Popen(swan_est(strongswan, server, csr, cert_file, key_file),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        request_id = None
        deadline = time.monotonic() + 15
        while request_id is None and time.monotonic() < deadline:
            with server.api() as api:
                held = [r for r in api.get("/v1/enrollment-requests").json()["items"]
                        if r["device"] == "ZT-6"]
            request_id = held[0]["id"] if held else None
            time.sleep(0.2)
        assert request_id is not None, "strongSwan's request was not held"
        assert client.poll() is None  # still polling
        server.cli("enrollment", "approve", request_id)
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err.decode()
    assert b"EST request pending, polling every 1 seconds" in err
    assert x509.load_pem_x509_certificate(out).subject.rfc4514_string() == "CN=ZT-6,OU=root"
    with server.api() as api:
        shown = api.get(f"/v1/enrollment-requests/{request_id}").json()
    assert shown["status"] == "approved"
