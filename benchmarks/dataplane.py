"""Issue 4's data-plane targets, against real Mosquitto processes.

* revocation → the connected device is dropped: a real ``iotiam serve`` with its managed
  broker; per run one device enrolls, connects over mTLS and subscribes, then its
  certificate is revoked through the API; the time from the revoke call's answer to
  the device seeing its connection closed, over 20 runs (target p99 ≤ 1 s), and each
  reconnect with the revoked certificate must fail;
* a full dynamic-security sync of 10k devices (default policy, compiled per device)
  into a fresh managed broker (target ≤ 30 s);
* mTLS connects/s through the managed broker (dynsec plugin, CRL) against a plain
  Mosquitto with the same certificates and TLS settings (target: within 10 %).
"""

from __future__ import annotations

import getpass
import socket
import ssl
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Generic, TypeVar

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from benchmarks.harness import Result, RunConfig, Target
from benchmarks.server import running_server
from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.layout import ADMIN_USERNAME, BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import admin_password, provision_broker
from iotiam.broker.sync import BrokerSync
from iotiam.broker.sync_ports import Updates
from iotiam.clock import SystemClock
from iotiam.pki.authority import CaMaterial, create_issuing_ca, create_root_ca
from iotiam.pki.crl import build_crl
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import generate_private_key
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.profiles import DEVICE
from iotiam.policy.broker_acl import BrokerAcl, compile_broker_acl
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import Attachment, AttachmentTarget, RequestContext, Subject, TargetKind
from iotiam.testing import free_port, make_csr, make_key
from iotiam.testing.mqtt import MqttDevice

NAME = "dataplane"
TITLE = "revocation reaching a live MQTT session, full dynsec sync, mTLS connects/s"
PEM = serialization.Encoding.PEM


def run(config: RunConfig) -> list[Result]:
    """Three measurements; each needs the mosquitto binary."""
    if mosquitto_binary() is None:
        return [Result(name="data plane", value=0, unit="", error="mosquitto not installed")]
    return [*_revocation(config), *_full_sync(config), *_connects(config)]


# -- revocation to disconnect -----------------------------------------------------------


def _revocation(config: RunConfig) -> list[Result]:
    runs = config.size(20, 5)
    ports = (free_port(), free_port(), free_port())
    delays: list[float] = []
    refused = 0
    with running_server(config, NAME, broker_ports=ports) as server, tempfile.TemporaryDirectory(
    ) as scratch, httpx.Client(base_url=server.api_url, headers=server.admin_headers(),
                               verify=server.tls_context(), timeout=30) as api:
        chain = Path(scratch) / "chain.pem"
        chain.write_text(httpx.get(f"{server.http_url}/ca/chain.pem", timeout=10).text)
        for n in range(runs):
            device_id = f"rev-{n}"
            cert, key, serial = _enroll(api, Path(scratch), device_id)
            device = _connected(chain, cert, key, ports[0], device_id)
            device.client.reconnect_delay_set(60, 120)
            answer = api.post(f"/v1/certificates/{serial}/revoke",
                              json={"reason": "keyCompromise"})
            revoked_at = time.monotonic()
            if answer.status_code != 200:
                raise RuntimeError(f"revoke answered {answer.status_code}: {answer.text}")
            if not device.disconnected.wait(10) or device.disconnected_at is None:
                raise RuntimeError(f"{device_id} stayed connected 10 s after revocation")
            delays.append(device.disconnected_at - revoked_at)
            device.close()
            again = MqttDevice(f"{device_id}-again").use_certificate(chain, cert, key)
            refused += not again.connect(ports[0], timeout=3)
            again.close()
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    spread = ", ".join(f"{d * 1000:.0f}" for d in ordered)
    return [
        Result(name="revocation → session dropped, p99", value=p99 * 1000, unit="ms",
               target=Target(1000, at_least=False),
               notes=f"{runs} runs, ms sorted: {spread}; reconnect refused {refused}/{runs}"),
        Result(name="revocation → session dropped, p50", value=statistics.median(delays) * 1000,
               unit="ms", notes="revoke answer → DISCONNECT seen by the device"),
    ]


