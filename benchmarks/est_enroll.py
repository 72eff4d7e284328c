"""EST enrollment end to end over TLS: ≥ 300 enrollments/s on SQLite, a new connection each.

A real ``iotiam serve --workers 2`` in its own process. Before timing, devices are
registered through ``POST /v1/devices/import``, one claim token per device is created
through ``POST /v1/claims`` (batches of 1,000) and every device gets a fresh P-256 key
and CSR. Then each enrollment is what a device in the field sends (RFC 7030 §4.2.1):
a new TCP connection and full TLS handshake (verified against ``<data-dir>/tls/ca.pem``),
``POST /.well-known/est/simpleenroll`` with HTTP Basic (device id, claim token) and the
base64 DER PKCS#10, ``Connection: close``; the answer must be 200 every time. The first
answer is decoded as a certs-only PKCS#7 whose certificate's CN is the device.

For comparison (AWS IoT's CreateCertificateFromCsr quota is 15/s, Azure
DPS about 17/s per unit), and as a floor to read the number against, the same new
connection per request fetches ``/.well-known/est/cacerts``: a handshake and a request
with no database or signing work.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import threading
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from benchmarks.crypto_floor import floor_ms_per_certificate
from benchmarks.harness import (
    CpuMeter,
    Measured,
    Result,
    RunConfig,
    Target,
    device_csrs,
    device_ids,
    run_bounded,
    run_bounded_async,
    server_ms_per_request,
)
from benchmarks.loadgen import Answer, OneShotClient, ResumingClient, encode_request
from benchmarks.server import RunningServer, create_claims, import_devices, running_server

NAME = "est-enroll"
TITLE = ("EST simpleenroll with claim tokens, a new TLS connection per device, against a "
         "real `iotiam serve`")
TARGET = Target(300)
#: server CPU per enrollment with its full TLS handshake: step-ca 0.19's, measured here
CPU_TARGET = Target(1.6, at_least=False)
#: p99 latency of a fresh-connection enrollment under this load
P99_TARGET = Target(150.0, at_least=False)
#: threads of the resumed-session row (blocking clients: each a device that comes back)
RESUMING_DEVICES = 8
#: devices enrolling at once (each on its own connection)
CONCURRENCY = 24
#: ``serve --workers``: one serving process per core, as a production install would run
WORKERS = min(2, os.cpu_count() or 1)
SIMPLEENROLL = "/.well-known/est/simpleenroll"
CACERTS = "/.well-known/est/cacerts"
#: a client that sends a User-Agent gets base64 wrapped at 64 columns, as curl does
_HEADERS = {"User-Agent": "iotiam-benchmark", "Accept": "application/pkcs7-mime"}


def enroll_request(server: RunningServer, device_id: str, claim: str, csr_der: bytes
                   ) -> bytes:
    """``simpleenroll`` as a device sends it: Basic (device id, claim), base64 PKCS#10."""
    basic = base64.b64encode(f"{device_id}:{claim}".encode()).decode()
    headers = {**_HEADERS, "Content-Type": "application/pkcs10",
               "Authorization": f"Basic {basic}"}
    return encode_request("POST", f"{server.api_url}{SIMPLEENROLL}",
                          base64.encodebytes(csr_der), headers, close=True)


def enrolled_certificate(answer: Answer, device_id: str) -> x509.Certificate:
    """The certificate of a 200 certs-only PKCS#7 answer, which must name ``device_id``."""
    if answer.status != 200:
        raise RuntimeError(f"simpleenroll for {device_id} answered {answer.status}: "
                           f"{answer.body[:300]!r}")
    certificates = pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.body))
    if not certificates:
        raise RuntimeError(f"simpleenroll for {device_id} answered a PKCS#7 with no certificate")
    names = [a.value for a in certificates[0].subject.get_attributes_for_oid(
        NameOID.COMMON_NAME)]
    if names != [device_id]:
        raise RuntimeError(f"simpleenroll for {device_id} issued a certificate for "
                           f"{certificates[0].subject.rfc4514_string()}")
    return certificates[0]


async def drive(client: OneShotClient, requests: Sequence[bytes], *, count: int,
                seconds: float, cpu: CpuMeter, what: str) -> Measured:
    """Send ``requests`` (one connection each), ``CONCURRENCY`` at a time; all must be 200."""

    async def one(i: int) -> None:
        answer = await client.send(requests[i])
        if answer.status != 200:
            raise RuntimeError(f"{what} #{i} answered {answer.status}: {answer.body[:300]!r}")

    cpu.start()
    measured = await run_bounded_async(one, count=min(count, len(requests)), seconds=seconds,
                                       concurrency=CONCURRENCY)
    cpu.stop()
    return measured


async def drive_enrollments(server: RunningServer, ids: Sequence[str],
                            requests: Sequence[bytes], *, warm: int, seconds: float,
                            cpu: CpuMeter) -> Measured:
    """Check the first enrollment's certificate, warm up with ``warm`` more, time the rest."""
    client = OneShotClient(server.api_url, server.tls_context())
    enrolled_certificate(await client.send(requests[0]), ids[0])
    await drive(client, requests[1:warm + 1], count=warm, seconds=60.0,
                cpu=CpuMeter(server.pid), what="warm-up enrollment")
    timed = requests[warm + 1:]
    return await drive(client, timed, count=len(timed), seconds=seconds, cpu=cpu,
                       what="enrollment")


