"""Shared PKI fixtures: one CA hierarchy per session, at a fixed instant."""

from __future__ import annotations

import contextlib
import importlib
import io
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from iotiam.pki.authority import (
    CaMaterial,
    PublicUrls,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
    create_server_tls_certificate,
)
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import PrivateKey
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm

NOW = datetime(2026, 1, 1, tzinfo=UTC)
#: openssl checks validity against this instant (``-attime``), never the wall clock.
OPENSSL_ATTIME = str(int((NOW + timedelta(hours=1)).timestamp()))

URLS = PublicUrls(
    ocsp_url="http://iotiam.test/ocsp",
    ca_issuers_url="http://iotiam.test/ca/issuing.der",
    crl_url="http://iotiam.test/crl/issuing.crl",
)
ROOT_URLS = PublicUrls(
    ocsp_url="http://iotiam.test/ocsp/root",
    ca_issuers_url="http://iotiam.test/ca/root.der",
    crl_url="http://iotiam.test/crl/root.crl",
)
#: pkilint installs its CLIs next to the interpreter running the tests.
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Hierarchy:
    """root → issuing CA → (OCSP responder, server TLS), with PEM files on disk."""

    root: CaMaterial
    issuing: CaMaterial
    responder: CaMaterial
    server: CaMaterial
    directory: Path

    @property
    def root_pem(self) -> Path:
        return self.directory / "root.pem"

    @property
    def issuing_pem(self) -> Path:
        return self.directory / "issuing.pem"

    @property
    def chain_pem(self) -> Path:
        return self.directory / "chain.pem"


def build_hierarchy(alg: KeyAlgorithm, directory: Path) -> Hierarchy:
    """Create a full hierarchy with ``alg`` keys and write its certificates as PEM."""
    root = create_root_ca(
        alg=alg,
        common_name="iotiam Test Root CA",
        organization="iotiam tests",
        now=NOW,
        serial=x509.random_serial_number(),
    )
    issuing = create_issuing_ca(
        root=root,
        alg=alg,
        common_name="iotiam Test Issuing CA",
        organization="iotiam tests",
        now=NOW,
        serial=x509.random_serial_number(),
        root_urls=ROOT_URLS,
    )
    responder = create_ocsp_responder(
        issuer=issuing,
        alg=alg,
        common_name="iotiam Test OCSP Responder",
        now=NOW,
        serial=x509.random_serial_number(),
    )
    server = create_server_tls_certificate(
        issuer=issuing,
        alg=alg,
        names=["broker.iotiam.test", "127.0.0.1", "::1"],
        now=NOW,
        serial=x509.random_serial_number(),
        urls=URLS,
    )
    directory.mkdir(parents=True, exist_ok=True)
    hierarchy = Hierarchy(root, issuing, responder, server, directory)
    write_pem(hierarchy.root_pem, root.certificate)
    write_pem(hierarchy.issuing_pem, issuing.certificate)
    hierarchy.chain_pem.write_bytes(
        hierarchy.issuing_pem.read_bytes() + hierarchy.root_pem.read_bytes()
    )
    return hierarchy


def write_pem(path: Path, *items: x509.Certificate | x509.CertificateRevocationList) -> Path:
    """Write certificates or CRLs as concatenated PEM."""
    path.write_bytes(b"".join(i.public_bytes(serialization.Encoding.PEM) for i in items))
    return path


def run(args: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
    """Run a real tool and capture its text output (never raises on a non-zero exit)."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)


def device_name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_csr(
    key: PrivateKey,
    *,
    cn: str | None = "dev-0001",
    sans: Sequence[x509.GeneralName] = (),
    ca: bool | None = None,
) -> x509.CertificateSigningRequest:
    """A CSR signed by ``key`` asking for ``cn``, ``sans`` and optionally basicConstraints."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        device_name(cn) if cn is not None else x509.Name([])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=None), critical=True
        )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


@pytest.fixture(scope="session")
def now() -> datetime:
    """The fixed instant every PKI test runs at."""
    return NOW


@pytest.fixture(scope="session")
def urls() -> PublicUrls:
    return URLS


@pytest.fixture(scope="session")
def csr_for() -> Callable[..., x509.CertificateSigningRequest]:
    """``make_csr`` as a fixture."""
    return make_csr


