"""The broker adapter against a real Mosquitto: provisioning, dynsec sync, revocation.

A fleet stand-in says what each device may do (the ACL entries the policy compiler
produces); the real pieces are Mosquitto with the dynamic-security plugin, TLS with
certificates from an iotiam CA, and paho-mqtt devices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.layout import ADMIN_USERNAME, BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import admin_password, provision_broker
from iotiam.broker.sync import BrokerSync
from iotiam.broker.sync_ports import Updates
from iotiam.changes import CertificateRevoked, Published
from iotiam.clock import SystemClock
from iotiam.pki.authority import CaMaterial, create_issuing_ca, create_root_ca
from iotiam.pki.crl import build_crl
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import generate_private_key
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm, Revocation, RevocationReason
from iotiam.pki.profiles import DEVICE
from iotiam.policy.broker_acl import AclEntry, AclType, BrokerAcl
from iotiam.testing import free_ports, require
from iotiam.testing.mqtt import MqttDevice

pytestmark = pytest.mark.integration

PEM = serialization.Encoding.PEM


def own_namespace(device_id: str) -> tuple[AclEntry, ...]:
    """What the default device policy compiles to: devices/<id>/# only."""
    mine = f"devices/{device_id}/#"
    return (
        AclEntry(100, AclType.PUBLISH_CLIENT_SEND, mine, True),
        AclEntry(100, AclType.SUBSCRIBE_PATTERN, mine, True),
        AclEntry(100, AclType.PUBLISH_CLIENT_RECEIVE, mine, True),
        AclEntry(0, AclType.PUBLISH_CLIENT_SEND, "#", False),
        AclEntry(0, AclType.SUBSCRIBE_PATTERN, "#", False),
        AclEntry(0, AclType.PUBLISH_CLIENT_RECEIVE, "#", False),
    )


@dataclass
class Fleet:
    """A stand-in for inventory + policy + PKI."""

    issuing: CaMaterial
    now: datetime
    acls: dict[str, BrokerAcl] = field(default_factory=dict)
    revoked: list[Revocation] = field(default_factory=list)
    crl_number: int = 1
    changes: Updates = field(default_factory=Updates)

    def allow(self, device_id: str, entries: Sequence[AclEntry] | None = None) -> None:
        self.acls[device_id] = BrokerAcl(device_id, True, tuple(entries or own_namespace(
            device_id)), None, 1, self.now)

    def broker_acl(self, device_id: str) -> BrokerAcl | None:
        return self.acls.get(device_id)

    def all_acls(self) -> list[BrokerAcl]:
        return list(self.acls.values())

    def files_version(self) -> tuple[object, ...]:
        return (self.crl_number,)

    def gateways_for(self, device_ids: Iterable[str]) -> set[str]:
        return set()

    def updates_since(self, since: datetime) -> Updates:
        changes, self.changes = self.changes, Updates()
        return changes

    def crl_pem(self) -> bytes:
        crl = build_crl(signer=self.issuing.signer, issuer_cert=self.issuing.certificate,
                        revocations=self.revoked, crl_number=self.crl_number,
                        this_update=self.now - timedelta(minutes=1),
                        next_update=self.now + timedelta(days=1))
        return crl.public_bytes(PEM)

    def crl_issuers(self) -> list[x509.Certificate]:
        return [self.issuing.certificate]

    def cafile_pem(self) -> bytes | None:
        return None

    def psk_file(self) -> str:
        return ""


@dataclass
class Plane:
    fleet: Fleet
    files: BrokerFiles
    config: BrokerConfig
    broker: ManagedMosquitto
    sync: BrokerSync
    leaf: LeafBuilder
    work: Path
    serial: int = 1000

    def device(self, device_id: str) -> tuple[Path, Path, int]:
        """A certificate + key for ``device_id`` on disk."""
        self.serial += 1
        key = generate_private_key(KeyAlgorithm.EC_P256)
        identity = LeafIdentity(subject=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, device_id)]))
        cert = self.leaf.issue(key.public_key(), identity, DEVICE, self.serial,
                               self.fleet.now - timedelta(minutes=5))
        cert_path = self.work / f"{device_id}-{self.serial}.pem"
        key_path = self.work / f"{device_id}-{self.serial}.key"
        cert_path.write_bytes(cert.public_bytes(PEM))
        key_path.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_path, key_path, self.serial

    def connect(self, device_id: str, cert: Path, key: Path) -> MqttDevice:
        device = MqttDevice(f"{device_id}-{cert.stem}").use_certificate(
            self.files.ca, cert, key)
        device.connect(self.config.mtls_port)
        return device