def _enroll(api: httpx.Client, scratch: Path, device_id: str) -> tuple[Path, Path, str]:
    created = api.post("/v1/devices", json={"id": device_id, "type": "sensor"})
    if created.status_code != 201:
        raise RuntimeError(f"register answered {created.status_code}: {created.text}")
    key = make_key()
    answer = api.post("/v1/certificates", json={
        "device": device_id, "csr": make_csr(device_id, key=key).decode()})
    if answer.status_code != 201:
        raise RuntimeError(f"issue answered {answer.status_code}: {answer.text}")
    body = answer.json()
    cert, key_file = scratch / f"{device_id}.pem", scratch / f"{device_id}.key"
    cert.write_text(body["pem"])
    key_file.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_file, str(body["serial"])


def _connected(chain: Path, cert: Path, key: Path, port: int, device_id: str) -> MqttDevice:
    deadline = time.monotonic() + 10
    while True:  # the broker learns of a new device within a sync pass
        device = MqttDevice(f"{device_id}-{time.monotonic_ns()}").use_certificate(
            chain, cert, key)
        if device.connect(port) and device.subscribe(f"devices/{device_id}/#"):
            return device
        device.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{device_id} could not connect: {device.connect_result}")
        time.sleep(0.1)


# -- full sync ----------------------------------------------------------------------------


class StaticFleet:
    """``FleetSource`` whose devices' ACLs are compiled once (``acls``), with no changes."""

    def __init__(self, issuing: CaMaterial) -> None:
        self._issuing = issuing
        self._now = datetime.now(UTC)
        self.acls: list[BrokerAcl] = []

    def compile(self, engine: PolicyEngine, subjects: list[Subject]) -> None:
        """Every subject's ACLs under ``engine``."""
        context = RequestContext(at=self._now)
        self.acls = [compile_broker_acl(engine, s, context) for s in subjects]

    def all_acls(self) -> list[BrokerAcl]:
        return self.acls

    def broker_acl(self, device_id: str) -> BrokerAcl | None:
        return None

    def files_version(self) -> tuple[object, ...]:
        return (1,)

    def gateways_for(self, device_ids: Iterable[str]) -> set[str]:
        return set()

    def updates_since(self, since: datetime) -> Updates:
        return Updates()

    def crl_pem(self) -> bytes:
        return _crl(self._issuing, self._now)

    def crl_issuers(self) -> list[x509.Certificate]:
        return [self._issuing.certificate]

    def cafile_pem(self) -> bytes | None:
        return None

    def psk_file(self) -> str:
        return ""


def _synthetic_fleet(count: int, issuing: CaMaterial) -> StaticFleet:
    """N devices under the default policy."""
    fleet = StaticFleet(issuing)
    fleet.compile(PolicyEngine([DEFAULT_DEVICE_POLICY], [Attachment(
        DEFAULT_DEVICE_POLICY.name, AttachmentTarget(TargetKind.ORG_UNIT, "root"), "/root/")]),
        [Subject(device_id=f"sync-{i:05d}", type_name="sensor", org_unit_id="root",
                 org_path="/root/") for i in range(count)])
    return fleet


Fleet = TypeVar("Fleet", bound=StaticFleet)


@dataclass
class SyncedBroker(Generic[Fleet]):
    """A managed Mosquitto provisioned under a scratch directory and synced to a fleet."""

    fleet: Fleet
    issuing: CaMaterial
    files: BrokerFiles
    config: BrokerConfig
    process: ManagedMosquitto
    password: str
    sync: BrokerSync


