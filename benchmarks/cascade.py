"""Issue 17: revocation that cascades — 10,000 devices of one manufacturer batch revoked.

A fleet of 10,000 devices of ``manufacturer=acme and batch=2026-07`` (and 1,000 of
another batch, which must stay), each with a real certificate from the built-in CA,
registered and certified in-process. Then ``SetRevocation.revoke`` is timed (20
batches of 500, one transaction each), then what the change feed had left to
deliver to this process's consumers (the PDP's subjects, OCSP's cache: they get a
batch's changes at its commit, inside the call), then the CRL that the broker
installs (``Pki.current_crl``). Target: ≤ 5 s from the call to all of it; CPU is
printed beside it, the steady figure on a loaded host. The broker's kicks are not
timed here (10,000 live TLS sessions cost more than the rest of the run):
``tests/integration/test_cascade_revocation.py`` shows the sessions dropping.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks.harness import Result, RunConfig, Target, device_csrs, device_ids, installation
from iotiam.bootstrap import Services
from iotiam.kernel import SYSTEM
from iotiam.pki.models import CertificateRecord, IssueRequest

NAME = "cascade"
TITLE = "revoke by set: 10k devices (2k with --quick), feed delivered, CRL rebuilt"
TARGET_SECONDS = 5.0
WHERE = "manufacturer=acme and batch=2026-07"
CHUNK = 500


def seed(services: Services, ids: Sequence[str], batch: str) -> None:
    """Register ``ids`` as acme devices of ``batch`` and give each a certificate."""
    rows = [(n, {"id": d, "type": "sensor", "manufacturer": "acme", "batch": batch})
            for n, d in enumerate(ids, 1)]
    for start in range(0, len(rows), CHUNK):
        results = services.inventory.import_devices(SYSTEM, rows[start:start + CHUNK])
        if not all(r.ok for r in results):
            raise RuntimeError(f"import refused: {[r for r in results if not r.ok][:1]}")
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        issued = services.pki.issue_certificates(SYSTEM, [
            IssueRequest(d, csr) for d, csr in zip(chunk, device_csrs(chunk), strict=True)])
        if not all(isinstance(r, CertificateRecord) for r in issued):
            raise RuntimeError(f"issuance refused: {issued[:1]}")


def run(config: RunConfig) -> list[Result]:
    """Seed, preview, revoke; time each step and the total."""
    count = config.size(10_000, 2_000)
    target = Target(TARGET_SECONDS, at_least=False)
    with installation(config, NAME) as services:
        sets = services.revocation_sets
        assert sets is not None
        started = time.perf_counter()
        seed(services, device_ids(count, "acme"), "2026-07")
        seed(services, device_ids(count // 10, "other"), "2026-08")
        services.changes.deliver_pending()
        seeding = time.perf_counter() - started

        started = time.perf_counter()
        preview = sets.preview(SYSTEM, WHERE)
        preview_s = time.perf_counter() - started

        wall, cpu = time.perf_counter(), time.process_time()
        report = sets.revoke(SYSTEM, WHERE, "keyCompromise")
        revoked_s = time.perf_counter() - wall
        delivered = services.changes.deliver_pending()
        delivered_s = time.perf_counter() - wall
        crl = services.pki.current_crl(services.pki.cas.issuing_id)
        total_s, total_cpu = time.perf_counter() - wall, time.process_time() - cpu

        if report.certificates != count or preview.certificates != count:
            raise RuntimeError(f"revoked {report.certificates}, previewed "
                               f"{preview.certificates}, wanted {count}")
        left = sets.preview(SYSTEM, "batch=2026-08")
        if left.certificates != count // 10:
            raise RuntimeError(f"the other batch lost certificates: {left}")
    label = f"cascade {count // 1000}k devices"
    return [
        Result(name=f"{label}: revoked, feed delivered, CRL rebuilt", value=total_s,
               unit="s", target=target,
               notes=f"CPU {total_cpu:.2f} s ({total_cpu / count * 1000:.3f} ms/device); "
                     f"revoke call {revoked_s:.2f} s in {report.batches} batches, "
                     f"+ feed {delivered_s - revoked_s:.2f} s ({delivered:,} changes left: this "
                     "process's consumers get a batch's changes at its commit), "
                     f"+ CRL {total_s - delivered_s:.2f} s (#{crl.number}); "
                     f"seeding took {seeding:.0f} s"),
        Result(name=f"{label}: dry run", value=preview_s, unit="s",
               notes=f"{preview.devices:,} devices, {preview.certificates:,} certificates"),
    ]
