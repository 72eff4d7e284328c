"""EST (RFC 7030) with real clients: strongSwan ``pki --est`` and curl + openssl."""

from __future__ import annotations

import base64
import json
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from iotiam.testing import make_csr, make_key, require_binary

from .live_server import Server

pytestmark = pytest.mark.integration

EST = "/.well-known/est"


@pytest.fixture(scope="module")
def strongswan() -> str:
    """strongSwan's ``pki`` tool."""
    return require_binary("pki")


def claim(server: Server, device_id: str, ttl: str = "10m") -> str:
    """``iotiam claim create``: the token is the last line."""
    out = server.cli("claim", "create", "--device", device_id, "--ttl", ttl).out
    return out.strip().splitlines()[-1]


def run(*args: str | Path, check: bool = False, input: bytes | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    """Run a tool, capturing its output."""
    return subprocess.run([str(a) for a in args], capture_output=True, timeout=60,
                          check=check, input=input)


def swan_key_and_csr(strongswan: str, work: Path, name: str, cn: str | None = None
                     ) -> tuple[Path, Path]:
    """A key and a DER CSR (subject CN=``cn`` or ``name``) made by strongSwan itself."""
    key, csr = work / f"{name}.key", work / f"{name}.csr"
    key.write_bytes(run(strongswan, "--gen", "--type", "ecdsa", "--size", "256",
                        "--outform", "pem", check=True).stdout)
    csr.write_bytes(run(strongswan, "--req", "--type", "priv", "--in", key, "--dn",
                        f"CN={cn or name}", "--outform", "der", check=True).stdout)
    return key, csr


def swan_est(strongswan: str, server: Server, csr: Path, *extra: str | Path
             ) -> subprocess.CompletedProcess[bytes]:
    """``pki --est`` against the live server, trusting its root and issuing CA."""
    return run(strongswan, "--est", "--url", server.api_url, "--cacert", server.root_pem,
               "--cacert", server.issuing_pem, "--in", csr, "--outform", "pem", *extra)


def test_strongswan_enroll_reenroll_ok(server: Server, strongswan: str, openssl: str) -> None:
    work = server.work_dir
    server.register("swan-1")
    token = claim(server, "swan-1")
    key, csr = swan_key_and_csr(strongswan, work, "swan-1")
    enrolled = swan_est(strongswan, server, csr, "--userpass", f"swan-1:{token}")
    assert enrolled.returncode == 0, enrolled.stderr.decode()
    cert_file = work / "swan-1.pem"
    cert_file.write_bytes(enrolled.stdout)
    cert = x509.load_pem_x509_certificate(enrolled.stdout)
    assert cert.subject.rfc4514_string() == "CN=swan-1,OU=root"
    verify = run(openssl, "verify", "-CAfile", server.root_pem, "-untrusted",
                 server.issuing_pem, cert_file)
    assert verify.returncode == 0, verify.stdout

    # RFC 7030 §4.2.2: renew with the current certificate over TLS, new key, same names
    _, new_csr = swan_key_and_csr(strongswan, work, "swan-1-next", cn="swan-1")
    renewed = swan_est(strongswan, server, new_csr, "--cert", cert_file, "--key", key)
    assert renewed.returncode == 0, renewed.stderr.decode()
    new_cert = x509.load_pem_x509_certificate(renewed.stdout)
    assert new_cert.subject == cert.subject
    assert new_cert.serial_number != cert.serial_number
    # a CSR asking for another subject on renewal is refused (RFC 7030 §4.2.2)
    _, renamed = swan_key_and_csr(strongswan, work, "swan-1-other")
    refused = swan_est(strongswan, server, renamed, "--cert", cert_file, "--key", key)
    assert refused.returncode != 0
    assert b"HTTP 400" in refused.stderr
    with server.api() as api:
        audit = api.get("/v1/audit/records", params={"limit": 5000}).json()["items"]
    tags = [r["tag"] for r in audit if r["subject"] == "device:swan-1"]
    assert "device:enrollment:succeeded" in tags
    assert "device:reenrollment:succeeded" in tags


def test_strongswan_fail_replayed_claim(server: Server, strongswan: str) -> None:
    work = server.work_dir
    server.register("swan-2")
    token = claim(server, "swan-2")
    _, csr = swan_key_and_csr(strongswan, work, "swan-2")
    first = swan_est(strongswan, server, csr, "--userpass", f"swan-2:{token}")
    assert first.returncode == 0, first.stderr.decode()
    # the captured request again: same CSR, same claim
    replay = swan_est(strongswan, server, csr, "--userpass", f"swan-2:{token}")
    assert replay.returncode != 0
    assert b"HTTP 409" in replay.stderr
    # the claim again with a fresh key: already used
    _, other_csr = swan_key_and_csr(strongswan, work, "swan-2b", cn="swan-2")
    reuse = swan_est(strongswan, server, other_csr, "--userpass", f"swan-2:{token}")
    assert reuse.returncode != 0
    assert b"HTTP 401" in reuse.stderr
    with server.api() as api:
        certs = api.get("/v1/certificates", params={"device": "swan-2"}).json()["items"]
        audit = api.get("/v1/audit/records", params={"limit": 5000}).json()["items"]
    assert len(certs) == 1
    refused = [r for r in audit if r["tag"] == "device:enrollment:refused"
               and "swan-2" in r["subject"]]
    assert len(refused) >= 2
    assert all(r["outcome"] in ("failure", "denied") for r in refused)


def test_reenroll_fail_revoked_certificate(server: Server, strongswan: str) -> None:
    work = server.work_dir
    server.register("swan-3")
    token = claim(server, "swan-3")
    key, csr = swan_key_and_csr(strongswan, work, "swan-3")
    enrolled = swan_est(strongswan, server, csr, "--userpass", f"swan-3:{token}")
    assert enrolled.returncode == 0, enrolled.stderr.decode()
    cert_file = work / "swan-3.pem"
    cert_file.write_bytes(enrolled.stdout)
    server.cli("cert", "revoke", "--device", "swan-3", "--reason", "keyCompromise")
    _, new_csr = swan_key_and_csr(strongswan, work, "swan-3-next", cn="swan-3")
    renewed = swan_est(strongswan, server, new_csr, "--cert", cert_file, "--key", key)
    assert renewed.returncode != 0
    assert b"HTTP 401" in renewed.stderr


def test_curl_openssl_read_cacerts_and_enroll_ok(server: Server, openssl: str, curl: str
                                                 ) -> None:
    # `openssl base64 -d` needs wrapped lines; curl sends a User-Agent so it gets them
    fetched = run(curl, "-sS", "--cacert", server.tls_ca_file, f"{server.api_url}{EST}/cacerts")
    assert fetched.returncode == 0, fetched.stderr
    assert max(len(line) for line in fetched.stdout.splitlines()) <= 64
    decoded = run(openssl, "base64", "-d", input=fetched.stdout)
    printed = run(openssl, "pkcs7", "-inform", "DER", "-print_certs", input=decoded.stdout)
    assert b"CN = iotiam Root CA" in printed.stdout
    assert b"CN = iotiam Issuing CA 1" in printed.stdout

    server.register("curl-gw-1", "gateway")
    token = claim(server, "curl-gw-1")
    key_file = server.work_dir / "curl-gw-1.key"
    req = run(openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", key_file, "-subj", "/CN=curl-gw-1", "-outform", "DER")
    body = "\n".join(textwrap.wrap(base64.b64encode(req.stdout).decode(), 64)) + "\n"
    body_file = server.work_dir / "curl-gw-1.b64"
    body_file.write_text(body)
    answer = run(curl, "-sS", "--fail-with-body", "--cacert", server.tls_ca_file, "-u",
                 f"curl-gw-1:{token}", "-H", "Content-Type: application/pkcs10",
                 "--data-binary", f"@{body_file}", f"{server.api_url}{EST}/gateway/simpleenroll")
    assert answer.returncode == 0, answer.stdout
    der = run(openssl, "base64", "-d", input=answer.stdout).stdout
    printed = run(openssl, "pkcs7", "-inform", "DER", "-print_certs", input=der).stdout
    assert b"subject=OU = root, CN = curl-gw-1" in printed
    certs = pkcs7.load_der_pkcs7_certificates(der)
    lifetime = certs[0].not_valid_after_utc - certs[0].not_valid_before_utc
    assert lifetime.days == 7  # the "gateway" label chose the gateway profile


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        pytest.param({"Content-Type": "application/json"}, b"e30=", 400, id="fail/content-type"),
        pytest.param({"Content-Type": "application/pkcs10"}, b"%%%not base64%%%", 400,
                     id="fail/not-base64"),
        pytest.param({"Content-Type": "application/pkcs10"}, base64.b64encode(b"garbage"), 400,
                     id="fail/not-a-csr"),
        pytest.param({"Content-Type": "application/pkcs10"}, b"A" * (2 * 1024 * 1024), 413,
                     id="fail/oversize"),
    ],
)
def test_simpleenroll_fail_bad_body(server: Server, headers: dict[str, str], body: bytes,
                                    status: int) -> None:
    device = f"bad-{status}-{len(body)}-{headers['Content-Type'][-4:]}"
    server.register(device)
    token = claim(server, device)
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(), timeout=30) as c:
        answer = c.post(f"{EST}/simpleenroll", content=body, headers=headers,
                        auth=(device, token))
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    with server.api() as api:
        assert api.get("/v1/certificates", params={"device": device}).json()["items"] == []
    # the refused request did not burn the claim
    csr = make_csr(device, pem=False)
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(), timeout=30) as c:
        retry = c.post(f"{EST}/simpleenroll", content=base64.b64encode(csr),
                       headers={"Content-Type": "application/pkcs10"}, auth=(device, token))
    assert retry.status_code == 200, retry.text


