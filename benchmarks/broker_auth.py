"""Broker authorization at fleet size: iotiam's Mosquitto plugin against dynamic security.

The fleet is N devices under the default policy (full run 100k, quick 2k), decided by
the real policy engine. For each way of authorizing, a managed Mosquitto is started
holding that fleet and measured on:

* its start with the fleet (dynsec: the state file written, loaded and checked; the
  plugin: nothing to load);
* connects/s of M devices of the fleet, each with its own certificate (4 client
  processes, so that the clients do not share iotiam's interpreter), each doing what
  a device does first: TLS handshake, CONNECT, one QoS 1 PUBLISH to its own topic and
  the PUBACK (so the broker authorized one publish per device: with the plugin a
  question to iotiam each, nothing being cached yet);
* a policy change's time to apply: a root guardrail denying a topic. dynsec: the sync
  edits the class roles (``full_sync``); the plugin: iotiam pushes "forget everything",
  then S open sessions each publish once (each asks again) and the time until all are
  answered is the time to apply. Sessions dropped are counted (target 0, G11).

Server CPU per connect is the broker's CPU (``/proc``) plus, for the plugin, iotiam's
socket threads' CPU, over the connects; the clients' TLS work is not counted. dynsec is
measured at ``DYNSEC_DEVICES`` (10k in a full run): Mosquitto 2.0.11 takes minutes to
load a dynsec file of 100k devices (docs/broker-plugin.md), too long for one command.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from benchmarks.dataplane import PEM, StaticFleet, _cas, synced_broker
from benchmarks.harness import Result, RunConfig
from iotiam.broker.decision_socket import DecisionSocket
from iotiam.broker.installed_files import BrokerFileInstaller
from iotiam.broker.layout import BrokerConfig, BrokerFiles, mosquitto_binary
from iotiam.broker.plugin_plane import PdpAnswers, PluginAuthorization
from iotiam.broker.process import ManagedMosquitto
from iotiam.broker.provision import provision_broker
from iotiam.changes import PolicyChanged, Published
from iotiam.clock import SystemClock
from iotiam.pki.authority import CaMaterial
from iotiam.pki.csr import LeafIdentity
from iotiam.pki.keys import generate_private_key
from iotiam.pki.leaf_builder import LeafBuilder
from iotiam.pki.models import KeyAlgorithm
from iotiam.pki.profiles import DEVICE
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Decision,
    RequestContext,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import parse_policy
from iotiam.testing import free_port

NAME = "broker-auth"
TITLE = "broker authorization at 100k devices: iotiam's plugin vs dynamic security"
GUARDRAIL = ("name: bench-guardrail\nversion: 1\nstatements:\n  - effect: deny\n"
             "    actions: [mqtt:publish]\n    topics: [\"devices/+/firmware/#\"]\n")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def run(config: RunConfig) -> list[Result]:
    """The plugin at N devices, dynsec at its own size; each needs the mosquitto binary."""
    if mosquitto_binary() is None:
        return [Result(name="broker authorization", value=0, unit="",
                       error="mosquitto not installed")]
    devices = config.size(100_000, 2_000)
    dynsec_devices = config.size(10_000, 2_000)
    connects = config.size(2_000, 200)
    sessions = config.size(500, 50)
    return [*_plugin(devices, connects, sessions), *_dynsec(dynsec_devices, connects)]


# -- the fleet ------------------------------------------------------------------------------


def _subjects(count: int) -> dict[str, Subject]:
    return {f"dev-{i:06d}": Subject(device_id=f"dev-{i:06d}", type_name="sensor",
                                    org_unit_id="root", org_path="/root/", credentialed=True)
            for i in range(count)}


def _engine(*extra: str) -> PolicyEngine:
    documents = [DEFAULT_DEVICE_POLICY, *(parse_policy(text) for text in extra)]
    return PolicyEngine(documents, [
        Attachment(d.name, AttachmentTarget(TargetKind.ORG_UNIT, "root"), "/root/")
        for d in documents])


class _FleetPdp:
    """A decision point over the synthetic fleet (the engine swapped on a change)."""

    def __init__(self, subjects: dict[str, Subject]) -> None:
        self.subjects = subjects
        self.engine = _engine()

    def cached(self, device_id: str) -> Subject | None:
        return self.subjects.get(device_id)

    def forget(self, device_id: str | None = None) -> None:
        pass  # nothing is cached: the subjects are the fleet itself

    def cached_many(self, device_ids: Sequence[str]) -> dict[str, Subject | None]:
        return {d: self.subjects.get(d) for d in device_ids}

    def decide(self, subject: Subject, action: str, resource: str, *,
               source_ip: str | None = None) -> Decision:
        context = RequestContext(at=datetime.now(UTC),
                                 source_ip=ip_address(source_ip) if source_ip else None)
        return self.engine.decide(subject, action, resource, context)


@dataclass(frozen=True)
class Devices:
    """Devices of the fleet with a certificate each, on disk (``<work>/<id>.pem``, one
    key): a client process builds its TLS contexts from the files."""

    ids: list[str]
    chain: Path
    work: Path

    def tls(self, n: int) -> ssl.SSLContext:
        """The TLS client context of the n-th device."""
        return _tls(str(self.chain), str(self.work / f"{self.ids[n]}.pem"),
                    str(self.work / "device.key"))

    def part(self, start: int, stop: int | None = None) -> Devices:
        """A slice of these devices."""
        return replace(self, ids=self.ids[start:stop])


@functools.cache
def _tls(chain: str, cert: str, key: str) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=chain)
    tls.load_cert_chain(cert, key)
    return tls


def device_tls(issuing: CaMaterial, chain: Path, ids: list[str], work: Path) -> Devices:
    """A certificate per device (CN = its id), written under ``work``."""
    leaf = LeafBuilder(issuing.signer, issuing.certificate, None)
    key = generate_private_key(KeyAlgorithm.EC_P256)  # one key: the handshake is the same
    (work / "device.key").write_bytes(key.private_bytes(
        PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    for n, device_id in enumerate(ids):
        cert = leaf.issue(key.public_key(), LeafIdentity(subject=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, device_id)])), DEVICE, 1000 + n,
            datetime.now(UTC) - timedelta(minutes=5))
        (work / f"{device_id}.pem").write_bytes(cert.public_bytes(PEM))
    return Devices(ids, chain, work)


# -- MQTT 3.1.1 on a raw TLS socket ----------------------------------------------------------


def _packet(kind: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([kind]) + bytes(encoded) + body


def mqtt_session(tls: ssl.SSLContext, port: int, client_id: str) -> ssl.SSLSocket:
    """An mTLS MQTT 3.1.1 session, CONNACK checked, keepalive off."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn = tls.wrap_socket(raw, server_hostname="127.0.0.1")
    name = client_id.encode()
    # keepalive 0: only the broker ends the session
    conn.sendall(_packet(0x10, b"\x00\x04MQTT" + bytes([4, 2, 0, 0])
                         + len(name).to_bytes(2, "big") + name))
    connack = conn.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        conn.close()
        raise RuntimeError(f"{client_id}: CONNACK refused: {connack!r}")
    return conn


