"""cfssl and step-ca, built from Debian's packages, as servers on 127.0.0.1 for ``peers``.

Each peer gets a throw-away P-256 PKI made here with ``cryptography`` (a root and an
issuing CA), its own configuration and a free port; its log goes to a file, shown when it
does not come up. cfssl is the ``cfssl`` of ``golang-cfssl``. Debian ships step-ca's
server code only (``golang-github-smallstep-certificates-dev``), so its binary is built
as benchmarks/README.md says and found through ``IOTIAM_BENCH_STEP_CA`` or as
``step-ca`` on ``PATH``. Debian has no ``step`` CLI either: ``ca.json`` and the
one-time tokens of its JWK provisioner are written here.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from joserfc import jwt
from joserfc.jwk import ECKey

from benchmarks.harness import clean_environment
from benchmarks.loadgen import Answer, encode_request
from benchmarks.server import stop_process, wait_until_answering
from iotiam.testing import free_port

#: where a step-ca binary built from Debian's package is (else ``step-ca`` on PATH)
STEP_CA_ENV = "IOTIAM_BENCH_STEP_CA"
CFSSL_MISSING = "cfssl is not installed (apt-get install golang-cfssl)"
STEP_CA_MISSING = (f"no step-ca binary (${STEP_CA_ENV} or step-ca on PATH): apt-get install "
                   "golang-github-smallstep-certificates-dev golang-go and build it as "
                   "benchmarks/README.md 'Side by side with cfssl and step-ca' says")
#: the JWK provisioner's name: the tokens' ``iss``
PROVISIONER = "bench"
#: how long a one-time token is valid (the ``step`` CLI's default)
TOKEN_SECONDS = 300
HOST = "127.0.0.1"
STARTUP_SECONDS = 60.0


def cfssl_binary() -> str | None:
    """The ``cfssl`` on PATH, if any."""
    return shutil.which("cfssl")


def step_ca_binary() -> str | None:
    """``$IOTIAM_BENCH_STEP_CA`` if it is an executable, else ``step-ca`` on PATH."""
    configured = os.environ.get(STEP_CA_ENV)
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("step-ca")


# -- a throw-away PKI ----------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPki:
    """A root, an issuing CA under it, and a TLS server certificate for ``HOST``."""

    root: x509.Certificate
    issuing: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    tls: x509.Certificate
    tls_key: ec.EllipticCurvePrivateKey

    def write(self, directory: Path) -> dict[str, Path]:
        """PEM files: ``root``, ``issuing``, ``issuing-key``, ``tls``, ``tls-key``."""
        files = {"root": self.root, "issuing": self.issuing, "tls": self.tls}
        paths = {name: directory / f"{name}.pem" for name in
                 ("root", "issuing", "issuing-key", "tls", "tls-key")}
        for name, cert in files.items():
            paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        for name, key in (("issuing-key", self.issuing_key), ("tls-key", self.tls_key)):
            paths[name].write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption()))
        return paths

    def client_context(self) -> ssl.SSLContext:
        """Trust exactly this root."""
        return ssl.create_default_context(
            cadata=self.root.public_bytes(serialization.Encoding.PEM).decode())


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey,
                 issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
                 *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, signer = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        builder = (builder
                   .add_extension(x509.SubjectAlternativeName(
                       [x509.IPAddress(IPv4Address(HOST))]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False))
    return builder.sign(signer, hashes.SHA256())


def make_pki() -> BenchPki:
    """New P-256 keys throughout, valid for a day."""
    root_key, issuing_key, tls_key = (ec.generate_private_key(ec.SECP256R1())
                                      for _ in range(3))
    root = _certificate("bench root CA", root_key, None, ca=True)
    issuing = _certificate("bench issuing CA", issuing_key, (root, root_key), ca=True)
    tls = _certificate(HOST, tls_key, (root, root_key), ca=False)
    return BenchPki(root, issuing, issuing_key, tls, tls_key)


# -- the peers' processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A started peer: where it listens, its process, how to trust it."""

    name: str
    url: str
    pid: int
    tls: ssl.SSLContext