def test_claim_fail_fifty_concurrent_uses(server: Server) -> None:
    """G8: 50 devices racing with one claim token (each with its own key): one wins."""
    server.register("race-1")
    token = claim(server, "race-1")
    bodies = [base64.b64encode(make_csr("race-1", make_key(), pem=False)) for _ in range(50)]

    def attempt(body: bytes) -> int:
        with httpx.Client(base_url=server.api_url, verify=server.tls_context(),
                          timeout=60) as c:
            return c.post(f"{EST}/simpleenroll", content=body,
                          headers={"Content-Type": "application/pkcs10"},
                          auth=("race-1", token)).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(attempt, bodies))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 401}
    with server.api() as api:
        certs = api.get("/v1/certificates", params={"device": "race-1"}).json()["items"]
    assert len(certs) == 1


def test_claim_fail_expired_and_wrong_device(server: Server) -> None:
    server.register("exp-1")
    server.register("exp-2")
    token = claim(server, "exp-1", ttl="30s")
    body = base64.b64encode(make_csr("exp-2", pem=False))
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(), timeout=30) as c:
        wrong = c.post(f"{EST}/simpleenroll", content=body,
                       headers={"Content-Type": "application/pkcs10"}, auth=("exp-2", token))
        missing = c.post(f"{EST}/simpleenroll", content=body,
                         headers={"Content-Type": "application/pkcs10"})
    assert wrong.status_code == 401
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic")


