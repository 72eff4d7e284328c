"""The EMQX HTTP authorization hook: ≥ 5,000 decisions/s with p99 < 5 ms, one worker.

A real ``iotiam serve --workers 1`` with 1,000 devices (200 with --quick) under the
default device policy and a policy of their own on top (a conditional allow: a time
window and source networks, both evaluated per request). EMQX keeps a pool of HTTP
connections to its authorizer (8 by default); here 8 keep-alive HTTPS connections send
its JSON template, through the lean client of ``loadgen`` so the number is the
server's, not the client's. The mix per device: publish in its own namespace (allow),
publish into another device's (deny), subscribe to its own filter (allow), publish on
the shared line topic (allow from the listed network for every other device, deny
from another network for the rest).

Before timing, one pass checks every answer against the expected result (and fills
the server's subject cache, as the first questions about each device would).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from benchmarks.harness import (
    CpuMeter,
    Measured,
    Result,
    RunConfig,
    Target,
    device_csrs,
    device_ids,
    run_bounded_async,
)
from benchmarks.loadgen import KeepAlivePool, encode_request
from benchmarks.server import RunningServer, import_devices, issue_via_api, running_server

NAME = "policy-hook"
TITLE = "EMQX HTTP authorization hook over HTTPS (serve --workers 1)"
RATE_TARGET = Target(5_000)
P99_TARGET_MS = Target(5.0, at_least=False)
CONNECTIONS = 8  # EMQX's default pool size for an HTTP authorizer
HOOK_PATH = "/v1/hooks/emqx/authz"

LINE_POLICY = """\
name: bench-lines
version: 1
statements:
  - sid: line
    effect: allow
    actions: [mqtt:publish]
    topics: ["lines/shared/${device.type}/#"]
    conditions:
      time_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "24:00",
                    timezone: Europe/Berlin}
      source_networks: ["10.0.0.0/8"]
"""


@dataclass(frozen=True)
class Probe:
    """One pre-encoded hook request and the result it must get."""

    request: bytes
    expected: str


def _fields(device: str, action: str, topic: str, peer: str) -> bytes:
    return json.dumps({"clientid": device, "username": device, "peerhost": peer,
                       "topic": topic, "action": action, "qos": "1",
                       "retain": "false"}).encode()


def make_probes(server: RunningServer, ids: Sequence[str], token: str) -> list[Probe]:
    """Four requests per device, ordered so consecutive requests differ in device."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    url = f"{server.api_url}{HOOK_PATH}"
    probes: list[Probe] = []
    for kind, (n, device) in ((k, d) for k in range(4) for d in enumerate(ids)):
        other = ids[(n + 1) % len(ids)]
        if kind == 0:
            body, expected = _fields(device, "publish", f"devices/{device}/telemetry",
                                     "10.1.2.3"), "allow"
        elif kind == 1:
            body, expected = _fields(device, "publish", f"devices/{other}/telemetry",
                                     "10.1.2.3"), "deny"
        elif kind == 2:
            body, expected = _fields(device, "subscribe", f"devices/{device}/cmd/#",
                                     "10.1.2.3"), "allow"
        else:
            peer = "10.9.8.7" if n % 2 else "192.168.1.5"
            body = _fields(device, "publish", "lines/shared/sensor/temp", peer)
            expected = "allow" if peer.startswith("10.") else "deny"
        probes.append(Probe(encode_request("POST", url, body, headers), expected))
    return probes


async def _certify(server: RunningServer, ids: Sequence[str]) -> None:
    """A certificate for every device: the hook allows nothing to a device that holds no
    valid credential (G3), and a first certificate makes a pending device active."""
    csrs = device_csrs(ids, pem=True)
    async with httpx.AsyncClient(base_url=server.api_url, verify=server.tls_context(),
                                 headers=server.admin_headers(), timeout=120.0) as client:
        for start in range(0, len(ids), CONNECTIONS):
            await asyncio.gather(*(issue_via_api(client, device, csr.decode())
                                   for device, csr in zip(ids[start:start + CONNECTIONS],
                                                          csrs[start:start + CONNECTIONS],
                                                          strict=True)))


def prepare(server: RunningServer, ids: Sequence[str]) -> str:
    """Register and certify the devices, store and attach the line policy, mint the
    hook's token."""
    import_devices(server, ids)
    asyncio.run(_certify(server, ids))
    with httpx.Client(base_url=server.api_url, verify=server.tls_context(),
                      headers=server.admin_headers(), timeout=60.0) as client:
        stored = client.put("/v1/policies", content=LINE_POLICY,
                            headers={"Content-Type": "application/yaml"})
        attached = client.post("/v1/policies/bench-lines/attachments",
                               json={"kind": "device-type", "id": "sensor"})
        token = client.post("/v1/tokens", json={"name": "emqx", "role": "viewer"})
    for answer, wanted in ((stored, 201), (attached, 201), (token, 201)):
        if answer.status_code != wanted:
            raise RuntimeError(f"set-up answered {answer.status_code}: {answer.text[:300]}")
    secret: str = token.json()["token"]
    return secret