async def drive_cacerts(server: RunningServer, *, count: int, seconds: float, cpu: CpuMeter
                        ) -> Measured:
    """``GET /cacerts`` with a new TLS connection each: the handshake-and-HTTP floor."""
    client = OneShotClient(server.api_url, server.tls_context())
    request = encode_request("GET", f"{server.api_url}{CACERTS}", b"", _HEADERS, close=True)
    await drive(client, [request] * CONCURRENCY, count=CONCURRENCY, seconds=60.0,
                cpu=CpuMeter(server.pid), what="warm-up cacerts")
    return await drive(client, [request] * count, count=count, seconds=seconds, cpu=cpu,
                       what="cacerts")


def drive_resumed_cacerts(server: RunningServer, *, count: int, seconds: float,
                          cpu: CpuMeter) -> tuple[Measured, int]:
    """``GET /cacerts``, a new connection each, resuming the device's last TLS session
    (its session ticket): the handshake a returning device or agent pays. Also how many
    handshakes did resume."""
    request = encode_request("GET", f"{server.api_url}{CACERTS}", b"", _HEADERS, close=True)
    devices = [ResumingClient(server.api_url, server.tls_context())
               for _ in range(RESUMING_DEVICES)]
    for device in devices:  # the first, full handshake of each device: its ticket
        device.send(request)
    slots = itertools.count()
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "device"):
            local.device = devices[next(slots)]
        answer = local.device.send(request)
        if answer.status != 200:
            raise RuntimeError(f"cacerts #{i} answered {answer.status}")

    cpu.start()
    measured = run_bounded(one, count=count, seconds=seconds, threads=RESUMING_DEVICES)
    cpu.stop()
    return measured, sum(d.resumed for d in devices)


def run(config: RunConfig) -> list[Result]:
    """Start a server, register devices with claims and CSRs, drive enrollments."""
    count = config.size(4_000, 400)
    warm = 2 * CONCURRENCY
    ids = device_ids(1 + warm + count, prefix="est")
    with running_server(config, NAME, workers=WORKERS) as server:
        import_devices(server, ids)
        claims = create_claims(server, ids)
        requests = [enroll_request(server, device_id, claims[device_id], csr)
                    for device_id, csr in zip(ids, device_csrs(ids), strict=True)]
        enroll_cpu, floor_cpu = CpuMeter(server.pid), CpuMeter(server.pid)
        enrolled = asyncio.run(drive_enrollments(server, ids, requests, warm=warm,
                                                 seconds=config.seconds(15.0, 3.0),
                                                 cpu=enroll_cpu))
        floor = asyncio.run(drive_cacerts(server, count=config.size(3_000, 300),
                                          seconds=config.seconds(6.0, 1.5), cpu=floor_cpu))
        resumed_cpu = CpuMeter(server.pid)
        resumed, reused = drive_resumed_cacerts(server, count=config.size(3_000, 300),
                                                seconds=config.seconds(6.0, 1.5),
                                                cpu=resumed_cpu)
    setup = (f"{CONCURRENCY} devices at once, new TLS connection each, {len(ids):,} devices "
             f"with claims, serve --workers {WORKERS}")
    server_ms = server_ms_per_request(enroll_cpu, enrolled)
    floor_ms = server_ms_per_request(floor_cpu, floor)
    crypto_ms = floor_ms_per_certificate()
    return [
        Result(name="EST enrollment (simpleenroll, TLS)", value=enrolled.rate,
               unit="enrollments/s", target=TARGET,
               notes=f"{enrolled.describe()}; {setup}; {enroll_cpu.describe(enrolled)}"),
        Result(name="EST enrollment, p50 latency", value=enrolled.percentile_ms(50), unit="ms"),
        Result(name="EST enrollment, p99 latency", value=enrolled.percentile_ms(99), unit="ms",
               target=P99_TARGET),
        Result(name="EST enrollment, server CPU", value=server_ms, unit="ms/enrollment",
               target=CPU_TARGET,
               notes=f"every serving process, the full TLS handshake included "
                     f"(cacerts below: {floor_ms:.2f} ms of it is handshake + HTTP); crypto "
                     f"floor {crypto_ms:.2f} ms/cert; step-ca 0.19: 1.59"),
        Result(name="EST enrollment, client CPU", value=enroll_cpu.client_seconds
               / enrolled.elapsed if enrolled.elapsed else float("nan"), unit="cores",
               notes="this process: handshakes, requests, answers"),
        Result(name="EST cacerts, new TLS connection each", value=floor.rate, unit="requests/s",
               notes=f"the handshake + HTTP floor: {floor.describe()}; server {floor_ms:.2f} ms "
                     f"CPU/req; p50 {floor.percentile_ms(50):.1f} ms; "
                     f"{floor_cpu.describe(floor)}"),
        Result(name="EST cacerts, resumed TLS session", value=server_ms_per_request(
                   resumed_cpu, resumed), unit="ms/req",
               notes=f"a new connection each, resuming the device's session ticket (TLS 1.3 "
                     f"PSK): {reused:,} of {resumed.done + RESUMING_DEVICES:,} handshakes "
                     f"resumed; {resumed.describe()}; {RESUMING_DEVICES} devices"),
    ]
