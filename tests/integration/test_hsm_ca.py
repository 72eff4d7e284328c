"""CA keys in a real SoftHSM2 token: ``init --ca-key pkcs11:...``, then ``serve`` issues,
publishes CRLs and answers OCSP with keys that never leave the token (docs/hsm.md)."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from joserfc import jwt
from joserfc.jwk import ECKey

from iotiam.testing import make_csr
from iotiam.testing.softhsm import SoftHsmToken, create_token

from .live_server import Server, launch, venv_tool
from .relying_party import crl_serials, crl_url, enroll, fetch_crl, ocsp, ocsp_status, verify
from .test_oauth import enroll as oauth_enroll
from .test_oauth import introspect_cli, mtls_token

pytestmark = pytest.mark.integration

CA_KEY = "pkcs11:token=iotiam;object=issuing-ca"
PEM_KEY = re.compile(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----",
                     re.DOTALL)


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmToken:
    return create_token(tmp_path_factory.mktemp("softhsm"))


@pytest.fixture(scope="module")
def hsm_server(tmp_path_factory: pytest.TempPathFactory, token: SoftHsmToken
               ) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("iotiam-hsm")
    # two serving processes: each opens its own session on the token after the fork
    server = launch("sqlite", base, None, token.environment(), init_args=("--ca-key", CA_KEY),
                    serve_args=("--workers", "2"))
    try:
        yield server
    finally:
        crashed = server.process is None
        server.stop()
        assert crashed or "Traceback" not in server.log_text(), server.log_text()


def _presented_leaf(port: int) -> x509.Certificate:
    """The leaf a fresh TLS handshake to ``port`` presents (not verified: only read)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _device_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def _token_public_keys(token: SoftHsmToken, tmp: Path) -> set[bytes]:
    """The SPKIs of the public keys on the token, as ``pkcs11-tool``-free Python reads
    them (a separate process: the library keeps one session per process)."""
    script = (
        "import pkcs11, sys\n"
        "from pkcs11 import Attribute, ObjectClass\n"
        "from pkcs11.util.ec import encode_ec_public_key\n"
        f"t = pkcs11.lib({token.module!r}).get_token(token_label={token.label!r})\n"
        f"with t.open(user_pin={token.pin!r}) as s:\n"
        "    for k in s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):\n"
        "        print(k.label, encode_ec_public_key(k).hex())\n")
    out = subprocess.run([venv_tool("python"), "-c", script], capture_output=True, text=True,
                         env={"SOFTHSM2_CONF": str(token.conf)}, check=True).stdout
    return {bytes.fromhex(line.split()[1]) for line in out.splitlines()}


def test_ca_keys_ok_generated_in_token_and_named_by_certificates(hsm_server, token, tmp_path):
    on_token = _token_public_keys(token, tmp_path)
    rows = hsm_server.sql("SELECT role, encrypted_key_pem, certificate_pem FROM cas")
    held = {role: (key, pem) for role, key, pem in rows}
    for role, obj in (("root", "root-ca"), ("issuing", "issuing-ca"),
                      ("ocsp", "ocsp-responder")):
        key_field, pem = held[role]
        assert key_field == f"pkcs11:token=iotiam;object={obj}"
        spki = x509.load_pem_x509_certificate(pem.encode()).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert spki in on_token, role


def test_no_private_key_of_the_token_in_data_dir(hsm_server, token, tmp_path):
    """Every private key in the data directory (files and database) is decrypted and
    none is a CA key: the token's keys exist nowhere else."""
    passphrase = (hsm_server.data_dir / "secrets" / "ca-passphrase").read_bytes().strip()
    on_token = _token_public_keys(token, tmp_path)
    found = 0
    for path in hsm_server.data_dir.rglob("*"):
        if not path.is_file():
            continue
        for match in PEM_KEY.finditer(path.read_bytes()):
            found += 1
            encrypted = b"ENCRYPTED" in match.group(1)
            key = serialization.load_pem_private_key(
                match.group(0), passphrase if encrypted else None)
            spki = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            assert spki not in on_token, f"a token key is in {path}"
    assert found >= 1  # the server's own TLS key is there: the scan did read keys
    assert len(on_token) >= 3  # the CA keys (and access-token keys, once made)


