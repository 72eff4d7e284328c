"""Target 4: ≥ 5,000 OCSP responses/s, in-process and over plain HTTP.

~1,000 certificates are issued through the real path and every tenth is revoked.
Requests carry no nonce, so the responder's cache applies (RFC 5019 style); the
status is still read from the database on every request (G3). Before timing, one
pass checks every answer (successful, right serial, good/revoked as expected) and
fills the cache. Over HTTP the requests go to ``POST /ocsp`` on the plain-HTTP port
of a real ``iotiam serve`` over keep-alive connections: the target row from the lean
client of ``loadgen``, then an ``httpx.AsyncClient`` row as context.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as x509_ocsp

from benchmarks.harness import (
    CpuMeter,
    Measured,
    Result,
    RunConfig,
    Target,
    device_csrs,
    device_ids,
    failed,
    installation,
    register_devices,
    run_bounded,
    run_bounded_async,
)
from benchmarks.loadgen import KeepAlivePool, encode_request
from benchmarks.server import (
    RunningServer,
    api_client,
    import_devices,
    issue_via_api,
    running_server,
)
from iotiam.kernel import SYSTEM

NAME = "ocsp"
TITLE = "OCSP via Pki.ocsp_response and POST /ocsp (no nonce: cached signatures)"
TARGET = Target(5_000)
REVOKE_EVERY = 10
HTTP_CONNECTIONS = 16
ISSUE_CONNECTIONS = 8
OCSP_REQUEST = "application/ocsp-request"


@dataclass(frozen=True)
class Probe:
    """One prepared OCSP request and the answer it must get."""

    serial: int
    der: bytes
    revoked: bool


def make_probe(cert_pem: str, issuer: x509.Certificate, revoked: bool,
               nonce: bool = False) -> Probe:
    """A single-certificate request with a SHA-1 CertID, as ``openssl ocsp`` sends."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    # SHA-1 here only names the certificate (CertID, RFC 6960 §4.1.1); nothing is signed
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce:
        builder = builder.add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
    der = builder.build().public_bytes(serialization.Encoding.DER)
    return Probe(cert.serial_number, der, revoked)


def check_answer(probe: Probe, der: bytes) -> None:
    """Refuse to time anything but real, correct answers."""
    response = x509_ocsp.load_der_ocsp_response(der)
    if response.response_status is not x509_ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise RuntimeError(f"OCSP answered {response.response_status.name}")
    expected = (x509_ocsp.OCSPCertStatus.REVOKED if probe.revoked
                else x509_ocsp.OCSPCertStatus.GOOD)
    if response.serial_number != probe.serial or response.certificate_status is not expected:
        raise RuntimeError(f"OCSP said {response.certificate_status.name} for serial "
                           f"{response.serial_number:x}, expected {expected.name}")


def rate_row(name: str, measured: Measured, target: Target | None, notes: str) -> Result:
    """A responses/s row."""
    return Result(name=name, value=measured.rate, unit="resp/s", target=target,
                  notes=f"{measured.describe()}; {notes}")


# -- in-process ---------------------------------------------------------------------------


def in_process(config: RunConfig) -> list[Result]:
    """Issue and revoke through ``Pki``, then answer from one thread."""
    ids = device_ids(config.size(1_000, 100))
    with installation(config, NAME) as services:
        pki = services.pki
        register_devices(services, ids)
        probes: list[Probe] = []
        nonce_probes: list[Probe] = []
        issuer = pki.cas.issuing.certificate
        for n, (device_id, csr) in enumerate(zip(ids, device_csrs(ids), strict=True)):
            record = pki.issue_certificate(SYSTEM, device_id=device_id, csr_data=csr)
            revoked = n % REVOKE_EVERY == 0
            if revoked:
                pki.revoke_certificate(SYSTEM, record.serial_hex, "keyCompromise")
            assert record.pem is not None
            probes.append(make_probe(record.pem, issuer, revoked))
            nonce_probes.append(make_probe(record.pem, issuer, revoked, nonce=True))
        for probe in probes:
            check_answer(probe, pki.ocsp_response(probe.der))
        check_answer(nonce_probes[0], pki.ocsp_response(nonce_probes[0].der))

        def answer(i: int) -> None:
            pki.ocsp_response(probes[i % len(probes)].der)

        def answer_nonce(i: int) -> None:
            pki.ocsp_response(nonce_probes[i % len(nonce_probes)].der)

        seconds = config.seconds(6.0, 1.5)
        cached = run_bounded(answer, count=config.size(60_000, 10_000), seconds=seconds)
        signed = run_bounded(answer_nonce, count=config.size(20_000, 3_000), seconds=seconds)
    detail = f"{len(probes):,} certs, 1 in {REVOKE_EVERY} revoked, 1 thread"
    return [
        rate_row("OCSP in-process (cached signature)", cached, TARGET, detail),
        rate_row("OCSP in-process, with nonce (signed each time)", signed, None, detail),
    ]


# -- over HTTP ----------------------------------------------------------------------------


