"""iotiam beside cfssl and step-ca (issue 16): server CPU per certificate under one load.

``python -m benchmarks --only peers`` starts each peer that is installed (cfssl from
``golang-cfssl``; step-ca built from ``golang-github-smallstep-certificates-dev``, found
through ``IOTIAM_BENCH_STEP_CA`` or on PATH: benchmarks/README.md) on 127.0.0.1, then
``iotiam serve`` (SQLite, or ``--database-url``) with ``--workers 1`` and ``--workers 2``,
and drives each the same three ways:

- keep-alive: ``api-issuance``'s lean driver, 8 TLS connections, a fresh P-256 key per
  CSR (for iotiam it *is* ``api_issuance.drive_lean``);
- a new TLS connection per certificate, 24 at a time: for iotiam that is ``est-enroll``
  (``simpleenroll`` with a claim token), for the peers their sign call with
  ``Connection: close``;
- the floor of that: the CA's certificates on a new TLS connection, no signing (iotiam's
  EST ``cacerts``, cfssl's ``info``, step-ca's ``/roots``).

step-ca's one-time tokens are made before the timed window, so they cost this process
and not the server; the server still checks each one and stores its ``jti``. The figure
is the ratio of server CPU per certificate (``CpuMeter``, every thread and process of
the server): an absolute rate on a shared two-core host says little, the ratio travels.
A peer that is not installed is a skipped row that says how to install it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from benchmarks import api_issuance, est_enroll
from benchmarks.harness import (
    CpuMeter,
    Measured,
    Result,
    RunConfig,
    device_csrs,
    device_ids,
    run_bounded_async,
    scratch_dir,
    server_ms_per_request,
)
from benchmarks.loadgen import Answer, KeepAlivePool, OneShotClient
from benchmarks.peer_servers import (
    CFSSL_MISSING,
    STEP_CA_MISSING,
    Peer,
    cfssl_binary,
    cfssl_certificate,
    cfssl_info_certificate,
    cfssl_info_request,
    cfssl_sign_request,
    make_pki,
    provisioner_key,
    running_cfssl,
    running_step_ca,
    sign_token,
    step_ca_binary,
    step_ca_certificate,
    step_ca_root,
    step_ca_roots_request,
    step_ca_sign_request,
)
from benchmarks.server import create_claims, import_devices, running_server

NAME = "peers"
TITLE = ("iotiam beside cfssl and step-ca (Debian's builds): server CPU per certificate, "
         "same driver")
CONNECTIONS = api_issuance.CONNECTIONS
CONCURRENCY = est_enroll.CONCURRENCY
IOTIAM_WORKERS = (1, 2)
KEEP_ALIVE = "sign, keep-alive"
FRESH = "sign, new TLS connection each"
#: the handshake + HTTP floor: the CA's certificates, a new connection each, no signing
FLOOR = "CA certificates, new TLS connection each"
UNITS = {KEEP_ALIVE: "ms/cert", FRESH: "ms/cert", FLOOR: "ms/req"}

Check = Callable[[Answer], x509.Certificate]


@dataclass(frozen=True)
class PeerApi:
    """How the driver asks one peer for a certificate, and for its CA certificate."""

    #: (peer, CN, PEM CSR, close the connection after it) -> the request
    sign: Callable[[Peer, str, str, bool], bytes]
    issued: Check
    #: (peer, close) -> the request
    ca: Callable[[Peer, bool], bytes]
    ca_answer: Check
    ca_cn: str


@dataclass(frozen=True)
class Workload:
    """The CSRs every server gets: keep-alive pairs and fresh-connection pairs."""

    keep_ids: list[str]
    keep_csrs: list[str]
    keep_count: int
    keep_seconds: float
    fresh_ids: list[str]
    fresh_csrs: list[str]
    fresh_count: int
    fresh_seconds: float


def workload(config: RunConfig) -> Workload:
    """Sizes as ``api-issuance`` and ``est-enroll`` use them."""
    keep_count, fresh_count = config.size(6_000, 600), config.size(3_000, 300)
    keep_ids, keep_csrs = api_issuance.fresh_csrs(device_ids(config.size(1_000, 100)),
                                                  1 + CONNECTIONS + keep_count)
    fresh_ids = device_ids(1 + 2 * CONCURRENCY + fresh_count, prefix="est")
    return Workload(keep_ids, keep_csrs, keep_count, config.seconds(12.0, 2.5),
                    fresh_ids, [c.decode() for c in device_csrs(fresh_ids, pem=True)],
                    fresh_count, config.seconds(10.0, 2.5))


@dataclass(frozen=True)
class Run:
    """One server, one way of connecting: what finished and the CPU it took."""

    measured: Measured
    cpu: CpuMeter

    @property
    def ms(self) -> float:
        """Server CPU per certificate."""
        return server_ms_per_request(self.cpu, self.measured)

    def describe(self) -> str:
        """Rate, p50/p99 and the CPU split."""
        m = self.measured
        return (f"{m.rate:,.0f}/s, p50 {m.percentile_ms(50):.1f} ms, p99 "
                f"{m.percentile_ms(99):.1f} ms; {m.describe()}; {self.cpu.describe(m)}")


@dataclass(frozen=True)
class Server:
    """A server's two runs, or why it was skipped."""

    label: str
    runs: dict[str, Run]
    skipped: str | None = None
    #: what it stores and checks, for the notes
    setup: str = ""