def test_reenroll_fail_proxy_header_from_untrusted_peer(server: Server) -> None:
    """The client-certificate header is only believed from a configured trusted proxy."""
    server.register("proxy-1")
    token = claim(server, "proxy-1")
    key = make_key()
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(), timeout=30) as c:
        enrolled = c.post(f"{EST}/simpleenroll",
                          content=base64.b64encode(make_csr("proxy-1", key, pem=False)),
                          headers={"Content-Type": "application/pkcs10"},
                          auth=("proxy-1", token))
        assert enrolled.status_code == 200
        cert = pkcs7.load_der_pkcs7_certificates(base64.b64decode(enrolled.content))[0]
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        forged = c.post(f"{EST}/simplereenroll",
                        content=base64.b64encode(make_csr("proxy-1", pem=False)),
                        headers={"Content-Type": "application/pkcs10",
                                 "X-SSL-Client-Cert": quote(pem)})
    assert forged.status_code == 401, forged.text


def test_enroll_fail_forwarded_for_from_untrusted_peer_is_not_the_source(
        server: Server) -> None:
    """X-Forwarded-For is only believed from IOTIAM_TRUSTED_PROXIES (none here), not
    even from 127.0.0.1: the audit names the real peer as the source."""
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(), timeout=30) as c:
        answer = c.post(f"{EST}/simpleenroll",
                        content=base64.b64encode(make_csr("xff-unknown", pem=False)),
                        headers={"Content-Type": "application/pkcs10",
                                 "X-Forwarded-For": "10.1.2.3"})
    assert answer.status_code in (202, 401, 403), answer.text
    with server.api() as api:
        records = api.get("/v1/audit/records", params={"limit": 5000}).json()["items"]
    mine = [r for r in records if "xff-unknown" in json.dumps(r)]
    assert mine, "the anonymous enrollment attempt was not audited"
    assert "10.1.2.3" not in json.dumps(mine)
    assert "127.0.0.1" in json.dumps(mine)