def ca(name: str, now: datetime) -> tuple[CaMaterial, x509.Certificate]:
    """An issuing CA (and its root's certificate), valid since an hour ago."""
    root = create_root_ca(alg=KeyAlgorithm.EC_P256, common_name=f"{name} Root",
                          organization="t", now=now - timedelta(hours=1), serial=1)
    issuing = create_issuing_ca(root=root, alg=KeyAlgorithm.EC_P256,
                                common_name=f"{name} Issuing", organization="t",
                                now=now - timedelta(hours=1), serial=2)
    return issuing, root.certificate


@dataclass
class Provisioned:
    """A managed broker's files and config, its fleet and sync; the broker not started."""

    files: BrokerFiles
    config: BrokerConfig
    fleet: Fleet
    process: ManagedMosquitto
    sync: BrokerSync


def provisioned_broker(work: Path) -> Provisioned:
    """Provision a managed Mosquitto under ``work`` with a fresh test CA and iotiam's
    default config (message log on), its files (the CRL among them) installed."""
    binary = mosquitto_binary()
    require(binary is not None, "the mosquitto binary is not installed")
    assert binary is not None
    now = datetime.now(UTC)
    issuing, root = ca("Test", now)
    files = BrokerFiles(work / "broker")
    mtls, psk, admin = free_ports(3)
    broker_config = BrokerConfig(mtls_port=mtls, psk_port=psk, admin_port=admin)
    provision_broker(files, broker_config, issuing=issuing, root=root,
                     names=["localhost", "127.0.0.1"], now=now, serial=3)
    fleet = Fleet(issuing, now)
    process = ManagedMosquitto(binary, broker_config, files)
    password = admin_password(files)
    sync = BrokerSync(
        fleet, SystemClock(), files,
        lambda: DynsecAdmin("127.0.0.1", broker_config.admin_port, ADMIN_USERNAME, password),
        process)
    sync.install_files()  # the CRL must exist before the broker starts
    return Provisioned(files, broker_config, fleet, process, sync)


@contextlib.contextmanager
def running_plane(made: Provisioned, work: Path) -> Iterator[Plane]:
    """The provisioned broker as a ``Plane`` (already started); stopped on exit."""
    try:
        yield Plane(made.fleet, made.files, made.config, made.process, made.sync,
                    LeafBuilder(made.fleet.issuing.signer, made.fleet.issuing.certificate,
                               None), work)
    finally:
        made.sync.close()
        made.process.stop()


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    made = provisioned_broker(tmp_path)
    made.process.start()
    with running_plane(made, tmp_path) as started:
        yield started


def test_dataplane_ok_own_topics_only(plane: Plane) -> None:
    plane.fleet.allow("dev-1")
    plane.fleet.allow("dev-2")
    report = plane.sync.full_sync()
    assert (report.created, report.removed) == (2, 0)
    cert, key, _ = plane.device("dev-1")
    device = plane.connect("dev-1", cert, key)
    try:
        assert device.connect_result == "Success"
        assert device.subscribe("devices/dev-1/#")
        assert not device.subscribe("devices/dev-2/#")
        assert not device.subscribe("#")
        device.publish("devices/dev-1/telemetry", b"ok")
        assert device.received() == ("devices/dev-1/telemetry", b"ok")
        other_cert, other_key, _ = plane.device("dev-2")
        other = plane.connect("dev-2", other_cert, other_key)
        assert other.subscribe("devices/dev-2/#")
        device.publish("devices/dev-2/cmd", b"intrusion")  # not dev-1's to write
        assert other.received(timeout=0.5) is None
        other.close()
    finally:
        device.close()


def test_dataplane_ok_idempotent_and_checked_against_broker(plane: Plane) -> None:
    plane.fleet.allow("dev-1")
    plane.sync.full_sync()
    again = plane.sync.full_sync()
    assert (again.created, again.updated, again.removed, again.commands) == (0, 0, 0, 0)
    # drift on the broker (someone removed an ACL by hand) is found and repaired
    admin = DynsecAdmin("127.0.0.1", plane.config.admin_port, ADMIN_USERNAME,
                        admin_password(plane.files))
    try:
        admin.check([{"command": "removeRoleACL", "rolename": "device:dev-1",
                      "acltype": "subscribePattern", "topic": "devices/dev-1/#"},
                     {"command": "createClient", "username": "stranger"}])
        repaired = plane.sync.full_sync()
        assert (repaired.updated, repaired.removed) == (1, 1)
        roles = admin.check([{"command": "getRole", "rolename": "device:dev-1"}])
        topics = {a["topic"] for a in roles[0]["data"]["role"]["acls"]}
        assert "devices/dev-1/#" in topics
    finally:
        admin.close()


