"""Measure the PKI hot paths against their targets (not a test; run by hand).

    .venv/bin/python benchmarks/pki_throughput.py

Targets (DESIGN / issue): CRL of 100k entries built+signed in ≤ 1 s; ≥ 5,000 OCSP
responses/s; ≥ 3,000 leaf issuances/s including CSR parse+verify, on a 2-core box.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID

from iotiam.pki.authority import (
    PublicUrls,
    create_issuing_ca,
    create_ocsp_responder,
    create_root_ca,
)
from iotiam.pki.crl import build_crl
from iotiam.pki.csr import LeafIdentity, parse_csr, validate_csr
from iotiam.pki.issuance import LeafIssuer
from iotiam.pki.keys import require_leaf_public_key
from iotiam.pki.models import KeyAlgorithm, Revocation, RevocationReason
from iotiam.pki.ocsp import GOOD, CertStatusInfo, OcspResponder
from iotiam.pki.profiles import DEVICE

NOW = datetime(2026, 1, 1, tzinfo=UTC)
URLS = PublicUrls("http://iotiam.test/ocsp", "http://iotiam.test/ca.der", "http://iotiam.test/ca.crl")
DER = serialization.Encoding.DER


def rate(label: str, count: int, work: Callable[[int], object], threads: int = 1) -> None:
    """Run ``work(i)`` ``count`` times (over ``threads`` threads) and print the rate."""
    start = time.perf_counter()
    if threads == 1:
        for i in range(count):
            work(i)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(count), chunksize=256))
    elapsed = time.perf_counter() - start
    print(f"{label:<58} {count / elapsed:>9,.0f}/s  ({elapsed:.2f} s for {count:,})")


def main() -> None:
    """Build a P-256 hierarchy and time CRL, OCSP and issuance."""
    print(f"cpus: {os.cpu_count()}")
    root = create_root_ca(
        alg=KeyAlgorithm.EC_P256, common_name="bench root", organization="", now=NOW, serial=1
    )
    issuing = create_issuing_ca(
        root=root, alg=KeyAlgorithm.EC_P256, common_name="bench ca", organization="", now=NOW,
        serial=2,
    )
    responder = create_ocsp_responder(
        issuer=issuing, alg=KeyAlgorithm.EC_P256, common_name="bench ocsp", now=NOW, serial=3
    )

    # -- CRL: 100k entries, a mix of reasons (unspecified ones carry no extension)
    reasons = list(RevocationReason)
    revocations = [
        Revocation(
            serial=x509.random_serial_number(),
            revoked_at=NOW - timedelta(seconds=i),
            reason=reasons[i % len(reasons)],
            not_after=NOW + timedelta(days=1),
        )
        for i in range(100_000)
    ]
    for _ in range(3):
        start = time.perf_counter()
        crl = build_crl(
            signer=issuing.signer,
            issuer_cert=issuing.certificate,
            revocations=revocations,
            crl_number=1,
            this_update=NOW,
            next_update=NOW + timedelta(days=1),
        )
        der = crl.public_bytes(DER)
        elapsed = time.perf_counter() - start
        print(f"CRL of {len(revocations):,} entries built+signed+encoded      {elapsed:.3f} s "
              f"({len(der) / 1e6:.1f} MB)")

    # -- OCSP
    ocsp = OcspResponder.from_material(issuing.certificate, responder)
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    identity = LeafIdentity(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")]))
    issuer = LeafIssuer(issuing.signer, issuing.certificate, URLS)
    serials = [x509.random_serial_number() for _ in range(2_000)]
    requests = []
    for serial in serials:
        cert = issuer.issue(leaf_key, identity, DEVICE, serial, NOW)
        requests.append(
            x509_ocsp.OCSPRequestBuilder()
            .add_certificate(cert, issuing.certificate, hashes.SHA1())  # noqa: S303
            .build()
            .public_bytes(DER)
        )
    revoked = CertStatusInfo("revoked", NOW, RevocationReason.KEY_COMPROMISE)

    def lookup(serial: int) -> CertStatusInfo:
        return revoked if serial % 10 == 0 else GOOD

    n = len(requests)
    rate("OCSP uncached (cache cleared each pass, 1 thread)", 10_000,
         lambda i: (ocsp.clear_cache() if i % n == 0 else None,
                    ocsp.respond(requests[i % n], lookup, NOW)))
    rate("OCSP cached (same 2,000 serials, 1 thread)", 100_000,
         lambda i: ocsp.respond(requests[i % n], lookup, NOW))
    ocsp.clear_cache()
    nonce_requests = [
        x509_ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            x509_ocsp.load_der_ocsp_request(r).issuer_name_hash,
            x509_ocsp.load_der_ocsp_request(r).issuer_key_hash,
            s, hashes.SHA1(),  # noqa: S303
        )
        .add_extension(x509.OCSPNonce(os.urandom(32)), critical=False)
        .build()
        .public_bytes(DER)
        for r, s in zip(requests, serials, strict=True)
    ]
    rate("OCSP with nonce (never cached, 1 thread)", 10_000,
         lambda i: ocsp.respond(nonce_requests[i % n], lookup, NOW))

    # -- Issuance from a CSR: parse + verify + validate + issue
    csrs = []
    for i in range(500):
        key = ec.generate_private_key(ec.SECP256R1())
        csrs.append(
            x509.CertificateSigningRequestBuilder()
            .subject_name(identity.subject)
            .sign(key, hashes.SHA256())
            .public_bytes(DER)
        )

    def issue_from_csr(i: int) -> x509.Certificate:
        csr = parse_csr(csrs[i % len(csrs)])
        validate_csr(csr, identity)
        public_key = require_leaf_public_key(csr.public_key())
        return issuer.issue(public_key, identity, DEVICE, x509.random_serial_number(), NOW)

    rate("leaf issuance incl. CSR parse+verify (1 thread)", 20_000, issue_from_csr)
    rate("leaf issuance incl. CSR parse+verify (2 threads)", 20_000, issue_from_csr, threads=2)


if __name__ == "__main__":
    main()