def _publish(conn: ssl.SSLSocket, topic: str, packet_id: int = 1) -> None:
    """QoS 1 PUBLISH, then wait for its PUBACK (sent for a denied publish too)."""
    name = topic.encode()
    conn.sendall(_packet(0x32, len(name).to_bytes(2, "big") + name
                         + packet_id.to_bytes(2, "big") + b"x"))
    puback = conn.recv(4)
    if len(puback) < 4 or puback[0] != 0x40:
        raise RuntimeError(f"no PUBACK: {puback!r}")


def _first_publish(devices: Devices, port: int, n: int) -> None:
    device_id = devices.ids[n]
    with mqtt_session(devices.tls(n), port, f"c-{device_id}") as conn:
        _publish(conn, f"devices/{device_id}/telemetry")


def _connect_and_publish(pool: ProcessPoolExecutor, devices: Devices, port: int) -> float:
    """Connects/s of every device doing CONNECT + one PUBLISH, from 4 client processes
    (not threads of this one: iotiam's socket threads answer in this process)."""
    start = time.perf_counter()
    list(pool.map(functools.partial(_first_publish, devices, port), range(len(devices.ids)),
                  chunksize=8))
    return len(devices.ids) / (time.perf_counter() - start)


def _cpu_seconds(pid: int, threads: Callable[[], list[int]] | None = None) -> float:
    """CPU of process ``pid`` (or of these threads of it) from ``/proc``."""
    stats = ([f"/proc/{pid}/task/{tid}/stat" for tid in threads()] if threads is not None
             else [f"/proc/{pid}/stat"])
    total = 0
    for path in stats:
        try:
            fields = Path(path).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / _CLOCK_TICKS