@pytest.fixture(scope="session")
def openssl() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """``openssl("ocsp -issuer ...")``: run the real openssl CLI, capturing text output."""

    def call(command: str) -> subprocess.CompletedProcess[str]:
        return run(["openssl", *shlex.split(command)])

    return call


@pytest.fixture(scope="session")
def attime() -> str:
    """``-attime`` value for openssl: an hour after NOW, as epoch seconds."""
    return OPENSSL_ATTIME


@pytest.fixture(scope="session")
def openssl_verify() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``openssl verify -CAfile root -untrusted issuing LEAF`` at NOW + 1h, plus extra args."""

    def verify(h: Hierarchy, leaf: Path, *extra: str | Path) -> subprocess.CompletedProcess[str]:
        trust = ["-CAfile", h.root_pem, "-untrusted", h.issuing_pem]
        return run(["openssl", "verify", "-attime", OPENSSL_ATTIME, *extra, *trust, leaf])

    return verify


@pytest.fixture(scope="session")
def build_chain(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[KeyAlgorithm], Hierarchy]:
    """Another hierarchy (not ``hierarchy``, same names) per key algorithm, built once each."""
    built: dict[KeyAlgorithm, Hierarchy] = {}

    def build(alg: KeyAlgorithm) -> Hierarchy:
        if alg not in built:
            built[alg] = build_hierarchy(alg, tmp_path_factory.mktemp(f"pki-{alg.value}"))
        return built[alg]

    return build


@pytest.fixture(scope="session")
def hierarchy(tmp_path_factory: pytest.TempPathFactory) -> Hierarchy:
    """The EC P-256 hierarchy most tests share."""
    return build_hierarchy(KeyAlgorithm.EC_P256, tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def leaf_builder(hierarchy: Hierarchy) -> LeafBuilder:
    return LeafBuilder(hierarchy.issuing.signer, hierarchy.issuing.certificate, URLS)


@pytest.fixture(scope="session")
def device_identity() -> LeafIdentity:
    return LeafIdentity(
        subject=device_name("dev-0001"),
        dns_names=("dev-0001.devices.iotiam.test",),
        uris=("spiffe://iotiam.test/device/dev-0001",),
    )


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


LINT_ARGS = {
    "lint_pkix_cert": ["lint", "-s", "ERROR"],
    "lint_crl": ["lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR"],
    "lint_ocsp_response": ["lint", "-s", "ERROR"],
}


def lint_in_process(linter: str, path: Path) -> tuple[int, str]:
    """Run a pkilint CLI's ``main`` in this process (same code, no interpreter start-up)."""
    module = importlib.import_module(f"pkilint.bin.{linter}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = module.main([*LINT_ARGS[linter], str(path)])
    return code, out.getvalue().strip()


@pytest.fixture(scope="session")
def pkilint() -> Callable[[str, Path], tuple[int, str]]:
    """``pkilint(linter, path)``: (exit code, findings) of a pkilint CLI at ERROR level."""
    return lint_in_process


@pytest.fixture(scope="session")
def pkilint_cli() -> Callable[[Sequence[str], Path], subprocess.CompletedProcess[str]]:
    """``pkilint_cli(["lint_crl", "lint", ...], path)``: the installed pkilint binary itself."""

    def call(command: Sequence[str], path: Path) -> subprocess.CompletedProcess[str]:
        return run([VENV_BIN / command[0], *command[1:], path])

    return call


@pytest.fixture
def lint_cert(tmp_path: Path) -> Callable[[x509.Certificate], str]:
    """pkilint's RFC 5280 certificate linter at ERROR level; returns its findings."""

    def lint(certificate: x509.Certificate) -> str:
        path = write_pem(tmp_path / f"cert-{certificate.serial_number:x}.pem", certificate)
        code, findings = lint_in_process("lint_pkix_cert", path)
        assert code == 0, findings
        return findings

    return lint


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """Write certificates / CRLs as PEM, or raw bytes, into a fresh file under tmp_path."""
    counter = iter(range(1_000_000))

    def write_file(
        name: str, *items: x509.Certificate | x509.CertificateRevocationList | bytes
    ) -> Path:
        path = tmp_path / f"{next(counter)}-{name}"
        if len(items) == 1 and isinstance(items[0], bytes):
            path.write_bytes(items[0])
            return path
        return write_pem(path, *items)  # type: ignore[arg-type]

    return write_file