def synced_broker(work: Path, fleet_of: Callable[[CaMaterial], Fleet], *,
                  event_log: str | None = None, admin_timeout: float = 10.0
                  ) -> SyncedBroker[Fleet]:
    """Provision a broker under ``work`` (fresh CAs, free ports) and its sync loop for the
    fleet ``fleet_of`` builds on the issuing CA; nothing is started yet."""
    issuing, root = _cas()
    files = BrokerFiles(work / "broker")
    config = BrokerConfig(mtls_port=free_port(), psk_port=free_port(), admin_port=free_port())
    if event_log is not None:
        config = replace(config, event_log=event_log)
    provision_broker(files, config, issuing=issuing, root=root.certificate,
                     names=["127.0.0.1"], now=datetime.now(UTC), serial=7)
    binary = mosquitto_binary()
    assert binary is not None
    process = ManagedMosquitto(binary, config, files)
    password = admin_password(files)
    fleet = fleet_of(issuing)
    sync = BrokerSync(fleet, SystemClock(), files, lambda: DynsecAdmin(
        "127.0.0.1", config.admin_port, ADMIN_USERNAME, password, timeout=admin_timeout),
        process)
    return SyncedBroker(fleet, issuing, files, config, process, password, sync)


def _full_sync(config: RunConfig) -> list[Result]:
    count = config.size(10_000, 1_000)
    with tempfile.TemporaryDirectory() as scratch:
        made = synced_broker(Path(scratch), lambda issuing: _synthetic_fleet(count, issuing),
                             admin_timeout=120)
        sync, broker, fleet = made.sync, made.process, made.fleet
        try:
            start = time.perf_counter()
            report = sync.cold_start()
            elapsed = time.perf_counter() - start
            again = time.perf_counter()
            idle = sync.full_sync()
            recheck = time.perf_counter() - again
            # changes to a running broker: 20 roles go through dynsec commands ...
            fleet.acls[:20] = [replace(a, entries=a.entries[1:]) for a in fleet.acls[:20]]
            warm = time.perf_counter()
            patched = sync.full_sync()
            warm_seconds = time.perf_counter() - warm
            # ... and a hundredth at once: one modifyRole each, never a restart (each
            # command rewrites the plugin's whole file: this is the slow case)
            hundredth = count // 100
            fleet.acls[20:20 + hundredth] = [replace(a, entries=a.entries[1:])
                                         for a in fleet.acls[20:20 + hundredth]]
            bulk = time.perf_counter()
            sync.full_sync()
            bulk_seconds = time.perf_counter() - bulk
        finally:
            sync.close()
            broker.stop()
    return [
        Result(name=f"full dynsec sync, {count:,} devices", value=elapsed, unit="s",
               target=Target(30, at_least=False) if count >= 10_000 else None,
               notes=f"broker (re)start with the state written first, then checked: "
                     f"{report.commands} fixes; a second sync sent {idle.commands} in "
                     f"{recheck:.2f} s (listClients/listRoles)"),
        Result(name="incremental sync, 20 changed roles", value=warm_seconds, unit="s",
               notes=f"{patched.commands:,} dynsec commands to a running broker holding "
                     f"{count:,} devices (the plugin rewrites its file after each)"),
        Result(name=f"bulk sync, {count // 100:,} devices' own roles changed",
               value=bulk_seconds, unit="s",
               notes="no restart: pipelined messages of ~0.5 s of plugin work each, "
                     "sessions kept (see broker-policy-change)"),
    ]


# -- mTLS connects/s ----------------------------------------------------------------------