def _socket_threads() -> list[int]:
    return [t.native_id for t in threading.enumerate()
            if t.name.startswith("broker-plugin") and t.native_id is not None]


# -- the plugin --------------------------------------------------------------------------


@dataclass
class _PluginBroker:
    broker: ManagedMosquitto
    files: BrokerFiles
    port: int
    issuing: CaMaterial
    plane: PluginAuthorization
    decisions: DecisionSocket
    start_seconds: float


@contextmanager
def _plugin_broker(work: Path, pdp: _FleetPdp) -> Iterator[_PluginBroker]:
    issuing, root = _cas()
    files = BrokerFiles(work / "broker")
    config = BrokerConfig(mtls_port=free_port(), psk_port=free_port(), admin_port=free_port(),
                          auth="plugin", event_log="connections")
    provision_broker(files, config, issuing=issuing, root=root.certificate,
                     names=["127.0.0.1"], now=datetime.now(UTC), serial=5)
    binary = mosquitto_binary()
    assert binary is not None
    broker = ManagedMosquitto(binary, config, files)
    answers = PdpAnswers(pdp, pdp)
    decisions = DecisionSocket(files.plugin_socket, answers.answer)
    decisions.start()
    plane = PluginAuthorization(files, BrokerFileInstaller(
        StaticFleet(issuing), SystemClock(), files, broker), broker, decisions,
        answers.may_connect_many)
    started = time.perf_counter()
    try:
        plane.cold_start()
        yield _PluginBroker(broker, files, config.mtls_port, issuing, plane, decisions,
                            time.perf_counter() - started)
    finally:
        broker.stop()
        decisions.stop()