async def check_answers(pool: KeepAlivePool, probes: Sequence[Probe]) -> None:
    """Refuse to time anything but correct answers."""
    answers = await pool.send_all([p.request for p in probes])
    for probe, answer in zip(probes, answers, strict=True):
        got = json.loads(answer.body).get("result") if answer.status == 200 else None
        if got != probe.expected:
            raise RuntimeError(f"the hook answered {answer.status} {answer.body[:100]!r}, "
                               f"expected {probe.expected}")


async def saturate(server: RunningServer, probes: Sequence[Probe], *, count: int,
                   seconds: float, cpu: CpuMeter) -> Measured:
    """Check every answer once, then send as fast as the connections allow."""
    async with KeepAlivePool(server.api_url, CONNECTIONS, server.tls_context()) as pool:
        await check_answers(pool, probes)

        async def ask(i: int) -> None:
            answer = await pool.send(probes[i % len(probes)].request)
            if answer.status != 200:
                raise RuntimeError(f"the hook answered {answer.status}")

        cpu.start()
        measured = await run_bounded_async(ask, count=count, seconds=seconds,
                                           concurrency=CONNECTIONS)
        cpu.stop()
        return measured


async def paced(server: RunningServer, probes: Sequence[Probe], *, rate: float,
                seconds: float) -> Measured:
    """Offer ``rate`` requests/s on a fixed schedule (as a busy broker would). A request
    sent on time is timed from when it was sent (the client timer's own ~1 ms lateness
    is not the server's); one that is already late because earlier answers were slow is
    timed from when it was due, so a stall counts for every request queued behind it
    (no coordinated omission)."""
    loop = asyncio.get_running_loop()
    async with KeepAlivePool(server.api_url, CONNECTIONS, server.tls_context()) as pool:
        await check_answers(pool, probes[:CONNECTIONS])
        latencies: list[float] = []
        total = int(rate * seconds)
        start = loop.time() + 0.05
        slots = itertools.count()

        async def worker() -> None:
            while (k := next(slots)) < total:
                due = start + k / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                    # on time: the timer's own lateness is the client's, not the server's
                    due = loop.time()
                answer = await pool.send(probes[k % len(probes)].request)
                if answer.status != 200:
                    raise RuntimeError(f"the hook answered {answer.status}")
                latencies.append(loop.time() - due)

        began = time.perf_counter()
        # more senders than connections: a request waits for a free connection on time
        await asyncio.gather(*(worker() for _ in range(4 * CONNECTIONS)))
        return Measured(len(latencies), time.perf_counter() - began, latencies)


def run(config: RunConfig) -> list[Result]:
    """One server, one worker: decisions/s and latency percentiles."""
    ids = device_ids(config.size(1_000, 200), prefix="hook")
    with running_server(config, NAME, workers=1) as server:
        token = prepare(server, ids)
        probes = make_probes(server, ids, token)
        cpu = CpuMeter(server.pid)
        flat_out = asyncio.run(saturate(server, probes, count=config.size(60_000, 8_000),
                                        seconds=config.seconds(8.0, 2.0), cpu=cpu))
        offered = asyncio.run(paced(server, probes, rate=RATE_TARGET.value,
                                    seconds=config.seconds(8.0, 2.0)))
    setup = (f"{len(ids):,} devices, {len(probes):,} distinct requests (half allow), "
             f"{CONNECTIONS} keep-alive HTTPS connections")
    at_target = f"at {RATE_TARGET.value:,.0f} requests/s offered ({offered.describe()})"
    return [
        Result(name="EMQX authz hook (POST /v1/hooks/emqx/authz), flat out",
               value=flat_out.rate, unit="decisions/s", target=RATE_TARGET,
               notes=f"{flat_out.describe()}; {setup}; {cpu.describe(flat_out)}"),
        Result(name="EMQX authz hook flat out, p99 latency",
               value=flat_out.percentile_ms(99), unit="ms",
               notes=f"p50 {flat_out.percentile_ms(50):.2f} ms; queueing at saturation"),
        Result(name="EMQX authz hook at 5,000/s, p50 latency", value=offered.percentile_ms(50),
               unit="ms", notes=at_target),
        Result(name="EMQX authz hook at 5,000/s, p99 latency", value=offered.percentile_ms(99),
               unit="ms", target=P99_TARGET_MS,
               notes=f"{at_target}; p99.9 {offered.percentile_ms(99.9):.2f} ms"),
    ]
