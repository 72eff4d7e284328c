"""Issue 17: revocation that cascades — 10,000 devices of one manufacturer batch revoked.

A fleet of 10,000 devices of ``manufacturer=acme and batch=2026-07`` (and 1,000 of
another batch, which must stay), each with a real certificate from the built-in CA,
registered and certified in-process. Then ``SetRevocation.revoke`` is timed (20
batches of 500, one transaction each), then what the change feed had left to
deliver to this process's consumers (the PDP's subjects, OCSP's cache: they get a
batch's changes at its commit, inside the call), then the CRL that the broker
installs (``Pki.current_crl``). Target: ≤ 5 s from the call to all of it; CPU is
printed beside it, the steady figure on a loaded host. The broker's kicks are not
timed on that fleet (10,000 live TLS sessions cost more than the rest of the run); a
second and a third row run ``iotiam serve`` with its managed Mosquitto, revoke a batch
of certified devices through the API while 100 of them hold mTLS sessions, and time the
call until the last of those sessions is dropped: 1,000 devices under dynsec, 10,000
under the broker plugin (docs/broker-plugin.md).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from benchmarks.harness import Result, RunConfig, Target, device_csrs, device_ids, installation
from benchmarks.server import RunningServer, running_server
from iotiam.bootstrap import Services
from iotiam.broker.layout import mosquitto_binary
from iotiam.kernel import SYSTEM
from iotiam.pki.models import CertificateRecord, IssueRequest
from iotiam.testing import free_ports, make_csr, make_key
from iotiam.testing.mqtt import MqttDevice

NAME = "cascade"
TITLE = "revoke by set: 10k devices (2k with --quick), feed delivered, CRL rebuilt"
TARGET_SECONDS = 5.0
WHERE = "manufacturer=acme and batch=2026-07"
CHUNK = 500
#: how long the broker sync may take to admit a device just certified
ADMIT_SECONDS = 10.0
DROP_SECONDS = 10.0
#: called with the running server just before the timed revocation (``profile_server``
#: drops the set-up's samples there)
before_revoke: Callable[[RunningServer], None] | None = None


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
    """In-process on 10,000 devices, then through ``serve`` with live sessions."""
    # dynsec rewrites its whole file per command, so kicks cost ~6 ms per device there:
    # 1,000 devices; the plugin kicks without rewriting anything: the whole 10,000
    return (run_in_process(config) + run_live(config, "dynsec")
            + run_live(config, "plugin", full=10_000, quick=1000))


def run_in_process(config: RunConfig) -> list[Result]:
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


def run_live(config: RunConfig, auth: str = "dynsec", *, full: int = 1000, quick: int = 300
             ) -> list[Result]:
    """``iotiam serve`` with its managed Mosquitto: a batch of certified devices, some of
    them connected over mTLS; one ``POST /v1/revocations/sets`` and the time until the
    last of those sessions is dropped."""
    if mosquitto_binary() is None:
        return [Result(name=f"{NAME}: sessions dropped", value=0, unit="s",
                       error="mosquitto not installed")]
    count, online = config.size(full, quick), config.size(100, 30)
    with ExitStack() as stack:
        server = stack.enter_context(running_server(
            config, f"cascade-{auth}", broker_ports=_three_ports(),
            init_args=("--broker-auth", auth)))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        chain = scratch / "chain.pem"
        chain.write_text(httpx.get(f"{server.http_url}/ca/chain.pem", timeout=10).text)
        api = stack.enter_context(httpx.Client(
            base_url=server.api_url, verify=server.tls_context(),
            headers=server.admin_headers(), timeout=120))
        ids = device_ids(count, "live")
        # the connected devices are spread over every batch: the last one is timed too
        connected = set(ids[::count // online][:online])
        _import_batch(api, ids)
        files = {d: _certify(api, d, scratch if d in connected else None) for d in ids}
        assert server.broker_ports is not None
        devices = [_connected(chain, files[d], server.broker_ports[0])
                   for d in sorted(connected)]
        for device in devices:
            stack.callback(device.close)
        preview = api.post("/v1/revocations/sets", json={"where": WHERE, "dry_run": True})
        if before_revoke is not None:
            before_revoke(server)
        cpu = server.cpu_seconds() or 0.0
        started = time.monotonic()
        answer = api.post("/v1/revocations/sets", json={"where": WHERE,
                                                        "reason": "keyCompromise"})
        answered = time.monotonic() - started
        answer.raise_for_status()
        dropped = [d.disconnected_at - started for d in devices
                   if d.disconnected.wait(DROP_SECONDS) and d.disconnected_at is not None]
        server_cpu = (server.cpu_seconds() or 0.0) - cpu
    last = max(dropped, default=float("inf")) if len(dropped) == online else float("inf")
    return [Result(
        name=f"cascade {count:,} devices via API ({auth}), {online} live sessions dropped",
        value=last, unit="s", target=Target(TARGET_SECONDS, at_least=False),
        notes=f"{len(dropped)} of {online} sessions dropped; the call answered in "
              f"{answered:.2f} s, the last session ended {last:.2f} s after it began; "
              f"server CPU {server_cpu:.2f} s ({server_cpu / count * 1000:.2f} ms/device, "
              "broker not counted); dry run said "
              f"{preview.json().get('sessions')} live sessions")]


def _three_ports() -> tuple[int, int, int]:
    mtls, psk, admin = free_ports(3)
    return mtls, psk, admin


def _import_batch(api: httpx.Client, ids: Sequence[str]) -> None:
    rows = [{"row": n, "data": {"id": d, "type": "sensor", "manufacturer": "acme",
                                "batch": "2026-07"}} for n, d in enumerate(ids, 1)]
    for start in range(0, len(rows), CHUNK):
        answer = api.post("/v1/devices/import", json={"rows": rows[start:start + CHUNK]})
        if answer.status_code != 200 or answer.json().get("failed"):
            raise RuntimeError(f"import failed: {answer.status_code} {answer.text[:300]}")


def _certify(api: httpx.Client, device_id: str, keep: Path | None
             ) -> tuple[Path, Path] | None:
    """A certificate for the device; its files when ``keep`` names where."""
    key = make_key()
    answer = api.post("/v1/certificates", json={
        "device": device_id, "csr": make_csr(device_id, key=key).decode()})
    answer.raise_for_status()
    if keep is None:
        return None
    cert, key_file = keep / f"{device_id}.pem", keep / f"{device_id}.key"
    cert.write_text(answer.json()["pem"])
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_file


def _connected(chain: Path, files: tuple[Path, Path] | None, port: int) -> MqttDevice:
    """An mTLS session on the managed broker (retried while the sync admits the device)."""
    assert files is not None
    cert, key = files
    deadline = time.monotonic() + ADMIT_SECONDS
    while True:
        device = MqttDevice(cert.stem).use_certificate(chain, cert, key)
        if device.connect(port):
            device.client.reconnect_delay_set(60, 120)
            return device
        device.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not admit {cert.stem}: {device.connect_result}")
        time.sleep(0.1)