def _plugin(count: int, connects: int, sessions: int) -> list[Result]:
    pdp = _FleetPdp(_subjects(count))
    ids = sorted(pdp.subjects)
    step = max(1, count // (connects + 20))
    with tempfile.TemporaryDirectory(prefix="iotiam-bench-") as scratch, _plugin_broker(
            Path(scratch), pdp) as made:
        chosen = device_tls(made.issuing, made.files.ca, ids[::step][:connects + 20],
                            Path(scratch))
        pid = made.broker.pid
        assert pid is not None
        sample = chosen.part(0, connects)
        with ProcessPoolExecutor(4) as pool:
            # the first connects start the clients and warm the socket; the sample's
            # devices are new to the broker and to iotiam
            _connect_and_publish(pool, chosen.part(connects), made.port)
            asked = made.decisions.answered
            cpu = _cpu_seconds(pid) + _cpu_seconds(os.getpid(), _socket_threads)
            rate = _connect_and_publish(pool, sample, made.port)
        cpu = _cpu_seconds(pid) + _cpu_seconds(os.getpid(), _socket_threads) - cpu
        asked = made.decisions.answered - asked
        apply_seconds, dropped = _plugin_policy_change(made.plane, pdp,
                                                       sample.part(0, sessions), made.port)
        start_seconds = made.start_seconds
    per = cpu / len(sample.ids) * 1000
    return [
        Result(name=f"plugin: broker start, {count:,} devices", value=start_seconds, unit="s",
               notes="nothing about the fleet is loaded: the broker asks iotiam"),
        Result(name=f"plugin: connect + first publish, {count:,} devices", value=rate,
               unit="connects/s",
               notes=f"{len(sample.ids):,} devices, 4 client processes; {asked:,} questions "
                     f"to iotiam; server CPU {per:.2f} ms/connect (broker + iotiam's socket)"),
        Result(name="plugin: policy change to apply", value=apply_seconds, unit="s",
               notes=f"root guardrail: push 'forget all', then {sessions} live sessions "
                     f"each re-decided on their next publish; {dropped} sessions dropped"),
    ]


def _plugin_policy_change(plane: PluginAuthorization, pdp: _FleetPdp, devices: Devices,
                          port: int) -> tuple[float, int]:
    conns = [mqtt_session(devices.tls(n), port, f"s-{d}") for n, d in enumerate(devices.ids)]
    try:
        for conn, device_id in zip(conns, devices.ids, strict=True):
            _publish(conn, f"devices/{device_id}/firmware/v")  # allowed, now cached
        start = time.perf_counter()
        pdp.engine = _engine(GUARDRAIL)
        plane.follow(Published(1, PolicyChanged("bench-guardrail")))
        for conn, device_id in zip(conns, devices.ids, strict=True):
            _publish(conn, f"devices/{device_id}/firmware/v", 2)
        elapsed = time.perf_counter() - start
        dropped = 0
        for conn in conns:
            try:
                _publish(conn, "devices/x/ping", 3)
            except (OSError, RuntimeError):
                dropped += 1
        return elapsed, dropped
    finally:
        for conn in conns:
            conn.close()


# -- dynamic security -------------------------------------------------------------------


def _dynsec(count: int, connects: int) -> list[Result]:
    subjects = _subjects(count)
    ids = sorted(subjects)
    step = max(1, count // (connects + 20))

    def fleet_of(issuing: CaMaterial) -> StaticFleet:
        fleet = StaticFleet(issuing)
        fleet.compile(_engine(), list(subjects.values()))
        return fleet

    with tempfile.TemporaryDirectory(prefix="iotiam-bench-") as scratch:
        made = synced_broker(Path(scratch), fleet_of, event_log="connections",
                             admin_timeout=600)
        try:
            started = time.perf_counter()
            made.sync.cold_start()
            start_seconds = time.perf_counter() - started
            chosen = device_tls(made.issuing, made.files.ca, ids[::step][:connects + 20],
                                Path(scratch))
            sample = chosen.part(0, connects)
            pid = made.process.pid
            assert pid is not None
            with ProcessPoolExecutor(4) as pool:
                _connect_and_publish(pool, chosen.part(connects), made.config.mtls_port)
                cpu = _cpu_seconds(pid)
                rate = _connect_and_publish(pool, sample, made.config.mtls_port)
            cpu = _cpu_seconds(pid) - cpu
            made.fleet.compile(_engine(GUARDRAIL), list(subjects.values()))
            changed = time.perf_counter()
            report = made.sync.full_sync()
            apply_seconds = time.perf_counter() - changed
        finally:
            made.sync.close()
            made.process.stop()
    per = cpu / len(sample.ids) * 1000
    return [
        Result(name=f"dynsec: broker start, {count:,} devices", value=start_seconds, unit="s",
               notes="state file written, loaded by the plugin, checked by listClients"),
        Result(name=f"dynsec: connect + first publish, {count:,} devices", value=rate,
               unit="connects/s",
               notes=f"{len(sample.ids):,} devices, 4 client processes; "
                     f"server CPU {per:.2f} ms/connect"),
        Result(name="dynsec: policy change to apply", value=apply_seconds, unit="s",
               notes=f"root guardrail: {report.commands} dynsec commands "
                     f"({report.roles_edited} class roles edited), the fleet recompiled before"),
    ]
