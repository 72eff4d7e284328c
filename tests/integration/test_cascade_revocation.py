"""Revocation by set against ``iotiam serve`` and its managed Mosquitto: devices of one
manufacturer batch connected with their certificates lose their sessions, the others
stay; the dry run counts the live sessions; ``openssl ocsp`` says revoked
(docs/revocation.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotiam.testing import require_binary
from iotiam.testing.mqtt import MqttDevice, refused_within

from .conftest import serve_live
from .live_server import Server
from .relying_party import ocsp, ocsp_status
from .test_dataplane_e2e import connect, enroll

pytestmark = pytest.mark.integration

WHERE = "manufacturer=acme and batch=2026-07"
#: G3 says 1 s; a loaded 2-core host gets some slack before the test calls it a failure
DROP_SECONDS = 3.0
#: the broker's log reaches the session view within its poll (20 ms) and batching (0.1 s)
SESSIONS_SECONDS = 5.0

#: device id → (manufacturer, batch)
FLEET = {
    "cas-hit-1": ("acme", "2026-07"),
    "cas-hit-2": ("acme", "2026-07"),
    "cas-hit-3": ("acme", "2026-07"),
    "cas-keep-1": ("acme", "2026-08"),
    "cas-keep-2": ("globex", "2026-07"),
}


@pytest.fixture(scope="module", params=["dynsec", "plugin"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """``serve`` with its managed Mosquitto, authorizing by dynsec or by iotiam's plugin
    (docs/broker-plugin.md)."""
    require_binary("mosquitto")
    yield from serve_live("sqlite", tmp_path_factory.mktemp(f"cascade-{request.param}"),
                          {"IOTIAM_BROKER_AUTH": request.param}, broker=True)


def dry_run(server: Server) -> dict[str, object]:
    result = server.cli("revoke", "--where", WHERE, "--dry-run", "--json")
    report: dict[str, object] = json.loads(result.out)
    return report


def test_cascade_drops_the_batch_and_keeps_the_rest(server: Server, openssl: str) -> None:
    devices: dict[str, MqttDevice] = {}
    certs: dict[str, Path] = {}
    try:
        for device_id, (maker, batch) in FLEET.items():
            server.register(device_id, attributes={"manufacturer": maker, "batch": batch})
            cert, key, _ = enroll(server, device_id)
            certs[device_id] = cert
            devices[device_id] = connect(server, cert, key)
            assert devices[device_id].connect_result == "Success", device_id
            devices[device_id].client.reconnect_delay_set(30, 60)

        # the dry run counts what would go, live sessions included, and changes nothing
        deadline = time.monotonic() + SESSIONS_SECONDS
        while (report := dry_run(server))["sessions"] != 3:
            assert time.monotonic() < deadline, report
            time.sleep(0.1)
        assert (report["devices"], report["certificates"]) == (3, 3)
        assert not any(d.disconnected.is_set() for d in devices.values())

        done = server.cli("revoke", "--where", WHERE, "--reason", "keyCompromise")
        revoked_at = time.monotonic()
        assert done.out.startswith("revoked 3 device(s): 3 certificate(s)"), done.out

        for device_id in ("cas-hit-1", "cas-hit-2", "cas-hit-3"):
            left = DROP_SECONDS - (time.monotonic() - revoked_at)
            assert devices[device_id].disconnected.wait(max(left, 0.01)), \
                f"{device_id}'s session survived the set revocation"
        # the others keep their sessions and their rights
        for device_id in ("cas-keep-1", "cas-keep-2"):
            device = devices[device_id]
            assert not device.disconnected.is_set(), device_id
            device.publish(f"devices/{device_id}/telemetry", b"21.5")
            assert device.received(timeout=2) == (f"devices/{device_id}/telemetry", b"21.5")

        # stock OpenSSL, as a relying party, hears it from the OCSP responder
        assert ocsp_status(ocsp(openssl, server, certs["cas-hit-2"]), certs["cas-hit-2"]) \
            == "revoked"
        assert ocsp_status(ocsp(openssl, server, certs["cas-keep-1"]), certs["cas-keep-1"]) \
            == "good"
        # and the broker refuses the revoked certificate's reconnect at TLS once the
        # CRL job has installed the new CRL
        assert server.broker_ports is not None
        assert refused_within(10, "cas-hit-1-again", server.chain_pem, certs["cas-hit-1"],
                              certs["cas-hit-1"].with_suffix(".key"),
                              server.broker_ports[0]), "the broker still accepts a revoked cert"
    finally:
        for device in devices.values():
            device.close()


def test_cascade_bad_filter_is_one_line(server: Server) -> None:
    result = server.cli("revoke", "--where", "colour=red", check=False)
    assert result.rc != 0
    assert result.err.strip().count("\n") == 0 and "unknown field 'colour'" in result.err
