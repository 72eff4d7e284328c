"""Issue 6's targets: tokens issued/s through the endpoint on one worker (≥ 2,000/s) and
verifications/s with the resource-server helper on one core (≥ 5,000/s, cache allowed).

A real ``iotiam serve --workers 1``; 8 devices, each with an iotiam certificate and an
OAuth client (``tls_client_auth``), ask ``POST /oauth2/token`` for certificate-bound
tokens, each over its own keep-alive mTLS connection (distinct clients, so nothing one
client's repeated requests could share is measured). The tokens they got are then
verified with ``iotiam.tokens.verify.TokenVerifier`` against the JWKS, with the bound
certificate.

The server answers the endpoint in front of FastAPI and commits the requests that meet
in one transaction (``api/oauth_token_path.py``). On a shared 2-core machine the
server's share of a core varies from run to run; the notes give its CPU per token and
what that makes at one whole core, the figure that does not depend on the neighbours.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks.harness import CpuMeter, Measured, Result, RunConfig, Target, run_bounded_async
from benchmarks.loadgen import KeepAlivePool, encode_request
from benchmarks.server import RunningServer, running_server
from iotiam.testing import make_csr, make_key
from iotiam.tokens.verify import TokenVerifier

NAME = "oauth"
TITLE = "OAuth2: tokens issued/s through /oauth2/token (mTLS), verifications/s"
CONNECTIONS = 8
DEVICES = [f"oauth-bench-{i}" for i in range(CONNECTIONS)]


def run(config: RunConfig) -> list[Result]:
    """Issue tokens flat out, then verify what was issued."""
    count = config.size(6_000, 600)
    sign_us = _es256_sign_us()
    with running_server(config, NAME) as server, tempfile.TemporaryDirectory() as scratch:
        devices = [_device(server, Path(scratch), device) for device in DEVICES]
        cpu = CpuMeter(server.pid)
        tokens: list[tuple[int, str]] = []
        measured = asyncio.run(_drive(server, devices, count, config, cpu, tokens))
        sign_after_us = _es256_sign_us()
        jwks = httpx.get(f"{server.api_url}/oauth2/jwks", verify=server.tls_context()).json()
        issuer = httpx.get(f"{server.api_url}/.well-known/oauth-authorization-server",
                           verify=server.tls_context()).json()["issuer"]
    certificates = [x509.load_pem_x509_certificate(device.cert_pem.encode())
                    for device in devices]
    audience = json.loads(_claims(tokens[0][1]))["aud"]
    rows = [Result(name="tokens issued via /oauth2/token, mTLS, 1 worker",
                   value=measured.rate, unit="tokens/s", target=Target(2_000),
                   notes=f"{measured.describe()}; {CONNECTIONS} devices, a keep-alive "
                         f"connection each; "
                         f"p99 {measured.percentile_ms(99):.1f} ms; {cpu.describe(measured)}"
                         f"{_one_core(cpu, measured.done)}; one ES256 signature took "
                         f"{sign_us:.0f} µs here before the run and {sign_after_us:.0f} µs "
                         "after (this host's speed varies)")]
    for cached in (False, True):
        verifier = TokenVerifier(issuer=issuer, audience=audience if isinstance(audience, str)
                                 else audience[0], jwks=lambda: jwks,
                                 cache_size=10_000 if cached else 0)
        sample = tokens[:2_000]
        start = time.perf_counter()
        cpu_start = time.process_time()
        for device, token in sample:
            verifier.verify(token, certificate=certificates[device])
        elapsed = time.perf_counter() - start
        rate = len(sample) / elapsed
        rows.append(Result(
            name=f"verifications/s with the helper ({'cache' if cached else 'no cache'})",
            value=rate, unit="tokens/s", target=Target(5_000) if cached else None,
            notes=f"{len(sample):,} distinct tokens, bound certificate checked; "
                  f"{(time.process_time() - cpu_start) / len(sample) * 1e3:.3f} ms CPU each"))
    return rows


def _es256_sign_us() -> float:
    """µs per ES256 signature here, now: how fast this host runs at the moment."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = time.perf_counter()
    for _ in range(1_000):
        key.sign(b"iotiam" * 50, ec.ECDSA(hashes.SHA256()))
    return (time.perf_counter() - start) * 1e3


def _one_core(cpu: CpuMeter, done: int) -> str:
    """``; ≈ 2,400/s at one whole core`` from the server's CPU per token."""
    if not cpu.server_seconds or not done:
        return ""
    return f"; ≈ {done / cpu.server_seconds:,.0f}/s at one whole core"


@dataclass(frozen=True)
class _Device:
    """A device's certificate, its mTLS context and its encoded token request."""

    cert_pem: str
    tls: ssl.SSLContext
    request: bytes


def _device(server: RunningServer, scratch: Path, device: str) -> _Device:
    headers = server.admin_headers()
    with httpx.Client(base_url=server.api_url, headers=headers, verify=server.tls_context(),
                      timeout=30) as api:
        assert api.post("/v1/devices", json={"id": device, "type": "sensor"}).status_code == 201
        key = make_key()
        answer = api.post("/v1/certificates", json={"device": device,
                                                    "csr": make_csr(device, key).decode()})
        if answer.status_code != 201:
            raise RuntimeError(f"certificate: {answer.status_code} {answer.text}")
        client = api.post("/v1/oauth/clients", json={
            "device": device, "auth_methods": ["tls_client_auth"]})
        if client.status_code != 201:
            raise RuntimeError(f"client: {client.status_code} {client.text}")
    cert_pem: str = answer.json()["pem"]
    cert_file, key_file = scratch / f"{device}.pem", scratch / f"{device}.key"
    cert_file.write_text(cert_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    tls = server.tls_context()
    tls.load_cert_chain(str(cert_file), str(key_file))
    request = encode_request(
        "POST", f"{server.api_url}/oauth2/token",
        urlencode({"grant_type": "client_credentials", "client_id": device,
                   "scope": f"mqtt:publish:devices/{device}/#"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"})
    return _Device(cert_pem, tls, request)


async def _drive(server: RunningServer, devices: list[_Device], count: int,
                 config: RunConfig, cpu: CpuMeter, tokens: list[tuple[int, str]]) -> Measured:
    async with contextlib.AsyncExitStack() as stack:
        pools = [await stack.enter_async_context(KeepAlivePool(server.api_url, 1, device.tls))
                 for device in devices]
        idle: asyncio.Queue[int] = asyncio.Queue()
        for n in range(len(devices)):
            idle.put_nowait(n)

        async def issue(_: int) -> None:
            n = await idle.get()  # a device whose connection is free
            try:
                answer = await pools[n].send(devices[n].request)
            finally:
                idle.put_nowait(n)
            if answer.status != 200:
                raise RuntimeError(f"/oauth2/token answered {answer.status}: "
                                   f"{answer.body[:300]!r}")
            tokens.append((n, json.loads(answer.body)["access_token"]))

        for _ in range(2):  # every connection warm, every client seen once
            await asyncio.gather(*(issue(0) for _ in devices))
        tokens.clear()
        cpu.start()
        measured = await run_bounded_async(issue, count=count,
                                           seconds=config.seconds(10.0, 2.0),
                                           concurrency=CONNECTIONS)
        cpu.stop()
        return measured


def _claims(token: str) -> str:
    import base64

    payload = token.split(".")[1]
    return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
