"""``iotiam serve`` with its managed Mosquitto: policy on the wire, trust taken away live.

Everything is real: the server process, the Mosquitto it starts and configures, the
certificates it issues, paho-mqtt devices, and the REST calls an operator makes.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from conftest import BACKENDS
from iotiam.testing import make_csr, make_key, require_binary
from iotiam.testing.mqtt import MqttDevice

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration

SYNC_SECONDS = 5.0  # generous: the loop polls every 100 ms


@pytest.fixture(scope="module", params=BACKENDS)
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Server]:
    require_binary("mosquitto")
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"plane-{request.param}"),
                          broker=True)


def enroll(server: Server, device_id: str) -> tuple[Path, Path, str]:
    """Register ``device_id`` (if new) and get it a certificate; files and serial."""
    with server.api() as api:
        if api.get(f"/v1/devices/{device_id}").status_code == 404:
            server.register(device_id)
        key = make_key()
        answer = api.post("/v1/certificates", json={
            "device": device_id, "csr": make_csr(device_id, key=key).decode()})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    cert = server.work_dir / f"{device_id}-{body['serial']}.pem"
    key_file = server.work_dir / f"{device_id}-{body['serial']}.key"
    cert.write_text(body["pem"])
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_file, body["serial"]


def connect(server: Server, cert: Path, key: Path, *, wait: float = SYNC_SECONDS
            ) -> MqttDevice:
    """Connect over mTLS, retrying while the sync catches up with a new device."""
    assert server.broker_ports is not None
    deadline = time.monotonic() + wait
    while True:
        device = MqttDevice(f"{cert.stem}-{time.monotonic_ns()}").use_certificate(
            server.chain_pem, cert, key)
        if device.connect(server.broker_ports[0]) and device.subscribe(
                f"devices/{cert.stem.rsplit('-', 1)[0]}/#"):
            return device
        device.close()
        if time.monotonic() > deadline:
            return device
        time.sleep(0.2)


def test_plane_ok_policy_enforced_by_broker(plane: Server) -> None:
    cert, key, _ = enroll(plane, "e2e-a")
    other_cert, other_key, _ = enroll(plane, "e2e-b")
    device = connect(plane, cert, key)
    other = connect(plane, other_cert, other_key)
    try:
        assert device.connect_result == "Success"
        assert not device.subscribe("devices/e2e-b/#")  # another device's namespace
        assert not device.subscribe("#")
        device.publish("devices/e2e-a/telemetry", b"21.5")
        assert device.received(timeout=2) == ("devices/e2e-a/telemetry", b"21.5")
        device.publish("devices/e2e-b/cmd", b"open")  # refused by the broker: not delivered
        assert other.received(timeout=0.5) is None
    finally:
        device.close()
        other.close()


def test_plane_ok_revocation_drops_session_and_refuses(plane: Server) -> None:
    cert, key, serial = enroll(plane, "e2e-r")
    device = connect(plane, cert, key)
    assert device.connect_result == "Success"
    device.client.reconnect_delay_set(30, 60)
    with plane.api() as api:
        assert api.post(f"/v1/certificates/{serial}/revoke",
                        json={"reason": "keyCompromise"}).status_code == 200
    assert device.disconnected.wait(SYNC_SECONDS), "the live session survived revocation"
    device.close()
    again = MqttDevice("e2e-r-again").use_certificate(plane.chain_pem, cert, key)
    assert not again.connect(plane.broker_ports[0] if plane.broker_ports else 0)
    again.close()
    # the device itself is still trusted: a new certificate gets it back in
    fresh_cert, fresh_key, _ = enroll(plane, "e2e-r")
    fresh = connect(plane, fresh_cert, fresh_key)
    assert fresh.connect_result == "Success"
    fresh.close()


def test_plane_ok_quarantine_then_lift_restores(plane: Server) -> None:
    cert, key, _ = enroll(plane, "e2e-q")
    device = connect(plane, cert, key)
    try:
        with plane.api() as api:
            assert api.post("/v1/devices/e2e-q/state",
                            json={"state": "quarantined"}).status_code == 200
        deadline = time.monotonic() + SYNC_SECONDS
        delivered: tuple[str, bytes] | None = ("", b"")
        while delivered is not None and time.monotonic() < deadline:
            device.publish("devices/e2e-q/telemetry", b"q")
            delivered = device.received(timeout=0.3)
        assert delivered is None, "a quarantined device still used its namespace"
        assert device.subscribe("quarantine/e2e-q/#")
        device.publish("quarantine/e2e-q/report", b"r")
        assert device.received(timeout=2) == ("quarantine/e2e-q/report", b"r")
        with plane.api() as api:
            assert api.post("/v1/devices/e2e-q/state",
                            json={"state": "active"}).status_code == 200
        deadline = time.monotonic() + SYNC_SECONDS
        while time.monotonic() < deadline:
            device.publish("devices/e2e-q/telemetry", b"back")
            if device.received(timeout=0.3) == ("devices/e2e-q/telemetry", b"back"):
                break
        else:
            pytest.fail("lifting the quarantine did not restore the namespace")
        assert not device.subscribe("devices/e2e-other/#")  # and nothing more than before
    finally:
        device.close()


def test_plane_ok_broker_restart_resyncs(plane: Server) -> None:
    cert, key, _ = enroll(plane, "e2e-restart")
    pid_file = Path(f"/proc/{plane.process.pid if plane.process else 0}/task")
    assert pid_file.exists()
    broker_pid = _broker_pid(plane)
    os.kill(broker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        device = connect(plane, cert, key, wait=1)
        if device.connect_result == "Success":
            device.close()
            break
        device.close()
    else:
        pytest.fail("the broker did not come back with the device's rights")
    assert _broker_pid(plane) != broker_pid


def _broker_pid(server: Server) -> int:
    assert server.process is not None
    # a restarted broker is the child of the thread that restarted it
    for children in Path(f"/proc/{server.process.pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            if "mosquitto" in Path(f"/proc/{pid}/cmdline").read_text():
                return int(pid)
    raise AssertionError("no mosquitto child of iotiam serve")


def test_plane_ok_kill_9_leaves_no_broker(plane: Server) -> None:
    assert plane.process is not None
    broker_pid = _broker_pid(plane)
    os.kill(plane.process.pid, signal.SIGKILL)  # iotiam only, not its process group
    plane.process.wait(timeout=10)
    plane.process = None
    deadline = time.monotonic() + 5
    while Path(f"/proc/{broker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{broker_pid}").exists(), "the broker outlived iotiam"
    plane.start()  # the broker's ports are free: it starts again with the server
    cert, key, _ = enroll(plane, "e2e-after-crash")
    device = connect(plane, cert, key)
    assert device.connect_result == "Success"
    device.close()