@contextmanager
def running_peer(name: str, argv: list[str], *, url: str, tls: ssl.SSLContext,
                 log_path: Path) -> Iterator[Peer]:
    """Start ``argv``, wait until ``url`` answers over TLS (any status), stop it afterwards."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=clean_environment(), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_answering(name, process, log_path, tls, _answers(url), STARTUP_SECONDS)
        yield Peer(name=name, url=url, pid=process.pid, tls=tls)
    finally:
        stop_process(process)


def _answers(url: str) -> Callable[[httpx.Client], None]:
    def answered(client: httpx.Client) -> None:
        client.get(url)  # any status: the server is up

    return answered


# -- cfssl ---------------------------------------------------------------------------------


def cfssl_config() -> dict[str, Any]:
    """``config.json``: client certificates for a day, as iotiam issues device ones."""
    return {"signing": {"default": {"expiry": "24h",
                                    "usages": ["digital signature", "client auth"]}}}


@contextmanager
def running_cfssl(binary: str, directory: Path, pki: BenchPki) -> Iterator[Peer]:
    """``cfssl serve`` signing with the issuing CA, TLS with ``pki.tls`` (no database)."""
    files = pki.write(directory)
    config = directory / "config.json"
    config.write_text(json.dumps(cfssl_config()))
    port = free_port()
    argv = [binary, "serve", "-address", HOST, "-port", str(port),
            "-ca", str(files["issuing"]), "-ca-key", str(files["issuing-key"]),
            "-config", str(config), "-tls-cert", str(files["tls"]),
            "-tls-key", str(files["tls-key"]), "-loglevel", "5"]
    with running_peer("cfssl", argv, url=f"https://{HOST}:{port}", tls=pki.client_context(),
                      log_path=directory / "cfssl.log") as peer:
        yield peer


def cfssl_sign_request(peer: Peer, csr_pem: str, *, close: bool = False) -> bytes:
    """``POST /api/v1/cfssl/sign`` with the CSR."""
    return encode_request("POST", f"{peer.url}/api/v1/cfssl/sign",
                          json.dumps({"certificate_request": csr_pem}).encode(),
                          {"Content-Type": "application/json"}, close=close)


def cfssl_certificate(answer: Answer, call: str = "sign") -> x509.Certificate:
    """The certificate of a successful ``sign`` (or ``info``) answer."""
    body = json.loads(answer.body)
    if answer.status != 200 or not body.get("success"):
        raise RuntimeError(f"cfssl {call} answered {answer.status}: {answer.body[:300]!r}")
    return x509.load_pem_x509_certificate(body["result"]["certificate"].encode())


def cfssl_info_request(peer: Peer, *, close: bool = False) -> bytes:
    """``POST /api/v1/cfssl/info``: the signing CA's certificate, no signing."""
    return encode_request("POST", f"{peer.url}/api/v1/cfssl/info", b"{}",
                          {"Content-Type": "application/json"}, close=close)


def cfssl_info_certificate(answer: Answer) -> x509.Certificate:
    """The CA certificate of a successful ``info`` answer."""
    return cfssl_certificate(answer, "info")


# -- step-ca -------------------------------------------------------------------------------


def provisioner_key() -> ECKey:
    """A new P-256 key for the JWK provisioner, its ``kid`` the RFC 7638 thumbprint."""
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": "ES256"})
    key.ensure_kid()
    return key


def step_ca_config(files: dict[str, Path], directory: Path, port: int,
                   provisioner: ECKey) -> dict[str, Any]:
    """``ca.json``: the issuing CA signs, badgerv2 stores certificates and used tokens, one
    JWK provisioner (its public key only: the tokens are made outside)."""
    return {
        "root": str(files["root"]),
        "crt": str(files["issuing"]),
        "key": str(files["issuing-key"]),
        "address": f"{HOST}:{port}",
        "dnsNames": [HOST],
        "logger": {"format": "text"},
        "db": {"type": "badgerv2", "dataSource": str(directory / "db")},
        "authority": {"provisioners": [{
            "type": "JWK", "name": PROVISIONER,
            "key": provisioner.as_dict(private=False)}]},
        "tls": {"cipherSuites": ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                 "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"],
                "minVersion": 1.2, "maxVersion": 1.3, "renegotiation": False},
    }


@contextmanager
def running_step_ca(binary: str, directory: Path, pki: BenchPki,
                    provisioner: ECKey) -> Iterator[Peer]:
    """``step-ca ca.json``; it makes its own TLS certificate from the issuing CA."""
    port = free_port()
    ca_json = directory / "ca.json"
    ca_json.write_text(json.dumps(step_ca_config(pki.write(directory), directory, port,
                                                 provisioner), indent=2))
    with running_peer("step-ca", [binary, str(ca_json)], url=f"https://{HOST}:{port}/health",
                      tls=pki.client_context(), log_path=directory / "step-ca.log") as peer:
        yield Peer(name=peer.name, url=f"https://{HOST}:{port}", pid=peer.pid, tls=peer.tls)


def sign_token(provisioner: ECKey, peer_url: str, subject: str, *, now: int) -> str:
    """A one-time token for ``POST /1.0/sign``, as ``step ca token`` makes one."""
    header = {"alg": "ES256", "typ": "JWT", "kid": provisioner.kid}
    claims = {"iss": PROVISIONER, "aud": f"{peer_url}/1.0/sign", "sub": subject,
              "sans": [subject], "iat": now, "nbf": now, "exp": now + TOKEN_SECONDS,
              "jti": secrets.token_hex(32)}
    return jwt.encode(header, claims, provisioner)


def step_ca_sign_request(peer: Peer, csr_pem: str, token: str, *, close: bool = False
                         ) -> bytes:
    """``POST /1.0/sign`` with the CSR and its one-time token."""
    return encode_request("POST", f"{peer.url}/1.0/sign",
                          json.dumps({"csr": csr_pem, "ott": token}).encode(),
                          {"Content-Type": "application/json"}, close=close)


def step_ca_certificate(answer: Answer) -> x509.Certificate:
    """The certificate of a successful ``sign`` answer."""
    if answer.status != 201:
        raise RuntimeError(f"step-ca sign answered {answer.status}: {answer.body[:300]!r}")
    return x509.load_pem_x509_certificate(json.loads(answer.body)["crt"].encode())


def step_ca_roots_request(peer: Peer, *, close: bool = False) -> bytes:
    """``GET /roots``: the root certificates, no token, no signing."""
    return encode_request("GET", f"{peer.url}/roots", b"", close=close)


def step_ca_root(answer: Answer) -> x509.Certificate:
    """The first root of a successful ``roots`` answer."""
    if answer.status not in (200, 201):  # 0.19 answers a read with 201 Created
        raise RuntimeError(f"step-ca roots answered {answer.status}: {answer.body[:300]!r}")
    return x509.load_pem_x509_certificate(json.loads(answer.body)["crts"][0].encode())