async def _timed(send: Callable[[bytes], Awaitable[Answer]], requests: Sequence[bytes], *,
                 check: Check, concurrency: int, seconds: float, cpu: CpuMeter) -> Measured:
    async def one(i: int) -> None:
        check(await send(requests[i]))

    cpu.start()
    measured = await run_bounded_async(one, count=len(requests), seconds=seconds,
                                       concurrency=concurrency)
    cpu.stop()
    return measured


def _names(certificate: x509.Certificate, cn: str) -> None:
    if cn not in certificate.subject.rfc4514_string():
        raise RuntimeError(f"asked for {cn}, issued {certificate.subject.rfc4514_string()}")


async def drive_keep_alive(peer: Peer, requests: Sequence[bytes], *, check: Check,
                           first_cn: str, seconds: float) -> Run:
    """Check one answer, warm each connection, then time the rest (as ``drive_lean``)."""
    async with KeepAlivePool(peer.url, CONNECTIONS, peer.tls) as pool:
        _names(check(await pool.send(requests[0])), first_cn)
        for answer in await pool.send_all(requests[1:CONNECTIONS + 1]):
            check(answer)
        cpu = CpuMeter(peer.pid)
        measured = await _timed(pool.send, requests[CONNECTIONS + 1:], check=check,
                                concurrency=CONNECTIONS, seconds=seconds, cpu=cpu)
    return Run(measured, cpu)


async def drive_fresh(peer: Peer, requests: Sequence[bytes], *, check: Check,
                      first_cn: str, seconds: float) -> Run:
    """A new TLS connection per request, ``CONCURRENCY`` at a time (as ``est-enroll``)."""
    client = OneShotClient(peer.url, peer.tls)
    _names(check(await client.send(requests[0])), first_cn)
    warm = 2 * CONCURRENCY
    await _timed(client.send, requests[1:warm + 1], check=check, concurrency=CONCURRENCY,
                 seconds=60.0, cpu=CpuMeter(peer.pid))
    cpu = CpuMeter(peer.pid)
    measured = await _timed(client.send, requests[warm + 1:], check=check,
                            concurrency=CONCURRENCY, seconds=seconds, cpu=cpu)
    return Run(measured, cpu)


def drive_peer(peer: Peer, work: Workload, api: PeerApi) -> dict[str, Run]:
    """Both ways of connecting, and the floor, against one started peer."""
    keep = [api.sign(peer, cn, csr, False) for cn, csr in zip(work.keep_ids, work.keep_csrs,
                                                                strict=True)]
    fresh = [api.sign(peer, cn, csr, True) for cn, csr in zip(work.fresh_ids, work.fresh_csrs,
                                                               strict=True)]
    floor = [api.ca(peer, True)] * len(fresh)
    return {
        KEEP_ALIVE: asyncio.run(drive_keep_alive(peer, keep, check=api.issued,
                                                 first_cn=work.keep_ids[0],
                                                 seconds=work.keep_seconds)),
        FRESH: asyncio.run(drive_fresh(peer, fresh, check=api.issued,
                                       first_cn=work.fresh_ids[0], seconds=work.fresh_seconds)),
        FLOOR: asyncio.run(drive_fresh(peer, floor, check=api.ca_answer, first_cn=api.ca_cn,
                                       seconds=work.fresh_seconds)),
    }


def cfssl_server(work: Workload) -> Server:
    """cfssl serve: signs, no certificate database (none is configured)."""
    binary = cfssl_binary()
    if binary is None:
        return Server("cfssl", {}, skipped=CFSSL_MISSING)
    with scratch_dir("cfssl") as directory, running_cfssl(binary, directory, make_pki()) as peer:
        runs = drive_peer(peer, work, PeerApi(
            sign=lambda p, _cn, csr, close: cfssl_sign_request(p, csr, close=close),
            issued=cfssl_certificate,
            ca=lambda p, close: cfssl_info_request(p, close=close),
            ca_answer=cfssl_info_certificate, ca_cn="bench issuing CA"))
    return Server("cfssl", runs, setup="no certificate database, no audit")


