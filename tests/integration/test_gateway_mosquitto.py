"""A gateway on the real data plane: ``iotiam serve`` with its managed Mosquitto (dynamic
security, or iotiam's plugin), the gateway's certificate, its child's PSK delivered
sealed over mTLS and opened with the gateway's key, publishes for its child allowed and
for another device refused by the broker, and the gateway's revocation dropping its
session."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import BACKENDS
from iotiam.gateways.sealed_keys import context_of, open_sealed
from iotiam.testing import make_key, require_binary
from iotiam.testing.mqtt import MqttDevice

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration

SYNC_SECONDS = 5.0


#: the managed broker's dynsec layout on each backend, and iotiam's plugin asking the
#: decision point (docs/broker-plugin.md) on SQLite
PLANES = [*((backend, "dynsec") for backend in BACKENDS), ("sqlite", "plugin")]


@pytest.fixture(scope="module", params=PLANES, ids=lambda param: "-".join(param))
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Server]:
    require_binary("mosquitto")
    backend, auth = request.param
    yield from serve_live(backend, tmp_path_factory.mktemp(f"gw-{backend}-{auth}"),
                          {"IOTIAM_BROKER_AUTH": auth}, broker=True)


def connect(server: Server, device_id: str, cert: Path, key: Path) -> MqttDevice:
    """Connect over mTLS, retrying while the sync catches up with a new device."""
    assert server.broker_ports is not None
    deadline = time.monotonic() + SYNC_SECONDS
    while True:
        device = MqttDevice(f"{device_id}-{time.monotonic_ns()}").use_certificate(
            server.chain_pem, cert, key)
        if device.connect(server.broker_ports[0]) and device.subscribe(
                f"devices/{device_id}/#"):
            return device
        device.close()
        if time.monotonic() > deadline:
            raise AssertionError(f"{device_id} could not connect and subscribe")
        time.sleep(0.2)


def eventually(check: object, seconds: float = SYNC_SECONDS) -> bool:
    """Poll ``check()`` until it is true or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def reconnects(server: Server, cert: Path, key: Path) -> bool:
    """Whether a new session with this certificate is accepted."""
    assert server.broker_ports is not None
    again = MqttDevice(f"again-{time.monotonic_ns()}").use_certificate(server.chain_pem,
                                                                        cert, key)
    try:
        return again.connect(server.broker_ports[0])
    finally:
        again.close()


def gateway_tls(server: Server, cert: Path, key: Path) -> ssl.SSLContext:
    context = server.tls_context()
    context.load_cert_chain(str(cert), str(key))
    return context


def test_gateway_speaks_for_its_child_only_until_revoked(plane: Server) -> None:
    gateway_key = make_key()
    assert isinstance(gateway_key, ec.EllipticCurvePrivateKey)
    with plane.api() as api:
        assert api.post("/v1/device-types", json={
            "name": "tag", "device_class": "constrained-sensor"}).status_code == 201
        assert api.post("/v1/devices", json={"id": "gw-1", "type": "gateway"}
                        ).status_code == 201
        assert api.post("/v1/devices", json={"id": "bystander", "type": "sensor"}
                        ).status_code == 201
    gw_cert, gw_key, gw_serial = plane.certify("gw-1", gateway_key)
    by_key = make_key()
    assert isinstance(by_key, ec.EllipticCurvePrivateKey)
    by_cert, by_key_file, _ = plane.certify("bystander", by_key)
    # the child is registered after its gateway is live: the gateway's rights grow
    # without a reconnect
    gateway = connect(plane, "gw-1", gw_cert, gw_key)
    bystander = connect(plane, "bystander", by_cert, by_key_file)
    try:
        with plane.api() as api:
            added = api.post("/v1/devices", json={"id": "tag-1", "type": "tag",
                                                  "via": "gw-1"})
            assert added.status_code == 201, added.text
            psk_file = api.get("/v1/psk-file").text

        # the child's key, delivered over mTLS and opened with the gateway's key only
        with httpx.Client(base_url=plane.api_url, timeout=30,
                          verify=gateway_tls(plane, gw_cert, gw_key)) as http:
            answer = http.get("/v1/gateways/self/children")
        assert answer.status_code == 200, answer.text
        (child,) = answer.json()["children"]
        key = open_sealed(gateway_key, base64.b64decode(child["sealed_key"]),
                          context_of("gw-1", "tag-1", child["psk_id"]))
        assert f"tag-1:{key.hex()}" in psk_file.splitlines()

        # on the broker: the child's topics, subscribed and published by its gateway
        assert eventually(lambda: gateway.subscribe("devices/tag-1/#")), \
            "the gateway never got its child's topics"
        gateway.publish("devices/tag-1/telemetry", b"21.5")
        assert gateway.received(timeout=2) == ("devices/tag-1/telemetry", b"21.5")
        # nothing more: another device's topics stay closed
        assert not gateway.subscribe("devices/bystander/#")
        gateway.publish("devices/bystander/cmd", b"open")
        assert bystander.received(timeout=0.5) is None

        # a child taken out of service leaves its gateway's rights, without a kick (G11)
        with plane.api() as api:
            assert api.post("/v1/devices/tag-1/state", json={"state": "suspended"}
                            ).status_code == 200
        assert eventually(lambda: not gateway.subscribe("devices/tag-1/#")), \
            "the gateway kept a suspended child's topics"
        assert not gateway.disconnected.is_set()
        gateway.publish("devices/gw-1/telemetry", b"still here")
        assert gateway.received(timeout=2) == ("devices/gw-1/telemetry", b"still here")

        # revoked: its session drops, it cannot come back, and it speaks for nobody
        gateway.client.reconnect_delay_set(30, 60)
        with plane.api() as api:
            assert api.post(f"/v1/certificates/{gw_serial}/revoke",
                            json={"reason": "keyCompromise"}).status_code == 200
        assert gateway.disconnected.wait(SYNC_SECONDS), "the gateway's session survived"
        # the kick is at once; the reconnect is refused at TLS once the new CRL is
        # installed (SIGHUP), which may come a moment later on a loaded host
        assert eventually(lambda: not reconnects(plane, gw_cert, gw_key)), \
            "the revoked gateway could still connect"
        with httpx.Client(base_url=plane.api_url, timeout=30,
                          verify=gateway_tls(plane, gw_cert, gw_key)) as http:
            refused = http.post("/v1/gateways/self/relay", json={
                "child": "tag-1", "action": "mqtt:publish",
                "resource": "devices/tag-1/telemetry"})
        assert refused.status_code == 401, refused.text
    finally:
        gateway.close()
        bystander.close()
