"""The per-request reads at the scale benchmark's size (issue 19: "the PDP's subject load
and OCSP keep their targets at that size"): an OCSP answer for a certificate among the
~3M, and a decision subject loaded for a device among the million, each read from the
database as a cache miss would read it.

Both are timed one call at a time over ``SAMPLES`` spread keys; the row is the median and
the note names the worst. A subject is loaded once a device (no cache helps it). An OCSP
answer reads the status every time (G3) and keeps only its signature: each serial is
asked once before the timed pass, as the in-process OCSP benchmark's target assumes, and
the first (signed) answers' median is in the note.

Targets: OCSP's in-process ≥ 5,000 answers/s (200 µs an answer); a subject load is on the
broker hook's miss path, whose p99 must stay under 5 ms.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Callable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import Engine, bindparam, text

from benchmarks.harness import Result, Target
from iotiam.bootstrap import Services
from iotiam.pki.models import serial_hex

SAMPLES = 400
OCSP_TARGET_US = 200.0
SUBJECT_TARGET_US = 5_000.0


def lookups(name: str, services: Services, engine: Engine, devices: int) -> list[Result]:
    """The OCSP and subject-load rows."""
    return [_ocsp(name, services, engine, devices), _subjects(name, services, devices)]


def _timed(calls: Sequence[Callable[[], object]]) -> tuple[float, float]:
    """Median and worst µs of one call each."""
    spent = []
    for call in calls:
        began = time.perf_counter()
        call()
        spent.append((time.perf_counter() - began) * 1e6)
    return statistics.median(spent), max(spent)


def _ocsp(name: str, services: Services, engine: Engine, devices: int) -> Result:
    issuer = services.pki.cas.issuing.certificate
    name_hash = hashlib.sha1(issuer.subject.public_bytes(), usedforsecurity=False).digest()
    key_hash = x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest
    # the fill's serials are n * 3 + k + 1 (device n, its k-th certificate): a spread of
    # them, read back with their stored status in one statement
    wanted = [serial_hex((n * (devices // SAMPLES) + 2) * 3 + n % 3 + 1)
              for n in range(SAMPLES)]
    with engine.connect() as conn:
        total = int(conn.execute(text("SELECT COUNT(*) FROM certificates")).scalar_one())
        rows = conn.execute(text("SELECT serial, status FROM certificates "
                                 "WHERE serial IN :serials").bindparams(
            bindparam("serials", expanding=True)), {"serials": wanted}).all()
    if len(rows) < SAMPLES // 2:
        raise RuntimeError(f"only {len(rows)} of {SAMPLES} sampled serials are stored")
    requests = []
    for serial, _ in rows:
        built = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            name_hash, key_hash, int(serial, 16), hashes.SHA1())
        requests.append(built.build().public_bytes(Encoding.DER))
    # the answers must be the stored statuses, or the rate means nothing
    for (serial, status), der in zip(rows[:50], requests[:50], strict=True):
        answer = ocsp.load_der_ocsp_response(services.pki.ocsp_response(der))
        said = answer.certificate_status.name.lower()
        if (said == "revoked") != (status == "revoked"):
            raise RuntimeError(f"OCSP said {said} for {serial}, stored as {status}")
    calls = [lambda d=der: services.pki.ocsp_response(d)
             for der in requests]
    signed, _ = _timed(calls)  # each serial's first answer is signed, then kept
    median, worst = _timed(calls)
    return Result(f"{name}: OCSP answer, a certificate among {total:,}", median, "µs",
                  Target(OCSP_TARGET_US, at_least=False),
                  f"{len(rows)} serials spread over the table, status read from the database "
                  f"each time, the signature kept from the serial's first answer (that one: "
                  f"{signed:,.0f} µs); worst {worst:,.0f} µs")


def _subjects(name: str, services: Services, devices: int) -> Result:
    step = max(1, devices // SAMPLES)
    ids = [f"dev-{n * step + 7:07d}" for n in range(SAMPLES)]
    if services.subjects.cached(ids[0]) is None:
        raise RuntimeError(f"no subject for {ids[0]}")
    median, worst = _timed([lambda d=d: services.subjects.cached(d)  # type: ignore[misc]
                            for d in ids[1:]])
    return Result(f"{name}: PDP subject load, a device among {devices:,}", median, "µs",
                  Target(SUBJECT_TARGET_US, at_least=False),
                  f"{SAMPLES - 1} devices not cached before, each loaded once (device, groups, "
                  f"posture) as the broker hook's miss does; worst {worst:,.0f} µs")

