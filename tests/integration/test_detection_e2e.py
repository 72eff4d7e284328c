"""Detection end to end: a real broker's events -> a finding -> the playbook acts.

``iotiam serve`` runs its managed Mosquitto; a paho device probes other devices' topics;
the broker refuses and logs it; the event source feeds the pipeline; in enforce mode the
device is quarantined (its live session loses its rights) and lifting the quarantine
gives them back; in monitor mode only a signed webhook alert goes out.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conftest import BACKENDS
from iotiam.response.alerts import SIGNATURE_HEADER, verify_webhook_signature
from iotiam.testing import require_binary
from iotiam.testing.mqtt import MqttDevice

from .conftest import serve_live
from .live_server import Server
from .test_dataplane_e2e import connect, enroll

pytestmark = pytest.mark.integration

FINDING_SECONDS = 15.0
SYNC_SECONDS = 10.0  # generous: the suite shares two cores


class WebhookReceiver:
    """A local HTTP endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        received: list[tuple[bytes, str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((body, self.headers.get(SIGNATURE_HEADER, "")))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/hook"

    def alerts_for(self, device_id: str) -> list[tuple[dict[str, Any], bytes, str]]:
        return [(json.loads(body), body, signature) for body, signature in self.received
                if json.loads(body).get("device_id") == device_id]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.http.shutdown()


@pytest.fixture(scope="module", params=BACKENDS)
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          receiver: WebhookReceiver) -> Iterator[Server]:
    require_binary("mosquitto")
    env = {"IOTIAM_ALERT_WEBHOOK_URL": receiver.url,
           # every device is judged from its first event: the test has no hour to learn
           "IOTIAM_DETECTION_LEARNING_SECONDS": "0"}
    yield from serve_live(request.param, tmp_path_factory.mktemp(f"detect-{request.param}"),
                          env, broker=True)


def probe(device: MqttDevice, victims: int, prefix: str) -> None:
    """Walk other devices' namespaces: each attempt is refused by the broker."""
    for i in range(victims):
        device.subscribe(f"devices/{prefix}-{i}/#", timeout=1.0)
        device.publish(f"devices/{prefix}-{i}/cmd", b"open")


def wait_for_finding(server: Server, device_id: str, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + FINDING_SECONDS
    with server.api() as api:
        while time.monotonic() < deadline:
            items = api.get("/v1/findings", params={"device": device_id, "type": kind}
                            ).json()["items"]
            if items:
                return dict(items[0])
            time.sleep(0.2)
    raise AssertionError(f"no finding for {device_id} within {FINDING_SECONDS} s; server log:"
                         f"\n{server.log_text()[-3000:]}")


def own_namespace_works(device: MqttDevice, device_id: str, *, expect: bool) -> bool:
    """Poll until publishing in its own namespace is delivered (or not), as expected."""
    deadline = time.monotonic() + SYNC_SECONDS
    while time.monotonic() < deadline:
        device.publish(f"devices/{device_id}/telemetry", b"t")
        delivered = device.received(timeout=0.3) == (f"devices/{device_id}/telemetry", b"t")
        if delivered is expect:
            return delivered
        while device.received(timeout=0.05) is not None:
            pass
    return not expect


def test_detect_ok_enforce_quarantines_live_session_and_lift_restores(plane: Server) -> None:
    with plane.api() as api:
        assert api.put("/v1/detection/modes/sensor", json={"mode": "enforce"}).status_code \
            == 200
        # probing other devices at all is worth a quarantine on this fleet
        playbook = {"rules": [
            {"finding_type": "*", "min_severity": "low", "actions": ["alert"]},
            {"finding_type": "topic_probing", "min_severity": "medium",
             "actions": ["quarantine"]}]}
        assert api.put("/v1/detection/playbook", json=playbook).status_code == 200
    cert, key, _ = enroll(plane, "det-e")
    device = connect(plane, cert, key)
    try:
        assert device.connect_result == "Success"
        assert own_namespace_works(device, "det-e", expect=True)
        started = time.monotonic()
        for _ in range(100):  # a flood, then the probing
            device.publish("devices/det-e/telemetry", b"f" * 64)
        probe(device, 8, "victim")
        finding = wait_for_finding(plane, "det-e", "topic_probing")
        assert time.monotonic() - started < FINDING_SECONDS
        assert finding["type"] == "topic_probing" and finding["mode"] == "enforce"
        assert not own_namespace_works(device, "det-e", expect=False), \
            "the quarantined device's live session kept its rights"
        with plane.api() as api:
            assert api.get("/v1/devices/det-e").json()["state"] == "quarantined"
            shown = api.get(f"/v1/findings/{finding['id']}").json()
            assert "quarantine" in shown["actions"]
            trust = api.get("/v1/devices/det-e/trust").json()
            assert trust["score"] < 100
            lifted = api.post("/v1/devices/det-e/quarantine/lift")
            assert lifted.status_code == 200, lifted.text
            assert api.get("/v1/devices/det-e").json()["state"] == "active"
        assert own_namespace_works(device, "det-e", expect=True), \
            "lifting the quarantine did not restore the device's rights"
        assert not device.subscribe("devices/victim-0/#")  # and nothing more than before
    finally:
        device.close()


def test_detect_ok_monitor_only_alerts_with_a_signed_webhook(
        plane: Server, receiver: WebhookReceiver) -> None:
    with plane.api() as api:
        assert api.put("/v1/detection/modes/gateway", json={"mode": "monitor"}).status_code \
            == 200
        plane.register("det-m", device_type="gateway")
    cert, key, _ = enroll(plane, "det-m")
    device = connect(plane, cert, key)
    try:
        probe(device, 12, "target")
        finding = wait_for_finding(plane, "det-m", "topic_probing")
        assert finding["mode"] == "monitor" and finding["actions"] == ["alert"]
        deadline = time.monotonic() + SYNC_SECONDS
        while not receiver.alerts_for("det-m") and time.monotonic() < deadline:
            time.sleep(0.1)
        # the receiver outlives one backend's server: pick this finding's alert
        while not [a for a in receiver.alerts_for("det-m")
                   if a[0]["finding_id"] == finding["id"]] and time.monotonic() < deadline:
            time.sleep(0.1)
        ((alert, body, signature), *_) = [a for a in receiver.alerts_for("det-m")
                                           if a[0]["finding_id"] == finding["id"]]
        secret = bytes.fromhex((plane.data_dir / "secrets" / "alert-webhook.key")
                               .read_text().strip())
        assert verify_webhook_signature(secret, body, signature)
        assert not verify_webhook_signature(b"x" * 32, body, signature)
        assert not verify_webhook_signature(secret, body + b" ", signature)
        assert alert["finding_id"] == finding["id"] and alert["type"] == "topic_probing"
        with plane.api() as api:
            assert api.get("/v1/devices/det-m").json()["state"] == "active"
        assert own_namespace_works(device, "det-m", expect=True)
    finally:
        device.close()


def test_detect_ok_trust_score_drop_takes_rights_on_the_broker(plane: Server) -> None:
    policy = ("name: trusted-plant\nversion: 1\nstatements:\n  - effect: allow\n"
              "    actions: [mqtt:publish, mqtt:subscribe, mqtt:receive]\n"
              "    topics: [\"plant/${device.id}/#\"]\n"
              "    conditions:\n      min_trust_score: 90\n")
    with plane.api() as api:
        assert api.put("/v1/policies", content=policy,
                       headers={"Content-Type": "application/yaml"}).status_code == 201
        plane.register("det-t", device_type="controller")
        assert api.post("/v1/policies/trusted-plant/attachments",
                        json={"kind": "device", "id": "det-t"}).status_code == 201
        # enforce, but this playbook only alerts: the score alone must take the rights
        assert api.put("/v1/detection/modes/controller", json={"mode": "enforce"}
                       ).status_code == 200
    cert, key, _ = enroll(plane, "det-t")
    device = connect(plane, cert, key)

    def plant_works(expect: bool) -> bool:
        deadline = time.monotonic() + SYNC_SECONDS
        while time.monotonic() < deadline:
            device.subscribe("plant/det-t/#", timeout=1.0)
            device.publish("plant/det-t/valve", b"v")
            works = device.received(timeout=0.3) == ("plant/det-t/valve", b"v")
            if works is expect:
                return works
        return not expect

    try:
        with plane.api() as api:
            trust = api.get("/v1/devices/det-t/trust").json()
            assert trust["score"] >= 90, trust
        if not plant_works(True):
            with plane.api() as api:
                raise AssertionError((api.get("/v1/findings", params={"device": "det-t"}).json(),
                                      api.get("/v1/devices/det-t/trust").json()))
        now = time.time()
        burst = [{"kind": "auth_failure", "ts": now + i / 10, "device_id": "det-t",
                  "source_ip": "198.51.100.9"} for i in range(40)]
        with plane.api() as api:
            playbook = api.get("/v1/detection/playbook").json()
            assert api.put("/v1/detection/playbook", json={"rules": [
                {"finding_type": "*", "min_severity": "low", "actions": ["alert"]}]}
            ).status_code == 200
            try:
                assert api.post("/v1/events", json=burst).json()["findings"] >= 1
            finally:
                api.put("/v1/detection/playbook", json=playbook)
            finding = api.get("/v1/findings", params={"device": "det-t"}).json()["items"][0]
            assert api.get("/v1/devices/det-t/trust").json()["score"] < 90
            assert api.get("/v1/devices/det-t").json()["state"] == "active"
        assert not plant_works(False), "the broker kept rights that need a higher score"
        assert own_namespace_works(device, "det-t", expect=True)  # the rest is untouched
        with plane.api() as api:
            assert api.post(f"/v1/findings/{finding['id']}/resolve",
                            json={"false_positive": True}).status_code == 200
        assert plant_works(True), "the restored score did not give the rights back"
    finally:
        device.close()


def refused_at_tls(port: int) -> None:
    """One connection to the broker's mTLS listener without a client certificate: the
    broker refuses it and logs only the address (no client id: TLS ends first)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                tls.recv(1)  # TLS 1.3: the refusal arrives after the client's handshake
        except (ssl.SSLError, OSError):
            pass


def test_detect_ok_unknown_clients_at_the_managed_broker_are_found_by_default(
        plane: Server) -> None:
    """Issue 15, class 5: no mode was set, the events name no device, and the broker's
    own auth failures carry only the address; monitor is the default for them."""
    assert plane.broker_ports is not None
    with plane.api() as api:
        assert api.get("/v1/detection/modes").json()["unknown"] == "monitor"
    for _ in range(10):
        refused_at_tls(plane.broker_ports[0])
    deadline = time.monotonic() + FINDING_SECONDS
    with plane.api() as api:
        while time.monotonic() < deadline:
            items = [f for f in api.get("/v1/findings",
                                        params={"type": "auth_failure_burst"}).json()["items"]
                     if f["device_id"] is None]
            if items:
                break
            time.sleep(0.2)
    assert items, f"no finding for the refused connections; log:\n{plane.log_text()[-3000:]}"
    assert items[0]["evidence"]["source_ip"] == "127.0.0.1"
    assert items[0]["mode"] == "monitor"
