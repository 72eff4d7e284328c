"""``iotiam serve --broker-auth plugin``: Mosquitto asks iotiam's decision point.

Everything is real: the server, the Mosquitto it starts with iotiam's C plugin (built
from the repository's source), certificates it issues, paho-mqtt devices. What the
dynsec path does not show is checked here: a revocation drops the session within a
second, a policy change applies to the very next message with nothing rewritten and
nobody dropped (the plugin's cache is emptied by iotiam's push, not by expiry), and a
hung iotiam makes the broker deny (fail closed) until it answers again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BACKENDS
from iotiam.broker.decision_socket import ALLOW_TTL_MS
from iotiam.testing import require_binary
from iotiam.testing.mqtt import MqttDevice

from .conftest import serve_live
from .live_server import Server
from .test_dataplane_e2e import connect, enroll

pytestmark = pytest.mark.integration

DENY_TOPIC_POLICY = ("name: no-secrets\nversion: 1\nstatements:\n  - effect: deny\n"
                     "    actions: [mqtt:publish]\n"
                     "    topics: [\"devices/${device.id}/secret/#\"]\n")


@pytest.fixture(scope="module", params=BACKENDS)
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Server]:
    require_binary("mosquitto")
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"plugin-{request.param}"),
                          {"IOTIAM_BROKER_AUTH": "plugin"}, broker=True)


def delivered(device: MqttDevice, topic: str, payload: bytes, timeout: float = 1.0) -> bool:
    """Whether a publish of the device came back to it (it is subscribed to its own
    namespace): both the publish and the delivery were allowed."""
    device.publish(topic, payload)
    return device.received(timeout=timeout) == (topic, payload)


def test_plugin_ok_broker_asks_iotiam_not_dynsec(plane: Server) -> None:
    broker_dir = plane.data_dir / "broker"
    config = (broker_dir / "mosquitto.conf").read_text()
    assert "iotiam_auth.so" in config and "plugin_opt_socket" in config
    cert, key, _ = enroll(plane, "plug-a")
    device = connect(plane, cert, key)
    try:
        assert device.connect_result == "Success"
        assert delivered(device, "devices/plug-a/telemetry", b"1")
        assert not device.subscribe("devices/plug-b/#")
        assert not device.subscribe("#")
    finally:
        device.close()
    # the fleet lives in iotiam: dynsec holds iotiam's own admin and nothing else
    assert "plug-a" not in (broker_dir / "dynamic-security.json").read_text()


def test_plugin_ok_revocation_drops_session_within_a_second(plane: Server) -> None:
    cert, key, serial = enroll(plane, "plug-r")
    device = connect(plane, cert, key)
    assert device.connect_result == "Success"
    device.client.reconnect_delay_set(30, 60)
    with plane.api() as api:
        assert api.post(f"/v1/certificates/{serial}/revoke",
                        json={"reason": "keyCompromise"}).status_code == 200
    answered = time.monotonic()
    assert device.disconnected.wait(5), "the live session survived revocation"
    assert device.disconnected_at is not None
    assert device.disconnected_at - answered <= 1.0
    device.close()
    again = MqttDevice("plug-r-again").use_certificate(plane.chain_pem, cert, key)
    assert plane.broker_ports is not None
    assert not again.connect(plane.broker_ports[0])
    again.close()


def test_plugin_ok_policy_change_applies_at_once_with_nothing_rewritten(plane: Server) -> None:
    cert, key, _ = enroll(plane, "plug-p")
    device = connect(plane, cert, key)
    dynsec = plane.data_dir / "broker" / "dynamic-security.json"
    try:
        assert delivered(device, "devices/plug-p/secret/pin", b"1")  # allowed, now cached
        before = (dynsec.read_bytes(), dynsec.stat().st_mtime_ns)
        with plane.api() as api:
            assert api.put("/v1/policies", content=DENY_TOPIC_POLICY,
                           headers={"Content-Type": "application/yaml"}).status_code == 201
            assert api.post("/v1/policies/no-secrets/attachments",
                            json={"kind": "org-unit", "id": "root"}).status_code == 201
        # well inside the answer's lifetime: only iotiam's push can have emptied the cache
        changed = time.monotonic()
        assert not delivered(device, "devices/plug-p/secret/pin", b"2", timeout=0.5)
        assert time.monotonic() - changed < ALLOW_TTL_MS / 1000
        assert delivered(device, "devices/plug-p/telemetry", b"3")  # the rest unchanged
        assert not device.disconnected.is_set()  # G11: nobody dropped for a policy change
        assert (dynsec.read_bytes(), dynsec.stat().st_mtime_ns) == before
        with plane.api() as api:
            assert api.delete("/v1/policies/no-secrets/attachments",
                              params={"kind": "org-unit", "id": "root"}).status_code == 204
        assert delivered(device, "devices/plug-p/secret/pin", b"4")
    finally:
        device.close()


def test_plugin_fail_closed_while_iotiam_does_not_answer(plane: Server) -> None:
    cert, key, _ = enroll(plane, "plug-h")
    device = connect(plane, cert, key)
    assert plane.process is not None
    pid = plane.process.pid
    try:
        assert delivered(device, "devices/plug-h/telemetry", b"1")
        os.kill(pid, signal.SIGSTOP)  # iotiam hangs; its broker runs on
        try:
            # a question no answer comes to: denied (and the link dropped with the cache)
            assert not delivered(device, "devices/plug-h/new", b"2", timeout=2.0)
            assert not delivered(device, "devices/plug-h/telemetry", b"3", timeout=2.0)
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while not delivered(device, "devices/plug-h/telemetry", b"4", timeout=0.5):
            assert time.monotonic() < deadline, "the broker did not recover with iotiam"
    finally:
        device.close()
    log = Path(plane.data_dir / "broker" / "mosquitto.log").read_text()
    assert "lost iotiam's decision point" in log
