"""Issue 12 item 10: a policy change for the whole fleet reaches a live managed Mosquitto
with no restart and no dropped session.

10k devices (two device types, the default policy plus a per-type telemetry grant, all
compiled by the real policy engine) are written into a managed broker at its start, as
``iotiam serve`` does; N of them hold real mTLS MQTT connections (raw TLS sockets, one
certificate each, keepalive off so only the broker can end them). Then a root guardrail
(deny publishing under ``devices/+/firmware/#``) is attached: every device's rights
change. Measured: the time to recompile the fleet, the time for the sync to apply it,
the dynsec commands sent, and how many of the N sessions the broker dropped (target 0)
and whether it was restarted (it must not be).
"""

from __future__ import annotations

import select
import ssl
import tempfile
import time
from pathlib import Path

from benchmarks.broker_auth import device_tls, mqtt_session
from benchmarks.dataplane import StaticFleet, synced_broker
from benchmarks.harness import Result, RunConfig, Target
from iotiam.broker.dynsec import DynsecAdmin
from iotiam.broker.layout import ADMIN_USERNAME, mosquitto_binary
from iotiam.pki.authority import CaMaterial
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import Attachment, AttachmentTarget, Subject, TargetKind
from iotiam.policy.parsing import parse_policy

NAME = "broker-policy-change"
TITLE = "a fleet-wide policy change on a live managed Mosquitto: time, commands, disconnects"

TELEMETRY = parse_policy("""\
name: type-telemetry
version: 1
statements:
  - sid: telemetry
    effect: allow
    actions: [mqtt:publish]
    topics: ["fleet/${device.type}/telemetry"]
""")
GUARDRAIL = parse_policy("""\
name: root-guardrail
version: 1
statements:
  - sid: no-firmware-writes
    effect: deny
    actions: [mqtt:publish]
    topics: ["devices/+/firmware/#"]
""")


def _at_root(*names: str) -> list[Attachment]:
    return [Attachment(name, AttachmentTarget(TargetKind.ORG_UNIT, "root"), "/root/")
            for name in names]


class _Fleet(StaticFleet):
    """N devices of two types whose ACLs the real engine compiles."""

    def __init__(self, count: int, issuing: CaMaterial) -> None:
        super().__init__(issuing)
        self.subjects = [Subject(device_id=f"pc-{i:05d}", type_name=("sensor", "gateway")[i % 2],
                                 org_unit_id="root", org_path="/root/") for i in range(count)]
        self.under(PolicyEngine([DEFAULT_DEVICE_POLICY, TELEMETRY],
                                _at_root(DEFAULT_DEVICE_POLICY.name, TELEMETRY.name)))

    def under(self, engine: PolicyEngine) -> None:
        """Every device's ACLs under ``engine``."""
        self.compile(engine, self.subjects)


def run(config: RunConfig) -> list[Result]:
    """Provision, connect, change the policy, count what the broker did."""
    if mosquitto_binary() is None:
        return [Result(name="broker policy change", value=0, unit="",
                       error="mosquitto not installed")]
    count = config.size(10_000, 2_000)
    connected = config.size(500, 50)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        made = synced_broker(scratch, lambda issuing: _Fleet(count, issuing),
                             event_log="connections")
        issuing, files, broker_config = made.issuing, made.files, made.config
        broker, password, sync, fleet = made.process, made.password, made.sync, made.fleet
        sessions: list[ssl.SSLSocket] = []
        try:
            sync.cold_start()
            pid = broker.pid
            sessions = _connect_all(scratch, issuing, files.ca, broker_config.mtls_port,
                                    [s.device_id for s in fleet.subjects[:connected]])
            started = time.perf_counter()
            fleet.under(PolicyEngine(
                [DEFAULT_DEVICE_POLICY, TELEMETRY, GUARDRAIL],
                _at_root(DEFAULT_DEVICE_POLICY.name, TELEMETRY.name, GUARDRAIL.name)))
            compiled = time.perf_counter() - started
            applied_at = time.perf_counter()
            report = sync.full_sync()  # what the loop runs when policies changed
            applied = time.perf_counter() - applied_at
            time.sleep(1.0)  # a kick reaches the socket well within this
            dropped = sum(_dropped(s) for s in sessions)
            restarted = broker.pid != pid
            control = _control_kick(broker_config.admin_port, password, sessions[0],
                                    fleet.subjects[0].device_id)
        finally:
            for session in sessions:
                session.close()
            sync.close()
            broker.stop()
    return [
        Result(name=f"policy change, {count:,} devices: applied to the broker", value=applied,
               unit="s", target=Target(10, at_least=False),
               notes=f"{report.commands} dynsec commands ({report.roles_edited} class roles "
                     f"edited, {report.updated} devices' own roles); recompiling the fleet "
                     f"took {compiled:.1f} s more"),
        Result(name=f"policy change: sessions dropped of {connected} connected",
               value=dropped, unit="sessions", target=Target(0, at_least=False),
               notes="real mTLS MQTT sessions; the broker was "
                     + ("RESTARTED" if restarted else "not restarted")
                     + ("; control: a deleted client's drop is seen" if control else
                        "; CONTROL FAILED: a deleted client's drop was not seen")),
    ]


def _control_kick(admin_port: int, password: str, session: ssl.SSLSocket,
                  device_id: str) -> bool:
    """The drop counter is not blind: deleting a connected device's client is seen."""
    admin = DynsecAdmin("127.0.0.1", admin_port, ADMIN_USERNAME, password)
    try:
        admin.check([{"command": "deleteClient", "username": device_id}])
    finally:
        admin.close()
    time.sleep(0.5)
    return _dropped(session)


def _connect_all(scratch: Path, issuing: CaMaterial, ca: Path, port: int,
                 device_ids: list[str]) -> list[ssl.SSLSocket]:
    """One mTLS MQTT session per device (its own certificate), CONNACK checked."""
    devices = device_tls(issuing, ca, device_ids, scratch)
    return [mqtt_session(devices.tls(n), port, device_id)
            for n, device_id in enumerate(devices.ids)]


def _dropped(session: ssl.SSLSocket) -> bool:
    """Whether the broker closed (or sent DISCONNECT on) this session."""
    if session.pending() == 0 and not select.select([session], [], [], 0)[0]:
        return False
    try:
        data = session.recv(2)
    except (OSError, ssl.SSLError):
        return True
    return data == b"" or data[:1] == b"\xe0"
