"""A labelled fleet simulation for the detectors: normal behaviour, benign noise, attacks.

``generate(seed)`` returns a ``Scenario``: events in time order and the ground truth of
every attack injected (id, finding type, device, start, end). The fleet, its rates,
sizes, peers, sites and every attack's parameters are drawn from the seed.

Normal behaviour:

* sensors publish every ~30-120 s (±3-15 % jitter), small messages, NTP flows, and
  reconnect every hour or two (sometimes with a new DHCP address in the same /24);
* gateways relay Poisson traffic (0.3-0.8 messages/s, sizes over an order of
  magnitude) and open flows to a few internal peers and a cloud service answering
  from a pool of addresses;
* controllers work business hours (start before the scenario, end 16:30-18:45 UTC),
  publish every 30-60 s and talk to one or two PLCs.

Benign noise the detectors must not flag: a firmware rollout to a whole type (after
which its messages grow 1.3-1.7x and each device is refused on two new topics), DHCP
changes, a sensor reconfigured to report twice as often, a gateway relaying 1.3-1.6x
more for half an hour, a gateway gaining one new internal peer, a device stuck
retrying with an expired certificate, a device refused on the same topic every
minute, single authentication and authorization failures, certificate renewals
(single re-enrollments), a handful of devices re-enrolling together and a batch
enrollment of new devices.

Attacks are meant to be hard, not obvious: rates up 3-10x (not 60x), messages 3-10x
larger, one to three new destinations, a couple of new internal peers as well as
scans, probing interleaved with normal traffic at a few seconds per topic, brute
force from one address or rotating ones, credential stuffing of many identities one
attempt each, connections from another site the type knows, firmware with a known
version's name and another hash, rollbacks to a version part of the fleet still
runs, and re-registration waves of a dozen devices.

Sections: the ground truth, the fleet and its normal day, one function per attack
kind, benign noise, and ``generate``, which puts them together. (Past STYLE.md's
~500 lines, kept one module because it is the one file the detection work owns in
``testing/``.)
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from operator import attrgetter

from iotiam.detection.models import Event, EventKind, FindingType

__all__ = ["Attack", "Scenario", "generate"]

#: Monday 2 March 2026, 12:00 UTC: controllers are at work, the evening is quiet
DEFAULT_START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
DEFAULT_DURATION = 10 * 3600.0
DEFAULT_LEARNING = 2 * 3600.0
#: attacks start this long after the learning period at the earliest
SETTLE = 1800.0

SENSOR, GATEWAY, CONTROLLER = "sensor", "gateway", "controller"


@dataclass(frozen=True)
class Attack:
    """Ground truth: what was done to whom, when."""

    id: str
    type: FindingType
    #: the device attacked or abused; None for fleet-wide attacks and for attacks on
    #: no device in particular (credential stuffing), then ``source_ip`` names them
    device_id: str | None
    start: float
    end: float
    source_ip: str | None = None
    detail: str = ""


@dataclass
class Scenario:
    """Events in time order and the attacks hidden in them."""

    seed: int
    start: float
    duration: float
    learning_seconds: float
    devices: dict[str, str]
    events: list[Event]
    attacks: list[Attack]
    noise: list[str] = field(default_factory=list)


# -- the fleet and its normal day ----------------------------------------------------------


@dataclass
class Device:
    """One simulated device and the parameters of its normal behaviour."""

    id: str
    type: str
    site: int
    ip: str
    firmware: tuple[str, str]
    period: float = 60.0
    jitter: float = 0.1
    size: float = 100.0
    size_spread: float = 0.05
    peers: list[tuple[str, int]] = field(default_factory=list)
    flow_every: float = 900.0
    day_end: float = 0.0


def image_hash(*parts: str) -> str:
    """A stand-in firmware hash: SHA-256 of the parts."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