def test_issue_ok_chain_verifies(hsm_server, openssl):
    cred = enroll(hsm_server, openssl, _device_id("hsm"))
    result = verify(openssl, hsm_server, cred.leaf)
    assert result.returncode == 0, result
    assert result.stdout.strip() == f"{cred.leaf}: OK"


def test_est_enroll_ok_signed_in_token(hsm_server):
    """RFC 7030 §4.2.1 simpleenroll with a claim token: the leaf is signed by the token."""
    device = _device_id("hsm-est")
    hsm_server.register(device)
    token = hsm_server.cli("claim", "create", "--device", device, "--ttl", "10m"
                           ).out.strip().splitlines()[-1]
    with httpx.Client(base_url=hsm_server.api_url, verify=hsm_server.tls_context(),
                      timeout=30) as client:
        answer = client.post("/.well-known/est/simpleenroll",
                             content=base64.b64encode(make_csr(device, pem=False)),
                             headers={"Content-Type": "application/pkcs10"},
                             auth=(device, token))
    assert answer.status_code == 200, answer.text
    (leaf,) = pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.content))
    issuing = x509.load_pem_x509_certificate(hsm_server.issuing_pem.read_bytes())
    leaf.verify_directly_issued_by(issuing)
    assert leaf.subject.rfc4514_string().startswith(f"CN={device}")


def test_crl_ok_signed_in_token_then_lists_revoked(hsm_server, openssl, curl):
    cred = enroll(hsm_server, openssl, _device_id("hsm-crl"))
    url = crl_url(openssl, cred.leaf)
    before = fetch_crl(openssl, curl, url, hsm_server.work_dir, f"{cred.device_id}-before")
    ok = verify(openssl, hsm_server, cred.leaf, "-crl_check", "-CRLfile", before)
    assert ok.returncode == 0, ok
    hsm_server.cli("cert", "revoke", cred.serial, "--reason", "keyCompromise")
    after = fetch_crl(openssl, curl, url, hsm_server.work_dir, f"{cred.device_id}-after")
    assert cred.serial_int in crl_serials(openssl, after)
    refused = verify(openssl, hsm_server, cred.leaf, "-crl_check", "-CRLfile", after)
    assert "certificate revoked" in refused.stdout + refused.stderr, refused


def test_ocsp_ok_good_then_revoked(hsm_server, openssl):
    cred = enroll(hsm_server, openssl, _device_id("hsm-ocsp"))
    assert ocsp_status(ocsp(openssl, hsm_server, cred.leaf), cred.leaf) == "good"
    hsm_server.cli("cert", "revoke", cred.serial, "--reason", "keyCompromise")
    assert ocsp_status(ocsp(openssl, hsm_server, cred.leaf, "-no_nonce"),
                       cred.leaf) == "revoked"


def test_access_token_ok_signed_by_key_in_token(hsm_server, token, tmp_path):
    """The access-token signing key is made in the issuing CA's token too: the database
    names it by URI, the JWKS publishes it, and a token it signs verifies there."""
    device = oauth_enroll(hsm_server, _device_id("hsm-oauth"))
    answer = mtls_token(hsm_server, device)
    assert answer.status_code == 200, answer.text
    access_token = answer.json()["access_token"]
    (key_field,) = [row[0] for row in hsm_server.sql(
        "SELECT encrypted_key_pem FROM oauth_signing_keys WHERE retired_at IS NULL")]
    assert key_field.startswith("pkcs11:token=iotiam;object=oauth-signing-")
    jwks = httpx.get(f"{hsm_server.api_url}/oauth2/jwks", verify=hsm_server.tls_context())
    keys = [ECKey.import_key(k) for k in jwks.json()["keys"]]
    (published,) = keys
    assert published.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) in _token_public_keys(token, tmp_path)
    claims = jwt.decode(access_token, published, algorithms=["ES256"]).claims
    assert claims["client_id"] == device.device_id
    assert introspect_cli(hsm_server, access_token)["active"] is True