def step_ca_server(work: Workload) -> Server:
    """step-ca with a JWK provisioner and badgerv2 (issued certificates, used tokens)."""
    binary = step_ca_binary()
    if binary is None:
        return Server("step-ca", {}, skipped=STEP_CA_MISSING)
    provisioner = provisioner_key()
    with scratch_dir("step-ca") as directory, \
            running_step_ca(binary, directory, make_pki(), provisioner) as peer:
        now = int(time.time())

        def request(p: Peer, cn: str, csr: str, close: bool) -> bytes:
            return step_ca_sign_request(p, csr, sign_token(provisioner, p.url, cn, now=now),
                                        close=close)

        runs = drive_peer(peer, work, PeerApi(
            sign=request, issued=step_ca_certificate,
            ca=lambda p, close: step_ca_roots_request(p, close=close),
            ca_answer=step_ca_root, ca_cn="bench root CA"))
    return Server("step-ca", runs, setup="JWK one-time tokens, badgerv2 stores certificates "
                                         "and used tokens; request log to a file")


def iotiam_server(config: RunConfig, work: Workload, workers: int) -> Server:
    """``iotiam serve --workers N`` on SQLite: ``drive_lean``, then EST enrollments."""
    label = f"iotiam --workers {workers}"
    with running_server(config, f"{NAME}-iotiam-{workers}", workers=workers) as server:
        import_devices(server, sorted(set(work.keep_ids)) + work.fresh_ids)
        claims = create_claims(server, work.fresh_ids)
        keep_cpu, fresh_cpu, floor_cpu = (CpuMeter(server.pid) for _ in range(3))
        keep = asyncio.run(api_issuance.drive_lean(
            server, work.keep_ids, work.keep_csrs, count=work.keep_count,
            seconds=work.keep_seconds, cpu=keep_cpu))
        requests = [est_enroll.enroll_request(server, device_id, claims[device_id], der)
                    for device_id, der in zip(work.fresh_ids, _der(work.fresh_csrs),
                                              strict=True)]
        fresh = asyncio.run(est_enroll.drive_enrollments(
            server, work.fresh_ids, requests, warm=2 * CONCURRENCY,
            seconds=work.fresh_seconds, cpu=fresh_cpu))
        floor = asyncio.run(est_enroll.drive_cacerts(
            server, count=work.fresh_count, seconds=work.fresh_seconds, cpu=floor_cpu))
    backend = "PostgreSQL" if config.database_url else "SQLite"
    return Server(label, {KEEP_ALIVE: Run(keep, keep_cpu), FRESH: Run(fresh, fresh_cpu),
                          FLOOR: Run(floor, floor_cpu)},
                  setup=f"{backend}, audit; a new connection signs through EST simpleenroll "
                        "with a claim, CA certificates are EST cacerts")


def _der(csrs: Sequence[str]) -> list[bytes]:
    return [x509.load_pem_x509_csr(c.encode()).public_bytes(Encoding.DER) for c in csrs]


def server_rows(server: Server) -> list[Result]:
    """Server CPU per certificate for each way of connecting (or one skipped row)."""
    if server.skipped is not None:
        return [Result(name=f"{server.label}: sign, server CPU", value=math.nan,
                       unit="ms/cert", notes=f"skipped: {server.skipped}")]
    return [Result(name=f"{server.label}: {how}, server CPU", value=run.ms,
                   unit=UNITS[how], notes=f"{run.describe()}; {server.setup}")
            for how, run in server.runs.items()]


def ratio_rows(ours: Sequence[Server], peers: Sequence[Server]) -> list[Result]:
    """iotiam's server CPU per certificate over each installed peer's."""
    rows = []
    for peer in peers:
        for server in ours:
            for how in (KEEP_ALIVE, FRESH, FLOOR):
                theirs, mine = peer.runs.get(how), server.runs.get(how)
                if theirs is None or mine is None:
                    continue
                rows.append(Result(
                    name=f"ratio {server.label} / {peer.label}, {how}",
                    value=mine.ms / theirs.ms if theirs.ms else math.nan, unit="ratio",
                    notes=f"{mine.ms:.2f} / {theirs.ms:.2f} ms; p99 "
                          f"{mine.measured.percentile_ms(99):.0f} / "
                          f"{theirs.measured.percentile_ms(99):.0f} ms"))
    return rows


def run(config: RunConfig) -> list[Result]:
    """Each installed peer, then iotiam with one and two workers, the same load each."""
    work = workload(config)
    peers = [cfssl_server(work), step_ca_server(work)]
    ours = [iotiam_server(config, work, workers) for workers in IOTIAM_WORKERS]
    return [row for server in (*peers, *ours) for row in server_rows(server)] + ratio_rows(
        ours, peers)
