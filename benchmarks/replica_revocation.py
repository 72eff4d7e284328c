"""Issue 19: a revocation on replica A drops the device's MQTT session on replica B's broker.

Two ``iotiam serve`` replicas share one PostgreSQL schema (``--database-url``; B joins
with A's secrets, as a second host does), each with its own managed Mosquitto. N devices
get a certificate through A's API and hold a real mTLS MQTT session on B's broker
(paho-mqtt, reconnecting off). Then, one device at a time, its certificate is revoked on
A and the time is taken from A's answer request to the moment B's broker ends that
session: the change feed's NOTIFY reaches B, B's broker sync kicks the client.
Target (issue 19): p99 of 20 within 1 s. Without PostgreSQL there is nothing to share
between hosts and the row says so.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from cryptography.hazmat.primitives import serialization

from benchmarks.detection import percentile_ms
from benchmarks.harness import Result, RunConfig, Target
from benchmarks.server import RunningServer, running_server
from iotiam.broker.layout import mosquitto_binary
from iotiam.testing import free_ports, make_csr, make_key
from iotiam.testing.mqtt import MqttDevice

NAME = "replica-revocation"
TITLE = "revocation on replica A -> session dropped by replica B's broker (PostgreSQL)"
TARGET_MS = 1000.0
#: how long B's broker sync may take to admit a device A just enrolled
ADMIT_SECONDS = 10.0
DROP_SECONDS = 5.0


def run(config: RunConfig) -> list[Result]:
    """Two replicas with brokers; enrol on A, connect to B, revoke on A one by one."""
    if not config.database_url:
        return [Result(name=f"{NAME}: p99", value=0, unit="ms",
                       error="needs --database-url (replicas share PostgreSQL)")]
    if mosquitto_binary() is None:
        return [Result(name=f"{NAME}: p99", value=0, unit="ms",
                       error="mosquitto not installed")]
    count = config.size(20, 5)
    with ExitStack() as stack:
        a = stack.enter_context(running_server(config, "replica-a",
                                               broker_ports=_ports()))
        b = stack.enter_context(running_server(config, "replica-b", broker_ports=_ports(),
                                               replica_of=a))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        chain = scratch / "chain.pem"
        chain.write_text(httpx.get(f"{a.http_url}/ca/chain.pem", timeout=10).text)
        with httpx.Client(base_url=a.api_url, verify=a.tls_context(),
                          headers=a.admin_headers(), timeout=30) as api:
            sessions = [_enrolled_on_b(api, b, chain, scratch, f"rr-{i:03d}")
                        for i in range(count)]
            for _, device in sessions:
                stack.callback(device.close)
            took = [_revoke_and_wait(api, serial, device) for serial, device in sessions]
    dropped = [t for t in took if t is not None]
    notes = (f"{len(dropped)} of {count} sessions dropped within {DROP_SECONDS:.0f} s; "
             f"p50 {percentile_ms(dropped, 50):.0f} ms, max "
             f"{max(dropped, default=float('nan')) * 1000:.0f} ms; each replica its own "
             "managed Mosquitto, B follows A through LISTEN/NOTIFY")
    if len(dropped) < count:
        return [Result(name=f"{NAME}: p99 of {count}", value=float("inf"), unit="ms",
                       target=Target(TARGET_MS, at_least=False), notes=notes)]
    return [Result(name=f"{NAME}: p99 of {count}", value=percentile_ms(dropped, 99),
                   unit="ms", target=Target(TARGET_MS, at_least=False), notes=notes)]


def _ports() -> tuple[int, int, int]:
    mtls, psk, admin = free_ports(3)
    return mtls, psk, admin


def _enrolled_on_b(api: httpx.Client, b: RunningServer, chain: Path, scratch: Path,
                   device_id: str) -> tuple[str, MqttDevice]:
    """Register and certify ``device_id`` on A; its live session on B's broker."""
    assert b.broker_ports is not None
    registered = api.post("/v1/devices", json={"id": device_id, "type": "sensor"})
    registered.raise_for_status()
    key = make_key()
    issued = api.post("/v1/certificates",
                      json={"device": device_id, "csr": make_csr(device_id, key=key).decode()})
    issued.raise_for_status()
    body = issued.json()
    cert, key_file = scratch / f"{device_id}.pem", scratch / f"{device_id}.key"
    cert.write_text(body["pem"])
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    deadline = time.monotonic() + ADMIT_SECONDS
    while True:
        device = MqttDevice(device_id).use_certificate(chain, cert, key_file)
        if device.connect(b.broker_ports[0]):
            device.client.reconnect_delay_set(60, 120)
            return str(body["serial"]), device
        device.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"B's broker did not admit {device_id}: {device.connect_result}")
        time.sleep(0.1)


def _revoke_and_wait(api: httpx.Client, serial: str, device: MqttDevice) -> float | None:
    """Seconds from the revocation request on A to B's broker ending the session."""
    started = time.monotonic()
    api.post(f"/v1/certificates/{serial}/revoke",
             json={"reason": "keyCompromise"}).raise_for_status()
    if not device.disconnected.wait(DROP_SECONDS) or device.disconnected_at is None:
        return None
    return device.disconnected_at - started
