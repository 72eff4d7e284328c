"""Context, no target: what ``cryptography`` alone allows on this machine.

The same domain functions the service calls (``parse_csr``, ``validate_csr``,
``LeafBuilder.issue``, ``OcspResponder``) with no database, no audit and no HTTP. The
gap between these rows and the service rows is what storage, audit and the web stack
cost. (This replaces an earlier hand-run PKI throughput script.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID

from benchmarks.harness import Result, RunConfig, run_bounded
from iotiam.pki.authority import (
    CaMaterial,
    PublicUrls,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
)
from iotiam.pki.csr import LeafIdentity, parse_csr, validate_csr
from iotiam.pki.keys import require_leaf_public_key
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.ocsp import GOOD, CertStatusInfo, OcspResponder
from iotiam.pki.profiles import DEVICE

NAME = "crypto-floor"
TITLE = "cryptography alone (no DB, no HTTP): the ceiling for the targets below"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
URLS = PublicUrls("http://bench.test/ocsp", "http://bench.test/ca.der", "http://bench.test/ca.crl")
DER = serialization.Encoding.DER


IDENTITY = LeafIdentity(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))


def _issuing_ca() -> CaMaterial:
    alg = KeyAlgorithm.EC_P256
    root = create_root_ca(alg=alg, common_name="bench root", organization="", now=NOW, serial=1)
    return create_issuing_ca(root=root, alg=alg, common_name="bench ca", organization="",
                             now=NOW, serial=2)


def csr_issuer(issuing: CaMaterial, csr_count: int) -> Callable[[int], None]:
    """``work(i)``: parse CSR i (mod ``csr_count``), check it, sign its certificate."""
    issuer = LeafBuilder(issuing.signer, issuing.certificate, URLS)
    csrs = [
        x509.CertificateSigningRequestBuilder()
        .subject_name(IDENTITY.subject)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(DER)
        for _ in range(csr_count)
    ]

    def issue_from_csr(i: int) -> None:
        csr = parse_csr(csrs[i % len(csrs)])
        validate_csr(csr, IDENTITY)
        issuer.issue(require_leaf_public_key(csr.public_key()), IDENTITY, DEVICE,
                     x509.random_serial_number(), NOW)

    return issue_from_csr


def floor_ms_per_certificate(count: int = 400) -> float:
    """CPU of one CSR parse + check + sign here, in ms: the floor beside a server's figure."""
    issuing = _issuing_ca()
    work = csr_issuer(issuing, min(count, 100))
    measured = run_bounded(work, count=count, seconds=5.0)
    return (measured.cpu_seconds or 0.0) / max(measured.done, 1) * 1000


def run(config: RunConfig) -> list[Result]:
    """CSR-to-certificate on 1 and 2 threads; OCSP response signing and a cache hit."""
    issuing = _issuing_ca()
    responder = create_ocsp_responder(issuer=issuing, alg=KeyAlgorithm.EC_P256,
                                      common_name="bench ocsp", now=NOW, serial=3)
    identity = IDENTITY
    issuer = LeafBuilder(issuing.signer, issuing.certificate, URLS)
    issue_from_csr = csr_issuer(issuing, config.size(500, 100))

    count, seconds = config.size(20_000, 3_000), config.seconds(4.0, 1.0)
    results = []
    for threads in (1, 2):
        measured = run_bounded(issue_from_csr, count=count, seconds=seconds, threads=threads)
        results.append(Result(
            name=f"crypto: CSR parse+verify+sign, {threads} thread{'s' if threads > 1 else ''}",
            value=measured.rate, unit="certs/s", notes=measured.describe(),
        ))

    responder_logic = OcspResponder.from_material(issuing.certificate, responder)
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    requests = []
    for serial in range(1_000, 1_000 + config.size(1_000, 200)):
        cert = issuer.issue(leaf_key, identity, DEVICE, serial, NOW)
        requests.append(x509_ocsp.OCSPRequestBuilder()
                        .add_certificate(cert, issuing.certificate, hashes.SHA1())
                        .build().public_bytes(DER))

    def lookup(serial: int) -> CertStatusInfo:
        return GOOD

    def respond_uncached(i: int) -> None:
        if i % len(requests) == 0:
            responder_logic.clear_cache()
        responder_logic.respond(requests[i % len(requests)], lookup, NOW)

    def respond_cached(i: int) -> None:
        responder_logic.respond(requests[i % len(requests)], lookup, NOW)

    measured = run_bounded(respond_uncached, count=count, seconds=seconds)
    results.append(Result(name="crypto: OCSP response, build+sign", value=measured.rate,
                          unit="resp/s", notes=measured.describe()))
    for i in range(len(requests)):
        respond_cached(i)  # fill the cache: the next row measures hits only
    measured = run_bounded(respond_cached, count=count * 5, seconds=seconds)
    results.append(Result(name="crypto: OCSP response, cache hit", value=measured.rate,
                          unit="resp/s", notes=measured.describe()))
    return results
