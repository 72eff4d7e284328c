"""Target 3: a CRL with 100k revocations built in ≤ 1 s, end to end.

100k revoked rows are bulk-inserted into ``certificates`` (SQLAlchemy Core on
``iotiam.storage.tables.pki``), each with a real certificate's PEM so the table is as
large as a real one, and the ``revocations:<issuer>`` counter is bumped so the stored
CRL is stale. ``Pki.current_crl`` is then timed end to end: freshness check, CRL
number, query, build + sign, store + audit. The query and ``build_crl`` alone are
timed too, to show where the second goes.
"""

from __future__ import annotations

import statistics
import time
from datetime import timedelta

from cryptography import x509
from sqlalchemy import insert

from benchmarks.harness import (
    Result,
    RunConfig,
    Target,
    device_csrs,
    device_ids,
    installation,
    register_devices,
)
from iotiam.bootstrap import Services
from iotiam.kernel import SYSTEM
from iotiam.pki.crl import build_crl
from iotiam.pki.models import CertificateStatus, RevocationReason, revocation_counter, serial_hex
from iotiam.storage.tables.pki import certificates

NAME = "crl"
TITLE = "CRL of 100k revocations (25k with --quick) via Pki.current_crl"
TARGET_SECONDS = 1.0
REVOKED = 100_000
QUICK_REVOKED = 25_000
INSERT_BATCH = 10_000


def seed_revocations(services: Services, count: int) -> str:
    """Insert ``count`` revoked certificates under the issuing CA; returns its id."""
    register_devices(services, ["crl-template"])
    template = services.pki.issue_certificate(
        SYSTEM, device_id="crl-template", csr_data=device_csrs(["crl-template"])[0]
    )
    issuer_id = services.pki.cas.issuing_id
    now = services.clock.now()
    reasons = list(RevocationReason)
    base = {
        "issuer_id": issuer_id,
        "org_unit_id": template.org_unit_id,
        "org_path": template.org_path,
        "profile": template.profile,
        "not_before": now - timedelta(days=1),
        "not_after": now + timedelta(days=30),
        "status": str(CertificateStatus.REVOKED),
        "fingerprint_sha256": template.fingerprint_sha256,
        "pem": template.pem,
        "created_at": now - timedelta(days=1),
    }
    ids = device_ids(count, "revoked")
    for start in range(0, count, INSERT_BATCH):
        rows = [
            {
                **base,
                "serial": serial_hex(x509.random_serial_number()),
                "device_id": ids[i],
                "subject": f"CN={ids[i]}",
                "revoked_at": now - timedelta(seconds=i),
                "revocation_reason": str(reasons[i % len(reasons)]),
            }
            for i in range(start, min(start + INSERT_BATCH, count))
        ]
        with services.database() as uow:
            uow.conn.execute(insert(certificates), rows)
    bump_revocations(services, issuer_id)
    return issuer_id


def bump_revocations(services: Services, issuer_id: str) -> None:
    """What a revocation does to the counter: the stored CRL no longer covers it."""
    with services.database() as uow:
        uow.counters.next(revocation_counter(issuer_id))


def run(config: RunConfig) -> list[Result]:
    """Seed, then time ``current_crl`` a few times, each after a counter bump."""
    reps = config.size(3, 2)
    revoked = config.size(REVOKED, QUICK_REVOKED)
    # the cost is linear in the entries (query rows, entries built, bytes signed)
    target = Target(TARGET_SECONDS * revoked / REVOKED, at_least=False)
    label = f"CRL {revoked // 1000}k"
    with installation(config, NAME) as services:
        seed_started = time.perf_counter()
        issuer_id = seed_revocations(services, revoked)
        seed_seconds = time.perf_counter() - seed_started
        pki = services.pki

        end_to_end: list[float] = []
        for _ in range(reps):
            bump_revocations(services, issuer_id)
            started = time.perf_counter()
            stored = pki.current_crl(issuer_id)
            end_to_end.append(time.perf_counter() - started)
        entries = len(x509.load_der_x509_crl(stored.der))
        if entries != revoked:
            raise RuntimeError(f"the CRL lists {entries:,} entries, {revoked:,} were seeded")

        queries: list[float] = []
        builds: list[float] = []
        material = pki.cas.material(issuer_id)
        for _ in range(reps):
            now = services.clock.now()
            started = time.perf_counter()
            with services.database.reading() as uow:
                revocations = uow.certificates.revocations(
                    issuer_id, expired_after=now - services.settings.pki.crl_expired_buffer)
            queries.append(time.perf_counter() - started)
            started = time.perf_counter()
            build_crl(signer=material.signer, issuer_cert=material.certificate,
                      revocations=revocations, crl_number=1, this_update=now,
                      next_update=now + timedelta(days=1))
            builds.append(time.perf_counter() - started)

    median = statistics.median
    return [
        Result(
            name=f"{label}: Pki.current_crl end to end",
            value=median(end_to_end),
            unit="s",
            target=target,
            notes=("quick run: target scaled to the entries; " if config.quick else "")
            + f"median of {reps}: {', '.join(f'{s:.2f}' for s in end_to_end)} s; "
                  f"{len(stored.der) / 1e6:.1f} MB DER; seeding took {seed_seconds:.1f} s",
        ),
        Result(
            name=f"{label}: revocations query only",
            value=median(queries),
            unit="s",
            notes="SqlCertificateStore.revocations -> list[Revocation]",
        ),
        Result(
            name=f"{label}: build_crl only (build + sign)",
            value=median(builds),
            unit="s",
            notes="iotiam.pki.crl.build_crl on the queried list",
        ),
    ]