def test_dataplane_ok_revocation_kicks_and_refuses(plane: Plane) -> None:
    plane.fleet.allow("dev-1")
    plane.sync.full_sync()
    cert, key, serial = plane.device("dev-1")
    device = plane.connect("dev-1", cert, key)
    assert device.connect_result == "Success"
    device.client.reconnect_delay_set(60, 120)  # the check below is about a fresh connect
    plane.fleet.revoked.append(Revocation(serial, plane.fleet.now, RevocationReason.KEY_COMPROMISE))
    plane.fleet.crl_number += 1
    # the change feed delivers the revocation (BrokerSync.follow), then one pass runs
    plane.sync.follow(Published(1, CertificateRevoked(serial, "issuing", "dev-1")))
    plane.sync._pass(plane.fleet.now)  # one pass of the loop, as after a revoke
    assert device.disconnected.wait(2), "the live session survived the revocation"
    device.close()
    again = plane.connect("dev-1", cert, key)
    assert again.connect_result != "Success", "the revoked certificate got back in"
    again.close()
    # the device's other, unrevoked certificate still works: only the credential went
    fresh_cert, fresh_key, _ = plane.device("dev-1")
    fresh = plane.connect("dev-1", fresh_cert, fresh_key)
    assert fresh.connect_result == "Success"
    assert fresh.subscribe("devices/dev-1/#")
    fresh.close()


def test_dataplane_ok_quarantine_and_restore(plane: Plane) -> None:
    plane.fleet.allow("dev-1")
    plane.sync.full_sync()
    before = plane.sync.known("dev-1")
    quarantine = (AclEntry(100, AclType.PUBLISH_CLIENT_SEND, "quarantine/dev-1/#", True),
                  AclEntry(0, AclType.PUBLISH_CLIENT_SEND, "#", False),
                  AclEntry(0, AclType.SUBSCRIBE_PATTERN, "#", False),
                  AclEntry(0, AclType.PUBLISH_CLIENT_RECEIVE, "#", False))
    cert, key, _ = plane.device("dev-1")
    device = plane.connect("dev-1", cert, key)
    watcher_cert, watcher_key, _ = plane.device("watcher")
    plane.fleet.allow("watcher", [AclEntry(100, AclType.SUBSCRIBE_PATTERN, "#", True),
                                  AclEntry(100, AclType.PUBLISH_CLIENT_RECEIVE, "#", True)])
    plane.sync.sync_devices(["watcher"])
    watcher = plane.connect("watcher", watcher_cert, watcher_key)
    try:
        assert watcher.subscribe("#")
        plane.fleet.allow("dev-1", quarantine)
        report = plane.sync.sync_devices(["dev-1"])
        assert report.updated == 1
        device.publish("devices/dev-1/telemetry")
        device.publish("quarantine/dev-1/report")
        assert watcher.received() == ("quarantine/dev-1/report", b"x")
        assert watcher.received(timeout=0.3) is None
        plane.fleet.allow("dev-1")  # lifted: exactly the rights from before
        plane.sync.sync_devices(["dev-1"])
        assert plane.sync.known("dev-1") == before
        device.publish("devices/dev-1/telemetry")
        assert watcher.received() == ("devices/dev-1/telemetry", b"x")
    finally:
        device.close()
        watcher.close()


def test_dataplane_ok_broker_restart_full_resync(plane: Plane) -> None:
    plane.fleet.allow("dev-1")
    plane.sync.full_sync()
    plane.broker.stop()
    plane.files.dynsec.write_text(plane.files.dynsec.read_text())  # state survives on disk
    plane.fleet.allow("dev-2")  # decided while the broker was down: nothing lost
    plane.sync.request(["dev-2"])
    with pytest.raises(Exception):  # noqa: B017 - any broker error: it is down
        plane.sync._pass(plane.fleet.now)
    plane.sync._check_broker()  # the loop's health check restarts it ...
    plane.sync._pass(plane.fleet.now)  # ... and the next pass resyncs in full
    cert, key, _ = plane.device("dev-2")
    device = plane.connect("dev-2", cert, key)
    assert device.connect_result == "Success"
    assert device.subscribe("devices/dev-2/#")
    device.close()


def test_dataplane_ok_cold_start_after_a_torn_dynsec_file(plane: Plane) -> None:
    plane.fleet.allow("dev-1")
    plane.sync.full_sync()
    plane.broker.stop()
    plane.files.dynsec.write_text("")  # the broker died while rewriting its state
    report = plane.sync.cold_start()  # the admin from the seed, the fleet anew
    assert report.created == 1
    cert, key, _ = plane.device("dev-1")
    device = plane.connect("dev-1", cert, key)
    try:
        assert device.connect_result == "Success"
        assert device.subscribe("devices/dev-1/#")
        assert not device.subscribe("devices/dev-2/#")
    finally:
        device.close()