class FleetBuilder:
    """The fleet being simulated, the events emitted so far and the ground truth."""

    def __init__(self, seed: int, devices: int, duration: float, start: float,
                 learning: float) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not secrets
        self.seed = seed
        self.start, self.end = start, start + duration
        self.learning = learning
        self.events: list[Event] = []
        self.attacks: list[Attack] = []
        self.noise: list[str] = []
        self.devices: list[Device] = []
        #: per device, times from which it reports another firmware
        self.firmware_changes: dict[str, list[tuple[float, tuple[str, str]]]] = {}
        #: per device, (start, end, factor) windows of faster publishing / bigger messages
        self.rate_windows: dict[str, tuple[float, float, float]] = {}
        self.size_windows: dict[str, tuple[float, float, float]] = {}
        self.busy: set[str] = set()
        #: devices enrolled during the scenario, and when they start
        self.newcomers: list[tuple[Device, float]] = []
        #: device -> (since, peer): a new internal peer it starts talking to
        self.new_peers: dict[str, tuple[float, tuple[str, int]]] = {}
        #: device -> its first message of a size attack
        self.first_message: dict[str, float] = {}
        self._build_fleet(devices)

    # -- the fleet ----------------------------------------------------------------------

    def _build_fleet(self, count: int) -> None:
        rng = self.rng
        self.sites = rng.randint(3, 6)
        gateways = max(4, count // 35)
        controllers = max(12, count // 7)
        sensors = max(20, count - gateways - controllers)
        self.versions: dict[str, list[tuple[str, str]]] = {}
        for kind in (SENSOR, GATEWAY, CONTROLLER):
            major, minor = rng.randint(1, 4), rng.randint(0, 9)
            old = f"{major}.{minor}.{rng.randint(0, 5)}"
            new = f"{major}.{minor + 1}.{rng.randint(0, 5)}"
            self.versions[kind] = [(old, image_hash(str(self.seed), kind, old)),
                                   (new, image_hash(str(self.seed), kind, new))]
        pool = [f"52.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{i}" for i in range(10, 14)]
        self.ntp_pool = [f"162.159.200.{i}" for i in (1, 123, 200)]
        self.cloud_pool = pool
        for i in range(sensors):
            self.devices.append(self.device(f"sensor-{i:04d}", SENSOR))
        for i in range(gateways):
            self.devices.append(self.device(f"gateway-{i:03d}", GATEWAY))
        for i in range(controllers):
            self.devices.append(self.device(f"controller-{i:03d}", CONTROLLER))

    def address(self, site: int, subnet: int | None = None) -> str:
        """A random address in a site subnet (10.site.subnet.host)."""
        rng = self.rng
        subnet = rng.randint(1, 4) if subnet is None else subnet
        return f"10.{site}.{subnet}.{rng.randint(2, 250)}"

    def device(self, device_id: str, kind: str) -> Device:
        """A new device of ``kind`` with parameters drawn for it."""
        rng = self.rng
        site = rng.randrange(self.sites)
        versions = self.versions[kind]
        firmware = versions[0] if rng.random() < 0.15 else versions[1]
        device = Device(device_id, kind, site, self.address(site), firmware)
        if kind == SENSOR:
            device.period = min(120.0, max(30.0, 60.0 * math.exp(rng.gauss(0, 0.3))))
            device.jitter = rng.uniform(0.03, 0.15)
            device.size = rng.uniform(60, 400)
            device.size_spread = rng.uniform(0.02, 0.08)
            device.flow_every = rng.uniform(600, 1200)
        elif kind == GATEWAY:
            device.period = 1.0 / rng.uniform(0.3, 0.8)
            device.size = rng.uniform(200, 2000)
            device.size_spread = rng.uniform(0.3, 0.6)
            device.peers = [(self.address(site, 0), port)
                            for port in rng.sample([502, 1883, 8883, 443, 161, 5683], 4)]
            device.flow_every = 1.0 / rng.uniform(0.05, 0.12)
        else:
            device.period = rng.uniform(30, 60)
            device.jitter = 0.2
            device.size = rng.uniform(100, 600)
            device.size_spread = 0.15
            device.peers = [(self.address(site, 0), 502) for _ in range(rng.randint(1, 2))]
            device.flow_every = 120.0
            device.day_end = self.day(rng.uniform(16.5, 18.75))
        return device

    def day(self, hour: float) -> float:
        """Epoch seconds of ``hour`` (UTC, may be fractional) on the scenario's first day."""
        midnight = self.start - self.start % 86400.0
        return midnight + hour * 3600.0

    # -- emitting -----------------------------------------------------------------------

    def emit(self, kind: EventKind, at: float, device: Device | None = None,
             **fields: object) -> None:
        """Append an event, if it falls inside the scenario."""
        if not self.start <= at < self.end:
            return
        if device is not None:
            fields.setdefault("device_id", device.id)
            fields.setdefault("device_type", device.type)
        self.events.append(Event(kind, at, **fields))  # type: ignore[arg-type]

    def firmware_at(self, device: Device, at: float) -> tuple[str, str]:
        """The (version, hash) the device runs at ``at``."""
        current = device.firmware
        for since, image in self.firmware_changes.get(device.id, ()):
            if at >= since:
                current = image
        return current

    def connect(self, device: Device, at: float, ip: str | None = None) -> None:
        """A connect event carrying the firmware the device runs then."""
        version, digest = self.firmware_at(device, at)
        self.emit(EventKind.CONNECT, at, device, source_ip=ip or device.ip,
                  client_id=device.id, firmware_version=version, firmware_hash=digest)
        self.emit(EventKind.SUBSCRIBE, at + 0.2, device, topic=f"devices/{device.id}/cmd/#",
                  qos=1)

    def simulate_normal(self) -> None:
        """Every device's normal day from the scenario start."""
        for device in self.devices:
            self.simulate(device, self.start)

    def simulate(self, device: Device, since: float) -> None:
        """One device's sessions, messages and flows from ``since``."""
        self._sessions(device, since)
        self._publishes(device, since)
        self._flows(device, since)

    def _active_until(self, device: Device) -> float:
        return device.day_end if device.type == CONTROLLER else self.end

    def _sessions(self, device: Device, since: float) -> None:
        rng = self.rng
        at = since + rng.uniform(0, 60)
        until = self._active_until(device)
        self.connect(device, at)
        while True:
            at += rng.expovariate(1 / 5400.0)
            if at >= until:
                break
            self.emit(EventKind.DISCONNECT, at, device, reason="keepalive timeout")
            if device.type == SENSOR and rng.random() < 0.3:  # DHCP: same /24
                prefix = device.ip.rsplit(".", 1)[0]
                device.ip = f"{prefix}.{rng.randint(2, 250)}"
            self.connect(device, at + rng.uniform(1, 20))
        if device.type == CONTROLLER:
            self.emit(EventKind.DISCONNECT, until, device, reason="end of shift")

    def _publishes(self, device: Device, since: float) -> None:
        rng = self.rng
        at = since + rng.uniform(0, device.period)
        until = self._active_until(device)
        topic = f"devices/{device.id}/telemetry"
        rate = self.rate_windows.get(device.id)
        size = self.size_windows.get(device.id)
        while at < until:
            factor = rate[2] if rate and rate[0] <= at < rate[1] else 1.0
            grow = size[2] if size and size[0] <= at < size[1] else 1.0
            bytes_ = device.size * grow * math.exp(rng.gauss(0, device.size_spread))
            self.emit(EventKind.PUBLISH, at, device, topic=topic, size=int(bytes_), qos=1)
            if grow > 1.0 and size and device.id not in self.first_message:
                self.first_message[device.id] = at  # the attack shows from here
            step = self._step(device, factor)
            if rate and at < rate[0] < at + step:
                # the device speeds up at the attack's start: its next message comes one
                # fast interval after its last one, not at the end of a slow one
                step = max(rate[0] - at, self._step(device, rate[2]))
            at += step

    def _step(self, device: Device, factor: float) -> float:
        if device.type == GATEWAY:  # Poisson traffic
            return self.rng.expovariate(factor / device.period)
        return device.period / factor * (1 + self.rng.uniform(-device.jitter, device.jitter))

    def _flows(self, device: Device, since: float) -> None:
        rng = self.rng
        at = since + rng.uniform(0, device.flow_every)
        until = self._active_until(device)
        while at < until:
            if device.type == SENSOR:
                self.flow(device, at, rng.choice(self.ntp_pool), 123, "udp")
            elif device.type == GATEWAY and rng.random() < 0.4:
                self.flow(device, at, rng.choice(self.cloud_pool), 443)
            else:
                peers = device.peers
                joined = self.new_peers.get(device.id)
                if joined and at >= joined[0]:
                    peers = [*peers, joined[1]]
                ip, port = rng.choice(peers)
                self.flow(device, at, ip, port)
            at += rng.expovariate(1 / device.flow_every)

    def flow(self, device: Device, at: float, ip: str, port: int,
             protocol: str = "tcp") -> None:
        """One network flow of the device."""
        self.emit(EventKind.FLOW, at, device, dst_ip=ip, dst_port=port, protocol=protocol,
                  source_ip=device.ip, src_port=self.rng.randint(32768, 60999),
                  bytes=self.rng.randint(200, 20000), packets=self.rng.randint(2, 40))

    # -- picking victims and times -------------------------------------------------------

    def victim(self, *kinds: str) -> Device:
        """A device of one of ``kinds`` not involved in anything else yet."""
        choices = [d for d in self.devices if d.type in kinds and d.id not in self.busy]
        device = self.rng.choice(choices)
        self.busy.add(device.id)
        return device

    def when(self, latest: float | None = None, earliest: float | None = None) -> float:
        """A random time for an attack (after the learning period by default)."""
        low = earliest if earliest is not None else self.start + self.learning + SETTLE
        high = latest if latest is not None else self.end - 1800.0
        return self.rng.uniform(low, high)

    def attack(self, kind: FindingType, device: Device | None, start: float, end: float,
               detail: str, source_ip: str | None = None) -> None:
        """Record the ground truth of one attack."""
        self.attacks.append(Attack(f"a{len(self.attacks) + 1:03d}-{kind.value}", kind,
                                   device.id if device else None, start, end, source_ip,
                                   detail))

    def public_ip(self) -> str:
        """A random public (attacker) address."""
        rng = self.rng
        return f"{rng.choice([45, 91, 103, 185, 193])}.{rng.randint(0, 255)}." \
               f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"


# -- attacks -------------------------------------------------------------------------------


def rate_change(b: FleetBuilder, gateway: bool) -> None:
    """A device publishing 3-10x faster for 10-30 minutes."""
    device = b.victim(GATEWAY if gateway else SENSOR)
    start = b.when()
    factor = b.rng.uniform(3, 10)
    end = start + b.rng.uniform(600, 1800)
    b.rate_windows[device.id] = (start, end, factor)
    b.attack(FindingType.RATE_CHANGE, device, start, end, f"publishes {factor:.1f}x faster")


def message_size(b: FleetBuilder, gateway: bool) -> None:
    """A device sending 3-10x larger messages for 5-20 minutes."""
    device = b.victim(GATEWAY if gateway else SENSOR)
    start = b.when()
    factor = b.rng.uniform(3, 10)
    end = start + b.rng.uniform(300, 1200)
    b.size_windows[device.id] = (start, end, factor)
    b.attack(FindingType.MESSAGE_SIZE, device, start, end, f"messages {factor:.1f}x larger")


def new_destination(b: FleetBuilder, kinds: tuple[str, ...]) -> None:
    """Flows to one to three new public addresses."""
    rng = b.rng
    device = b.victim(*kinds)
    start = b.when()
    targets = [b.public_ip() for _ in range(rng.randint(1, 3))]
    port = rng.choice([443, 8080, 4444, 53, 8443])
    at, end = start, start + rng.uniform(300, 1200)
    while at < end:
        b.flow(device, at, rng.choice(targets), port)
        at += rng.uniform(5, 60)
    b.attack(FindingType.NEW_DESTINATION, device, start, end,
             f"flows to {len(targets)} new public address(es) on port {port}")


def lateral_movement(b: FleetBuilder, kinds: tuple[str, ...]) -> None:
    """A host sweep, a port scan, or a few new internal peers."""
    rng = b.rng
    device = b.victim(*kinds)
    start = b.when()
    shape = rng.choice(["sweep", "ports", "few"])
    if shape == "sweep":
        port = rng.choice([22, 23, 502, 1883, 445])
        peers = [(b.address(device.site), port) for _ in range(rng.randint(3, 40))]
        pause = (0.5, 20.0)
    elif shape == "ports":
        host = b.address(device.site)
        peers = [(host, p) for p in rng.sample(range(1, 1024), rng.randint(3, 30))]
        pause = (0.2, 10.0)
    else:
        peers = [(b.address(device.site), rng.choice([22, 80, 443]))
                 for _ in range(rng.randint(2, 4))]
        pause = (10.0, 25.0)
    at = start
    for ip, port in peers:
        b.flow(device, at, ip, port)
        at += rng.uniform(*pause)
    b.attack(FindingType.LATERAL_MOVEMENT, device, start, at,
             f"{shape}: {len(peers)} internal peers")


def topic_probing(b: FleetBuilder) -> None:
    """Refusals on 4-30 other devices' topics, a few seconds apart."""
    rng = b.rng
    device = b.victim(SENSOR, CONTROLLER, GATEWAY)
    start = b.when(earliest=None)
    if device.type == CONTROLLER:
        start = b.when(latest=device.day_end - 900)
    others = rng.sample([d.id for d in b.devices if d is not device], 30)
    topics = [rng.choice([f"devices/{o}/cmd/set", f"devices/{o}/telemetry", f"devices/{o}/#"])
              for o in others[: rng.randint(4, 30)]]
    extra = ["$SYS/#", f"firmware/{device.type}/upload", "admin/users", "#"]
    topics[rng.randrange(len(topics)):0] = rng.sample(extra, rng.randint(0, 2))
    # half of the probes meet a grant that is too broad: subscriptions that succeed
    allowed = rng.random() < 0.5
    at = start
    for topic in topics:
        action = rng.choice(["publish", "subscribe"])
        if allowed and action == "subscribe":
            b.emit(EventKind.SUBSCRIBE, at, device, topic=topic, qos=0)
        else:
            b.emit(EventKind.AUTHZ_FAILURE, at, device, topic=topic, action=action,
                   source_ip=device.ip, reason="not authorized")
        at += rng.uniform(2, 15)
    b.attack(FindingType.TOPIC_PROBING, device, start, at,
             f"{len(topics)} refusals, {len(set(topics))} topics")


def auth_failure_burst(b: FleetBuilder) -> None:
    """Brute force from one or rotating addresses, or credential stuffing."""
    rng = b.rng
    start = b.when()
    shape = rng.choice(["brute_force", "rotating", "stuffing"])
    count = rng.randint(10, 60)
    at = start
    attacker = b.public_ip()
    if shape == "stuffing":
        for _ in range(count):
            client = f"dev-{rng.randint(0, 99999):05d}"
            b.emit(EventKind.AUTH_FAILURE, at, None, client_id=client, source_ip=attacker,
                   reason="bad username or password")
            at += rng.uniform(0.5, 5)
        b.attack(FindingType.AUTH_FAILURE_BURST, None, start, at,
                 f"credential stuffing: {count} identities", source_ip=attacker)
        return
    device = b.victim(SENSOR, GATEWAY, CONTROLLER)
    sources = [attacker] if shape == "brute_force" else [b.public_ip() for _ in range(8)]
    for _ in range(count):
        b.emit(EventKind.AUTH_FAILURE, at, device, client_id=device.id,
               source_ip=rng.choice(sources), reason="bad certificate")
        at += rng.uniform(0.5, 5)
    b.attack(FindingType.AUTH_FAILURE_BURST, device, start, at, f"{shape}: {count} attempts",
             source_ip=attacker if shape == "brute_force" else None)


def unusual_source(b: FleetBuilder) -> None:
    """A connection from a foreign network, another site or another subnet."""
    rng = b.rng
    device = b.victim(SENSOR, GATEWAY)
    start = b.when()
    shape = rng.choice(["foreign", "other_site", "other_subnet"])
    if shape == "foreign":
        ip = b.public_ip()
    elif shape == "other_site":
        ip = b.address((device.site + 1) % b.sites, rng.randint(1, 4))
    else:
        ip = b.address(device.site, rng.randint(5, 9))
    b.connect(device, start, ip)  # and subscribes to the device's commands
    end = start + rng.uniform(120, 600)
    b.emit(EventKind.DISCONNECT, end, device, source_ip=ip)
    b.attack(FindingType.UNUSUAL_SOURCE, device, start, end, f"{shape}: {ip}")


def unusual_time(b: FleetBuilder, slot: int, slots: int) -> None:
    """A controller active in the evening, when controllers are not."""
    rng = b.rng
    device = b.victim(CONTROLLER)
    earliest, latest = b.day(19.35), b.end - 1200
    width = (latest - earliest) / slots
    start = rng.uniform(earliest + slot * width, earliest + (slot + 1) * width - 60)
    b.connect(device, start)
    at, end = start + rng.uniform(2, 10), start + rng.uniform(300, 1200)
    while at < end:
        b.emit(EventKind.PUBLISH, at, device, topic=f"devices/{device.id}/telemetry",
               size=int(device.size * math.exp(rng.gauss(0, device.size_spread))), qos=1)
        at += device.period * rng.uniform(0.9, 1.3)
    b.emit(EventKind.DISCONNECT, end, device)
    b.attack(FindingType.UNUSUAL_TIME, device, start, end,
             f"active at {datetime.fromtimestamp(start, UTC):%H:%M} UTC")


def firmware_drift(b: FleetBuilder) -> None:
    """A tampered image, a rollback, or a lone unknown version."""
    rng = b.rng
    device = b.victim(SENSOR, GATEWAY)
    start = b.when()
    old, new = b.versions[device.type]
    shape = rng.choice(["tampered", "rollback", "unknown"])
    if shape == "rollback" and device.firmware == old:
        shape = "tampered"  # it already runs the older version
    if shape == "tampered":
        version = device.firmware[0]
        image = (version, image_hash("tampered", device.id, str(start)))
    elif shape == "rollback":
        image = old
    else:
        image = (f"{new[0]}-{rng.choice(['dev', 'custom', 'patched'])}{rng.randint(1, 99)}",
                 image_hash("unknown", device.id, str(start)))
    b.firmware_changes.setdefault(device.id, []).append((start, image))
    b.emit(EventKind.DISCONNECT, start - 2, device, reason="reboot")
    b.connect(device, start)
    b.attack(FindingType.FIRMWARE_DRIFT, device, start, b.end, f"{shape}: {image[0]}")


def mass_reregistration(b: FleetBuilder, start: float) -> None:
    """12-40 existing devices re-enrolling within 20-90 seconds."""
    rng = b.rng
    free = [d for d in b.devices if d.id not in b.busy]
    count = min(rng.randint(12, 40), len(free))
    spread = rng.uniform(20, 90)
    chosen = rng.sample(free, count)
    for device in chosen:
        b.emit(EventKind.ENROLL, start + rng.uniform(0, spread), device,
               source_ip=b.public_ip(), reason="re-enrollment")
    first = min(e.at for e in b.events[-count:])
    b.attack(FindingType.MASS_REREGISTRATION, None, first, start + spread,
             f"{count} existing devices re-enrolled within {spread:.0f} s")


# -- benign noise --------------------------------------------------------------------------


def rollout(b: FleetBuilder) -> None:
    """A firmware rollout to every sensor within a few minutes."""
    rng = b.rng
    kind = SENSOR
    new = b.versions[kind][1]
    version = f"{new[0].rsplit('.', 1)[0]}.{int(new[0].rsplit('.', 1)[1]) + 1}"
    image = (version, image_hash(str(b.seed), kind, version))
    start = b.when()
    spread = rng.uniform(60, 180)
    growth = rng.uniform(1.3, 1.7)
    for device in b.devices:
        if device.type != kind or device.id in b.firmware_changes:
            continue
        at = start + rng.uniform(0, spread)
        b.firmware_changes.setdefault(device.id, []).append((at, image))
        b.emit(EventKind.DISCONNECT, at - 2, device, reason="firmware update")
        b.connect(device, at)
        if device.id not in b.busy:
            # the new firmware reports more fields, and tries two topics its policy
            # does not grant yet
            b.size_windows[device.id] = (at, b.end, growth)
            for topic in ("diagnostics", "shadow/update"):
                b.emit(EventKind.AUTHZ_FAILURE, at + rng.uniform(5, 60), device,
                       topic=f"devices/{device.id}/{topic}", action="publish",
                       reason="not authorized")
    b.noise.append(f"firmware rollout of {version} to every {kind} over {spread:.0f} s; "
                   f"messages grow {growth:.2f}x, two topics refused once each")


def background_noise(b: FleetBuilder) -> None:
    """Everything else benign that looks a little like an attack."""
    rng = b.rng
    quiet = [d for d in b.devices if d.id not in b.busy]
    # single authentication failures: a device's own, and internet background
    at = b.start
    while at < b.end:
        at += rng.expovariate(1 / 600.0)
        device = rng.choice(quiet)
        b.emit(EventKind.AUTH_FAILURE, at, device, client_id=device.id, source_ip=device.ip,
               reason="certificate expired")
    at = b.start
    while at < b.end:
        at += rng.expovariate(1 / 300.0)
        source = b.public_ip()
        for _ in range(rng.randint(1, 3)):
            b.emit(EventKind.AUTH_FAILURE, at, None, client_id=f"probe{rng.randint(0, 999)}",
                   source_ip=source, reason="bad username or password")
            at += rng.uniform(1, 10)
    b.noise.append("single auth failures of devices and of internet background scanners")
    # a device retrying with an expired certificate
    stuck = rng.choice(quiet)
    b.busy.add(stuck.id)
    at = b.when()
    until = at + rng.uniform(600, 1200)
    while at < until:
        b.emit(EventKind.AUTH_FAILURE, at, stuck, client_id=stuck.id, source_ip=stuck.ip,
               reason="certificate expired")
        at += rng.uniform(20, 40)
    b.noise.append(f"{stuck.id} retries with an expired certificate every 20-40 s")
    # refused on the same topic every minute, and single refusals
    wrong = rng.choice([d for d in quiet if d.id not in b.busy])
    b.busy.add(wrong.id)
    at = b.start + rng.uniform(0, 60)
    while at < b.end:
        b.emit(EventKind.AUTHZ_FAILURE, at, wrong, topic=f"devices/{wrong.id}/config",
               action="subscribe", reason="not authorized")
        at += rng.uniform(55, 65)
    at = b.start
    while at < b.end:
        at += rng.expovariate(1 / 900.0)
        device = rng.choice(quiet)
        b.emit(EventKind.AUTHZ_FAILURE, at, device, topic=f"devices/{device.id}/shadow/get",
               action="publish", reason="not authorized")
    b.noise.append(f"{wrong.id} is refused on one topic every minute; single refusals")
    # certificate renewals: single re-enrollments
    at = b.start
    while at < b.end:
        at += rng.expovariate(1 / 1200.0)
        device = rng.choice(quiet)
        b.emit(EventKind.ENROLL, at, device, source_ip=device.ip, reason="renewal")
    b.noise.append("certificate renewals (single re-enrollments)")
    # a batch of new sensors enrolled, connecting from the fleet's sites
    at = b.when()
    size = rng.randint(8, 25)
    kind = SENSOR
    for i in range(size):
        device = b.device(f"sensor-new-{i:03d}", kind)
        device.firmware = b.versions[kind][1]
        enrolled = at + rng.uniform(0, 240)
        b.emit(EventKind.ENROLL, enrolled, device, source_ip=device.ip, reason="batch")
        b.busy.add(device.id)
        b.newcomers.append((device, enrolled + rng.uniform(5, 30)))
    b.noise.append(f"batch enrollment of {size} new sensors")
    # a sensor reconfigured to report twice as often, for good
    faster = rng.choice([d for d in quiet if d.type == SENSOR and d.id not in b.busy])
    b.busy.add(faster.id)
    b.rate_windows[faster.id] = (b.when(), b.end, 2.0)
    b.noise.append(f"{faster.id} reconfigured to report twice as often")
    # a gateway's busy spell, and a new internal peer for another
    gateways = [d for d in b.devices if d.type == GATEWAY and d.id not in b.rate_windows]
    busy = rng.choice(gateways)
    since = b.when()
    # a Poisson device's legitimate 2x surge cannot be told from a 3x attack within a
    # minute (the noise of 30-60 messages is that wide); surges here stay under 1.6x
    factor = rng.uniform(1.3, 1.6)
    b.rate_windows[busy.id] = (since, since + rng.uniform(1200, 2400), factor)
    joined = rng.choice(gateways)
    b.new_peers[joined.id] = (b.when(), (b.address(joined.site, 0), 1883))
    b.noise.append(f"{busy.id} relays {factor:.1f}x more for half an hour; "
                   f"{joined.id} gains a new internal peer")
    # a site's certificates rotated: a handful of devices re-enroll together
    at = b.when()
    wave = rng.sample([d for d in quiet if d.id not in b.busy], rng.randint(2, 4))
    for device in wave:
        b.emit(EventKind.ENROLL, at + rng.uniform(0, 120), device, source_ip=device.ip,
               reason="certificate rotation")
    b.noise.append(f"{len(wave)} devices re-enroll within 2 minutes (certificate rotation)")


# -- the scenario --------------------------------------------------------------------------


def generate(seed: int, *, devices: int = 150, duration: float = DEFAULT_DURATION,
             start: float = DEFAULT_START, learning_seconds: float = DEFAULT_LEARNING,
             attacks_per_type: int = 5) -> Scenario:
    """A fleet, its normal day, benign noise and ``attacks_per_type`` attacks of each kind."""
    if duration < learning_seconds + SETTLE + 3600:
        raise ValueError("duration must leave an hour for attacks after the learning period")
    b = FleetBuilder(seed, devices, duration, start, learning_seconds)
    n = attacks_per_type
    # one of each of the first four on a gateway (Poisson traffic, the hard case)
    makers: list[Callable[[], None]] = [
        partial(rate_change, b, gateway=True),
        partial(message_size, b, gateway=True),
        partial(new_destination, b, (GATEWAY,)),
        partial(lateral_movement, b, (GATEWAY,)),
    ]
    for i in range(n):
        if i:
            makers += [partial(rate_change, b, gateway=False),
                       partial(message_size, b, gateway=False),
                       partial(new_destination, b, (SENSOR, CONTROLLER)),
                       partial(lateral_movement, b, (SENSOR, CONTROLLER))]
        makers += [partial(topic_probing, b), partial(auth_failure_burst, b),
                   partial(unusual_source, b), partial(unusual_time, b, i, n),
                   partial(firmware_drift, b)]
    for make in makers:
        make()
    first = start + learning_seconds + SETTLE
    gap = (start + duration - 1800 - first) / n
    for i in range(n):
        mass_reregistration(b, b.rng.uniform(first + i * gap, first + (i + 1) * gap - 1200))
    rollout(b)
    background_noise(b)
    b.simulate_normal()
    for device, since in b.newcomers:
        b.devices.append(device)
        b.simulate(device, since)
    b.attacks = [replace(a, start=b.first_message[a.device_id])
                 if a.type is FindingType.MESSAGE_SIZE and a.device_id in b.first_message
                 else a for a in b.attacks]
    b.events.sort(key=attrgetter("at"))
    b.attacks.sort(key=attrgetter("start"))
    return Scenario(seed, start, duration, learning_seconds,
                    {d.id: d.type for d in b.devices}, b.events, b.attacks, b.noise)