def _connects(config: RunConfig) -> list[Result]:
    count = config.size(2_000, 300)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        issuing, root = _cas()
        chain = scratch / "chain.pem"
        chain.write_bytes(issuing.certificate.public_bytes(PEM)
                          + root.certificate.public_bytes(PEM))
        leaf = LeafBuilder(issuing.signer, issuing.certificate, None)
        key = generate_private_key(KeyAlgorithm.EC_P256)
        cert = leaf.issue(key.public_key(), LeafIdentity(subject=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "conn-1")])), DEVICE, 99,
            datetime.now(UTC) - timedelta(minutes=5))
        cert_file, key_file = scratch / "conn-1.pem", scratch / "conn-1.key"
        cert_file.write_bytes(cert.public_bytes(PEM))
        key_file.write_bytes(key.private_bytes(PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        managed = _managed_broker(scratch, issuing, root)
        plain = _plain_broker(scratch, managed[1])
        try:
            tls = ssl.create_default_context(cafile=str(chain))
            tls.load_cert_chain(cert_file, key_file)
            managed_rate = _connect_rate(tls, managed[2], count)
            plain_rate = _connect_rate(tls, plain[1], count)
        finally:
            managed[0].stop()
            plain[0].terminate()
            plain[0].wait(5)
    ratio = managed_rate / plain_rate
    return [
        Result(name="mTLS connects/s, managed broker", value=managed_rate, unit="connects/s",
               notes="TLS handshake + CONNECT/CONNACK, 4 threads; dynsec plugin + CRL"),
        Result(name="mTLS connects/s, managed vs plain Mosquitto", value=ratio * 100,
               unit="%", target=Target(90),
               notes=f"plain Mosquitto, same certificates and TLS settings: "
                     f"{plain_rate:,.0f} connects/s"),
    ]


def _cas() -> tuple[CaMaterial, CaMaterial]:
    now = datetime.now(UTC) - timedelta(hours=1)
    root = create_root_ca(alg=KeyAlgorithm.EC_P256, common_name="Bench Root",
                          organization="bench", now=now, serial=1)
    issuing = create_issuing_ca(root=root, alg=KeyAlgorithm.EC_P256,
                                common_name="Bench Issuing", organization="bench", now=now,
                                serial=2)
    return issuing, root


def _crl(issuing: CaMaterial, now: datetime) -> bytes:
    return build_crl(signer=issuing.signer, issuer_cert=issuing.certificate, revocations=[],
                     crl_number=1, this_update=now - timedelta(minutes=1),
                     next_update=now + timedelta(days=1)).public_bytes(PEM)


def _managed_broker(scratch: Path, issuing: CaMaterial, root: CaMaterial
                    ) -> tuple[ManagedMosquitto, BrokerFiles, int]:
    files = BrokerFiles(scratch / "managed")
    config = BrokerConfig(mtls_port=free_port(), psk_port=free_port(), admin_port=free_port())
    provision_broker(files, config, issuing=issuing, root=root.certificate,
                     names=["127.0.0.1"], now=datetime.now(UTC), serial=5)
    files.crl.write_bytes(_crl(issuing, datetime.now(UTC)))
    binary = mosquitto_binary()
    assert binary is not None
    broker = ManagedMosquitto(binary, config, files)
    broker.start()
    admin = DynsecAdmin("127.0.0.1", config.admin_port, ADMIN_USERNAME, admin_password(files))
    try:
        admin.check([{"command": "createRole", "rolename": "device:conn-1", "acls": []},
                     {"command": "createClient", "username": "conn-1",
                      "roles": [{"rolename": "device:conn-1"}]}])
    finally:
        admin.close()
    return broker, files, config.mtls_port


def _plain_broker(scratch: Path, files: BrokerFiles) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = scratch / "plain.conf"
    conf.write_text("\n".join([
        "per_listener_settings false", "allow_anonymous true", "persistence false",
        f"user {getpass.getuser()}", "set_tcp_nodelay true",
        f"listener {port} 127.0.0.1", f"cafile {files.ca}", f"certfile {files.certificate}",
        f"keyfile {files.key}", "require_certificate true", "use_identity_as_username true",
        "tls_version tlsv1.2", ""]))
    binary = mosquitto_binary()
    assert binary is not None
    process = subprocess.Popen([str(binary), "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("plain mosquitto did not start")


def _mqtt_connect(n: int) -> bytes:
    """MQTT 3.1.1 CONNECT: clean session, keepalive 30 s, client id c<n>."""
    client_id = f"c{n}".encode()
    body = (b"\x00\x04MQTT" + bytes([4, 2, 0, 30]) + len(client_id).to_bytes(2, "big")
            + client_id)
    return bytes([0x10, len(body)]) + body


def _connect_once(tls: ssl.SSLContext, port: int, n: int = 0) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            tls.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        conn.sendall(_mqtt_connect(n))
        connack = conn.recv(4)
        if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"CONNACK refused: {connack!r}")


def _connect_rate(tls: ssl.SSLContext, port: int, count: int) -> float:
    for _ in range(20):  # warm up
        _connect_once(tls, port)
    start = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: _connect_once(tls, port, n), range(count)))
    return count / (time.perf_counter() - start)