def test_serve_fail_wrong_pin_is_one_line(hsm_server, token):
    env = {**hsm_server.env, "IOTIAM_PKCS11_PIN": "0000-wrong"}
    # `serve` opens the CA keys before it binds a port: the running server is untouched
    proc = subprocess.run([hsm_server.executable, "--data-dir", str(hsm_server.data_dir),
                           "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip() == "error: the PIN for the PKCS#11 token 'iotiam' is wrong"


def test_serve_fail_key_gone_from_token_is_one_line(hsm_server, token, tmp_path):
    env = {**hsm_server.env, "SOFTHSM2_CONF": str(_empty_store(tmp_path, token))}
    proc = subprocess.run([hsm_server.executable, "--data-dir", str(hsm_server.data_dir),
                           "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error: no EC key 'root-ca' on the PKCS#11 token"), \
        proc.stderr


def _empty_store(tmp_path: Path, token: SoftHsmToken) -> Path:
    """Another store with a token of the same label and PIN, but none of the keys."""
    other = create_token(tmp_path / "other", label=token.label, pin=token.pin)
    return other.conf


@pytest.mark.parametrize("uri, pin, expected", [
    (CA_KEY, "0000-wrong", "error: the PIN for the PKCS#11 token 'iotiam' is wrong"),
    ("pkcs11:token=absent;object=issuing-ca", None, "error: no PKCS#11 token 'absent' in "),
    ("pkcs11:object=issuing-ca", None, "error: a signing key's PKCS#11 URI names its token"),
], ids=["fail/wrong-pin", "fail/no-such-token", "fail/no-token-in-uri"])
def test_init_fail_is_one_line_and_writes_nothing(token, tmp_path, uri, pin, expected):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IOTIAM_")},
           "NO_COLOR": "1", "COLUMNS": "250",
           **token.environment(), **({"IOTIAM_PKCS11_PIN": pin} if pin else {})}
    data_dir = tmp_path / "data"
    proc = subprocess.run([venv_tool("iotiam"), "--data-dir", str(data_dir), "init",
                           "--no-broker", "--ca-key", uri],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().startswith(expected), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not data_dir.exists()


def test_rotate_ok_new_issuing_key_made_in_the_token(hsm_server, token, tmp_path, openssl):
    """``ca rotate`` makes the new issuing CA's key (and its responder's) in the token
    the old one is in; both ``serve`` workers issue under it (the other one learns
    through the change feed). Last in this module: it changes the active CA."""
    before = _token_public_keys(token, tmp_path)
    rotated = json.loads(hsm_server.cli("ca", "rotate", "--json").out)
    ((key_field, pem),) = hsm_server.sql(
        "SELECT encrypted_key_pem, certificate_pem FROM cas WHERE id = :id", id=rotated["new"])
    assert key_field.startswith("pkcs11:token=iotiam;object=issuing-ca-"), key_field
    new_ca = x509.load_pem_x509_certificate(pem.encode())
    spki = new_ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki in _token_public_keys(token, tmp_path) and spki not in before
    issuing = tmp_path / "issuing-2.pem"
    issuing.write_bytes(new_ca.public_bytes(serialization.Encoding.PEM))
    deadline = time.monotonic() + 10
    for _ in range(4):  # requests reach either worker
        while True:
            cred = enroll(hsm_server, openssl, _device_id("hsm-rot"))
            issued = x509.load_pem_x509_certificate(cred.leaf.read_bytes())
            if issued.issuer == new_ca.subject or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert issued.issuer == new_ca.subject
        done = subprocess.run([openssl, "verify", "-CAfile", str(hsm_server.root_pem),
                               "-untrusted", str(issuing), str(cred.leaf)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done
    # both workers present a server certificate of the new CA (one made it, both load it)
    in_a_row, deadline = 0, time.monotonic() + 15
    while in_a_row < 8:
        presented = _presented_leaf(hsm_server.port)
        in_a_row = in_a_row + 1 if presented.issuer == new_ca.subject else 0
        assert in_a_row or time.monotonic() < deadline, f"still serves {presented.issuer}"
