"""``iotiam serve`` with its managed Mosquitto: policy on the wire, trust taken away live.

Everything is real: the server process, the Mosquitto it starts and configures, the
certificates it issues, paho-mqtt devices, and the REST calls an operator makes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from conftest import BACKENDS
from iotiam.testing import require_binary
from iotiam.testing.mqtt import MqttDevice

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration

SYNC_SECONDS = 5.0  # generous: the loop polls every 100 ms
#: how the managed broker authorizes: its dynsec plugin, or iotiam's own plugin asking
#: the decision point (docs/broker-plugin.md); every test here runs on both, the plugin
#: on SQLite only (its side of iotiam is the decision point, whose reads run on both
#: backends in test_broker_plugin.py), to keep the suite's time
PLANES = [*((backend, "dynsec") for backend in BACKENDS), ("sqlite", "plugin")]


@pytest.fixture(scope="module", params=PLANES,
                ids=lambda param: "-".join(param))
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Server]:
    require_binary("mosquitto")
    backend, auth = request.param
    yield from serve_live(backend, tmp_path_factory.mktemp(f"plane-{backend}-{auth}"),
                          {"IOTIAM_BROKER_AUTH": auth}, broker=True)


def enroll(server: Server, device_id: str) -> tuple[Path, Path, str]:
    """Register ``device_id`` (if new) and get it a certificate; files and serial."""
    with server.api() as api:
        if api.get(f"/v1/devices/{device_id}").status_code == 404:
            server.register(device_id)
    return server.certify(device_id)


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


def _psk_client(tool: str, plane: Server, identity: str, key_hex: str, *args: str
                ) -> subprocess.CompletedProcess[str]:
    assert plane.broker_ports is not None
    return subprocess.run(
        [require_binary(tool), "-h", "127.0.0.1", "-p", str(plane.broker_ports[1]),
         "--psk", key_hex, "--psk-identity", identity, *args],
        capture_output=True, text=True, timeout=20, check=False)


def _psk_accepted(plane: Server, identity: str, key_hex: str) -> bool:
    """Whether the PSK listener lets ``identity`` in and subscribe to its namespace."""
    own = _psk_client("mosquitto_sub", plane, identity, key_hex, "-t",
                      f"devices/{identity}/#", "-C", "1", "-W", "1", "-q", "1")
    return ("Connection Refused" not in own.stderr and "TLS" not in own.stderr
            and "denied" not in own.stderr)


def _psk_settles(plane: Server, identity: str, key_hex: str, wanted: bool) -> bool:
    """``_psk_accepted`` once a sync pass had time to install the PSK file."""
    deadline = time.monotonic() + SYNC_SECONDS
    while True:
        accepted = _psk_accepted(plane, identity, key_hex)
        if accepted is wanted or time.monotonic() > deadline:
            return accepted
        time.sleep(0.3)


def test_plane_ok_psk_device_on_the_psk_listener(plane: Server) -> None:
    plane.register("e2e-psk")
    with plane.api() as api:
        answer = api.post("/v1/devices/e2e-psk/psk", json={})
    assert answer.status_code == 201, answer.text
    key_hex = answer.json()["key_hex"]
    # pending: its PSK opens nothing (docs/lifecycle.md), however long we wait
    assert _psk_settles(plane, "e2e-psk", key_hex, True) is False, "a pending device got in"
    with plane.api() as api:
        assert api.post("/v1/devices/e2e-psk/state",
                        json={"state": "active"}).status_code == 200
    # the PSK file is installed (and the broker HUPed) within a sync pass
    assert _psk_settles(plane, "e2e-psk", key_hex, True), "the PSK was not accepted"
    # its own namespace works end to end over PSK ...
    assert plane.broker_ports is not None
    listener = subprocess.Popen(
        [require_binary("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(plane.broker_ports[1]),
         "--psk", key_hex, "--psk-identity", "e2e-psk", "-t", "devices/e2e-psk/#", "-C", "1",
         "-W", "10", "-q", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sent = _psk_client("mosquitto_pub", plane, "e2e-psk", key_hex, "-t", "devices/e2e-psk/t",
                       "-m", "hello", "-q", "1")
    assert sent.returncode == 0, sent.stderr
    out, err = listener.communicate(timeout=15)
    assert out.strip() == "hello", err
    # ... and nothing else: another device's namespace is refused by the broker
    other = _psk_client("mosquitto_sub", plane, "e2e-psk", key_hex, "-t", "devices/e2e-q/#",
                        "-C", "1", "-W", "2")
    assert "All subscription requests were denied" in other.stderr
    wrong = _psk_client("mosquitto_pub", plane, "e2e-psk", "00" * 32, "-t",
                        "devices/e2e-psk/t", "-m", "x")
    assert wrong.returncode != 0, "a wrong key got in"
    # revoked: its last credential gone, the broker refuses it
    with plane.api() as api:
        assert api.post("/v1/devices/e2e-psk/psk/revoke",
                        json={"reason": "keyCompromise"}).status_code == 200
        decision = api.post("/v1/decisions", json={
            "device": "e2e-psk", "action": "mqtt:publish", "resource": "devices/e2e-psk/t"})
    assert decision.json()["decision"] == "deny"
    assert _psk_settles(plane, "e2e-psk", key_hex, False) is False, "a revoked PSK got in"


def test_plane_fail_pending_device_with_a_live_certificate(plane: Server) -> None:
    """No lifecycle edge leads back to pending with a live certificate; should a device be
    pending anyway (a restored backup, a hand edit), the broker still keeps it out."""
    cert, key, _ = enroll(plane, "e2e-pending")
    device = connect(plane, cert, key)
    assert device.connect_result == "Success"
    device.client.reconnect_delay_set(30, 60)
    plane.sql("UPDATE devices SET state = 'pending', updated_at = :at WHERE id = 'e2e-pending'",
              at=datetime.now(UTC).replace(tzinfo=None))
    assert device.disconnected.wait(SYNC_SECONDS), "a pending device kept its session"
    device.close()
    again = connect(plane, cert, key, wait=1)
    assert not again.subscribe("devices/e2e-pending/#"), "a pending device got rights"
    again.close()
    with plane.api() as api:
        decision = api.post("/v1/decisions", json={
            "device": "e2e-pending", "action": "mqtt:connect", "resource": "e2e-pending"})
    assert decision.json()["decision"] == "deny"


def test_plane_ok_revoked_only_certificate_denied_everywhere(plane: Server) -> None:
    """G3: with its only certificate revoked, the PDP denies the device and the broker
    holds no client for it (no rights even for a session that slipped through)."""
    cert, key, serial = enroll(plane, "e2e-g3")
    device = connect(plane, cert, key)
    assert device.connect_result == "Success"
    device.close()
    with plane.api() as api:
        assert api.post(f"/v1/certificates/{serial}/revoke",
                        json={"reason": "keyCompromise"}).status_code == 200
        decision = api.post("/v1/decisions", json={
            "device": "e2e-g3", "action": "mqtt:publish", "resource": "devices/e2e-g3/t"})
    assert decision.json()["decision"] == "deny"
    assert "no valid credential" in decision.json()["reason"]
    deadline = time.monotonic() + SYNC_SECONDS
    while True:  # within a sync pass: refused at TLS (CRL) or left with no rights
        again = MqttDevice(f"e2e-g3-{time.monotonic_ns()}").use_certificate(
            plane.chain_pem, cert, key)
        kept_out = not again.connect(plane.broker_ports[0] if plane.broker_ports else 0) \
            or not again.subscribe("devices/e2e-g3/#", timeout=1)
        again.close()
        if kept_out:
            break
        assert time.monotonic() < deadline, "a device with no valid credential kept rights"
        time.sleep(0.2)
