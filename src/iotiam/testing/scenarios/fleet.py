"""The simulated fleet: its devices, their normal day, and the helpers attacks use.

``FleetBuilder`` holds the one seeded random generator every part of a scenario draws
from, so the order of the calls into it decides the events: keep it when editing.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from iotiam.detection.models import Event, EventKind, FindingType
from iotiam.testing.scenarios.archetypes import (
    ACTUATOR,
    ARCHETYPES,
    CAMERA,
    HANDHELD,
    METER,
    archetype,
)
from iotiam.testing.scenarios.models import Attack, Device

#: Monday 2 March 2026, 12:00 UTC: controllers are at work, the evening is quiet
DEFAULT_START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
DEFAULT_DURATION = 10 * 3600.0
DEFAULT_LEARNING = 2 * 3600.0
#: attacks start this long after the learning period at the earliest
SETTLE = 1800.0

SENSOR, GATEWAY, CONTROLLER = "sensor", "gateway", "controller"
#: the zones sites are in (the first site is always in UTC)
SITE_ZONES = ("Europe/Berlin", "Europe/Helsinki", "America/New_York", "UTC")


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
        self.zones = ["UTC"] + [rng.choice(SITE_ZONES) for _ in range(self.sites - 1)]
        gateways = max(4, count // 35)
        controllers = max(12, count // 7)
        others = {METER: max(4, count // 12), CAMERA: max(3, count // 25),
                  ACTUATOR: max(4, count // 15), HANDHELD: max(4, count // 15)}
        sensors = max(20, count - gateways - controllers - sum(others.values()))
        self.versions: dict[str, list[tuple[str, str]]] = {}
        for kind in (SENSOR, GATEWAY, CONTROLLER, *others):
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
        for kind, number in others.items():
            for i in range(number):
                self.devices.append(archetype(self, f"{kind}-{i:03d}", kind))

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
            device.day_end = self.local_day(device, rng.uniform(16.5, 18.75))
        return device

    def day(self, hour: float) -> float:
        """Epoch seconds of ``hour`` (UTC, may be fractional) on the scenario's first day."""
        midnight = self.start - self.start % 86400.0
        return midnight + hour * 3600.0

    def zone_of(self, device: Device) -> str:
        """The zone of the device's site."""
        return self.zones[device.site]

    def local_hour(self, device: Device, at: float) -> float:
        """The hour of the day (fractional) at ``at`` in the device's site zone."""
        local = datetime.fromtimestamp(at, ZoneInfo(self.zone_of(device)))
        return local.hour + local.minute / 60.0

    def local_day(self, device: Device, hour: float) -> float:
        """Epoch seconds of ``hour`` in the device's site zone on the scenario's first day."""
        offset = datetime.fromtimestamp(self.start, ZoneInfo(self.zone_of(device))).utcoffset()
        return self.day(hour) - (offset.total_seconds() if offset else 0.0)

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
        if device.type in ARCHETYPES:
            ARCHETYPES[device.type](self, device, since)
            return
        self.sessions(device, since)
        self._publishes(device, since)
        self._flows(device, since)

    def _active_until(self, device: Device) -> float:
        return device.day_end if device.type == CONTROLLER else self.end

    def sessions(self, device: Device, since: float) -> None:
        """The device's connections: reconnects every hour or two (DHCP may move it)."""
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

    def rate_factor(self, device: Device, at: float) -> float:
        """How much faster than normal the device publishes at ``at`` (an attack's)."""
        rate = self.rate_windows.get(device.id)
        return rate[2] if rate and rate[0] <= at < rate[1] else 1.0

    def size_factor(self, device: Device, at: float) -> float:
        """How much larger than normal the device's messages are at ``at``."""
        size = self.size_windows.get(device.id)
        grow = size[2] if size and size[0] <= at < size[1] else 1.0
        if grow > 1.0 and device.id not in self.first_message:
            self.first_message[device.id] = at  # the attack shows from here
        return grow

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