async def prepare_over_api(server: RunningServer, ids: Sequence[str]) -> list[Probe]:
    """Issue one certificate per device over the API, revoke every tenth, build probes."""
    csrs = [c.decode() for c in device_csrs(ids, pem=True)]
    async with api_client(server, connections=ISSUE_CONNECTIONS) as client:
        semaphore = asyncio.Semaphore(ISSUE_CONNECTIONS)

        async def issue(n: int) -> str:
            async with semaphore:
                body = await issue_via_api(client, ids[n], csrs[n])
                if n % REVOKE_EVERY == 0:
                    answer = await client.post(f"/v1/certificates/{body['serial']}/revoke",
                                               json={"reason": "keyCompromise"})
                    if answer.status_code != 200:
                        raise RuntimeError(f"revoke answered {answer.status_code}: "
                                           f"{answer.text[:300]}")
                return str(body["pem"])

        pems = await asyncio.gather(*(issue(n) for n in range(len(ids))))
    async with httpx.AsyncClient(base_url=server.http_url) as public:
        chain = await public.get("/ca/chain.pem")
        chain.raise_for_status()
    issuer = x509.load_pem_x509_certificates(chain.content)[0]
    return [make_probe(pem, issuer, n % REVOKE_EVERY == 0) for n, pem in enumerate(pems)]


async def drive_lean(server: RunningServer, probes: Sequence[Probe], *, count: int,
                     seconds: float, cpu: CpuMeter) -> Measured:
    """Check every answer once (this fills the cache), then load ``POST /ocsp``."""
    requests = [encode_request("POST", f"{server.http_url}/ocsp", probe.der,
                               {"Content-Type": OCSP_REQUEST}) for probe in probes]
    async with KeepAlivePool(server.http_url, HTTP_CONNECTIONS) as pool:
        for probe, answer in zip(probes, await pool.send_all(requests), strict=True):
            if answer.status != 200:
                raise RuntimeError(f"POST /ocsp answered {answer.status}")
            check_answer(probe, answer.body)

        async def ask(i: int) -> None:
            answer = await pool.send(requests[i % len(requests)])
            if answer.status != 200 or not answer.body:
                raise RuntimeError(f"POST /ocsp answered {answer.status}")

        cpu.start()
        measured = await run_bounded_async(ask, count=count, seconds=seconds,
                                           concurrency=HTTP_CONNECTIONS)
        cpu.stop()
        return measured


async def drive_httpx(server: RunningServer, probes: Sequence[Probe], *, count: int,
                      seconds: float, cpu: CpuMeter) -> Measured:
    """The same load from ``httpx.AsyncClient`` with keep-alive connections."""
    limits = httpx.Limits(max_connections=HTTP_CONNECTIONS,
                          max_keepalive_connections=HTTP_CONNECTIONS)
    async with httpx.AsyncClient(base_url=server.http_url, limits=limits, timeout=30.0,
                                 headers={"Content-Type": OCSP_REQUEST}) as client:

        async def ask(i: int) -> None:
            answer = await client.post("/ocsp", content=probes[i % len(probes)].der)
            if answer.status_code != 200 or not answer.content:
                raise RuntimeError(f"POST /ocsp answered {answer.status_code}")

        await run_bounded_async(ask, count=HTTP_CONNECTIONS, seconds=seconds,
                                concurrency=HTTP_CONNECTIONS)
        cpu.start()
        measured = await run_bounded_async(ask, count=count, seconds=seconds,
                                           concurrency=HTTP_CONNECTIONS)
        cpu.stop()
        return measured


def over_http(config: RunConfig) -> list[Result]:
    """A real server: issue and revoke over the API, then load the plain-HTTP responder."""
    ids = device_ids(config.size(1_000, 100))
    with running_server(config, f"{NAME}-http") as server:
        import_devices(server, ids)
        probes = asyncio.run(prepare_over_api(server, ids))
        lean_cpu, httpx_cpu = CpuMeter(server.pid), CpuMeter(server.pid)
        lean = asyncio.run(drive_lean(server, probes, count=config.size(40_000, 6_000),
                                      seconds=config.seconds(8.0, 2.0), cpu=lean_cpu))
        with_httpx = asyncio.run(drive_httpx(server, probes, count=config.size(10_000, 2_000),
                                             seconds=config.seconds(4.0, 1.0), cpu=httpx_cpu))
    setup = f"{len(probes):,} certs, {HTTP_CONNECTIONS} keep-alive connections"
    return [
        rate_row("OCSP over HTTP (POST /ocsp)", lean, TARGET,
                 f"{setup}; {lean_cpu.describe(lean)}"),
        Result(name="OCSP over HTTP, p50 latency", value=lean.percentile_ms(50), unit="ms"),
        Result(name="OCSP over HTTP, p99 latency", value=lean.percentile_ms(99), unit="ms"),
        rate_row("OCSP over HTTP, httpx.AsyncClient", with_httpx, None,
                 f"p50 {with_httpx.percentile_ms(50):.1f} ms, "
                 f"p99 {with_httpx.percentile_ms(99):.1f} ms; {httpx_cpu.describe(with_httpx)}"),
    ]


def run(config: RunConfig) -> list[Result]:
    """In-process first, then over HTTP; one failing half does not hide the other."""
    results: list[Result] = []
    for part, label in ((in_process, "ocsp in-process"), (over_http, "ocsp over HTTP")):
        try:
            results.extend(part(config))
        except Exception as e:
            results.append(failed(label, e))
    return results
