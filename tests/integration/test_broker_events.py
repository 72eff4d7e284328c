"""Broker events from a real Mosquitto: what devices do arrives as events, never payloads.

The managed broker's configuration at level ``messages``, synced by the real
``BrokerSync``; the event source follows its log file as the runtime starts it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotiam.bootstrap import build_services
from iotiam.broker.event_source import BrokerEventSource
from iotiam.broker.layout import BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.runtime import start_data_plane
from iotiam.broker.sync import BrokerSync
from iotiam.config import Settings
from iotiam.detection.models import Event, EventKind
from iotiam.installation import initialize
from iotiam.pki.authority import CaMaterial
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import generate_private_key
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.profiles import DEVICE
from iotiam.serving import broker_fleet
from iotiam.testing import free_ports, require
from iotiam.testing.mqtt import MqttDevice

from .collected import Collected
from .test_broker_dataplane import Fleet, ca, provisioned_broker

pytestmark = pytest.mark.integration

PEM = serialization.Encoding.PEM
SECRET = b"s3cret-payload-never-logged"


@dataclass
class Broker:
    files: BrokerFiles
    config: BrokerConfig
    fleet: Fleet
    process: ManagedMosquitto
    sync: BrokerSync
    collected: Collected
    source: BrokerEventSource
    work: Path

    def credentials(self, device_id: str, issuer: CaMaterial, serial: int) -> tuple[Path, Path]:
        key = generate_private_key(KeyAlgorithm.EC_P256)
        identity = LeafIdentity(subject=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        cert = LeafBuilder(issuer.signer, issuer.certificate, None).issue(
            key.public_key(), identity, DEVICE, serial, self.fleet.now - timedelta(minutes=5))
        cert_path, key_path = self.work / f"{serial}.pem", self.work / f"{serial}.key"
        cert_path.write_bytes(cert.public_bytes(PEM))
        key_path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    made = provisioned_broker(tmp_path)  # the default message log: what these tests read
    collected = Collected()
    # as the runtime does it: the source is following before the broker starts
    source = BrokerEventSource(made.files.log, collected, rotate=made.process.reload)
    source.start()
    made.process.start()
    try:
        yield Broker(made.files, made.config, made.fleet, made.process, made.sync, collected,
                     source, tmp_path)
    finally:
        made.sync.close()
        made.process.stop()
        source.stop()


def test_broker_events_ok_device_session_and_bad_certificate(broker: Broker) -> None:
    broker.fleet.allow("dev-1")
    broker.sync.full_sync()
    cert, key = broker.credentials("dev-1", broker.fleet.issuing, 100)
    device = MqttDevice("dev-1-sensor").use_certificate(broker.files.ca, cert, key)
    assert device.connect(broker.config.mtls_port)
    device.publish("devices/dev-1/telemetry", SECRET)
    assert not device.subscribe("devices/dev-2/#")
    device.publish("devices/dev-2/cmd", b"12345")
    device.close()
    evil, _ = ca("Evil", broker.fleet.now)
    bad_cert, bad_key = broker.credentials("dev-1", evil, 200)
    intruder = MqttDevice("intruder").use_certificate(broker.files.ca, bad_cert, bad_key)
    intruder.client.reconnect_delay_set(60, 120)
    assert not intruder.connect(broker.config.mtls_port, timeout=1.0)
    intruder.client.loop_stop()

    def complete(events: list[Event]) -> bool:
        kinds = {e.kind for e in events}
        return {EventKind.DISCONNECT, EventKind.AUTH_FAILURE} <= kinds

    assert broker.collected.wait_for(complete), broker.collected.events
    events = broker.collected.events
    mine = [e for e in events if e.device_id == "dev-1"]
    summary = [(e.kind, e.topic, e.size, e.action) for e in mine]
    assert summary == [
        (EventKind.CONNECT, None, None, None),
        (EventKind.PUBLISH, "devices/dev-1/telemetry", len(SECRET), None),
        (EventKind.AUTHZ_FAILURE, "devices/dev-2/#", None, "subscribe"),
        (EventKind.AUTHZ_FAILURE, "devices/dev-2/cmd", 5, "publish"),
        (EventKind.DISCONNECT, None, None, None),
    ]
    connect, disconnect = mine[0], mine[-1]
    assert (connect.client_id, connect.source_ip, connect.protocol) == (
        "dev-1-sensor", "127.0.0.1", "mqtt5")
    assert disconnect.reason == "normal"
    failures = [e for e in events if e.kind is EventKind.AUTH_FAILURE]
    assert failures[0].reason == "tls: certificate verify failed"
    assert failures[0].source_ip == "127.0.0.1"
    assert failures[0].device_id is None
    # iotiam's own admin link (the sync) is not a device
    assert all(e.device_id in (None, "dev-1") for e in events)
    # never a payload, anywhere in an event
    assert all(SECRET.decode() not in repr(e) for e in events)
    assert broker.source.stats.malformed == 0
    assert broker.collected.batches < len(events)  # batched, not one call per event


def test_broker_events_ok_rotation_and_restart(broker: Broker) -> None:
    broker.fleet.allow("dev-1")
    broker.sync.full_sync()
    cert, key = broker.credentials("dev-1", broker.fleet.issuing, 101)
    broker.source.max_log_bytes = 1  # rotate at the next idle moment
    first = MqttDevice("one").use_certificate(broker.files.ca, cert, key)
    assert first.connect(broker.config.mtls_port)
    first.close()
    assert broker.collected.wait_for(lambda ev: any(e.client_id == "one" and
                                                    e.kind is EventKind.DISCONNECT for e in ev))
    assert broker.collected.wait_for(lambda _: broker.source.rotations >= 1)
    broker.source.max_log_bytes = 1 << 30
    assert broker.collected.wait_for(lambda _: broker.files.log.exists())
    second = MqttDevice("two").use_certificate(broker.files.ca, cert, key)
    assert second.connect(broker.config.mtls_port)
    second.close()
    assert broker.collected.wait_for(lambda ev: any(e.client_id == "two" and
                                                    e.kind is EventKind.DISCONNECT for e in ev))
    # a broker restart appends to the same file: still followed
    broker.process.stop()
    broker.process.start()
    broker.sync.full_sync()
    third = MqttDevice("three").use_certificate(broker.files.ca, cert, key)
    assert third.connect(broker.config.mtls_port)
    third.close()
    assert broker.collected.wait_for(lambda ev: any(e.client_id == "three" and
                                                    e.kind is EventKind.DISCONNECT for e in ev))
    assert broker.files.log.with_name("mosquitto.log.1").exists()


def test_broker_events_ok_serve_runtime_follows_the_managed_broker(tmp_path: Path) -> None:
    require(mosquitto_binary() is not None, "the mosquitto binary is not installed")
    api, http, mtls, psk, admin = free_ports(5)
    settings = Settings(data_dir=tmp_path / "data", port=api, http_port=http,
                        broker_port=mtls, broker_psk_port=psk, broker_admin_port=admin)
    initialize(settings)
    services = build_services(settings)
    collected = Collected()
    plane = start_data_plane(broker_fleet(services), settings, collected)
    try:
        assert plane is not None and plane.events is not None
        # a client without a certificate: refused at TLS, reported with its source
        context = ssl.create_default_context(cafile=str(tmp_path / "data" / "broker" / "ca.pem"))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", settings.broker_port)) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(b"\x10\x00")
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass
        assert collected.wait_for(lambda ev: any(
            e.kind is EventKind.AUTH_FAILURE and e.source_ip == "127.0.0.1" for e in ev))
    finally:
        if plane is not None:
            plane.stop()
        services.close()
    # the sync's own admin link never shows up as a device
    assert all(e.device_id is None for e in collected.events)
    again = build_services(settings)
    try:  # no callback, no source
        without = start_data_plane(broker_fleet(again), settings)
        assert without is not None and without.events is None
        without.stop()
    finally:
        again.close()
