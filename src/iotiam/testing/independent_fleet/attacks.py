"""The labelled attacks: ten kinds, each named with the finding type it should raise.

Every attack lands after the tuning period, on a device that is connected at the time
(the attacker rides a live identity) unless the kind says otherwise, never on a device
already under attack within the scoring window, and spread over archetypes and sites.
The label is what an analyst would file the incident under, whatever the detectors do:
a flood is messages per second, an exfiltration rides the device's own messages, a
rollback boots an image the device really ran before.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle

from iotiam.detection.models import FindingType
from iotiam.testing.independent_fleet.archetypes import Archetype, Out
from iotiam.testing.independent_fleet.devices import Device, Record, auth_failure

#: how many attacks of each kind a fleet gets
PER_KIND = 3


@dataclass(frozen=True)
class Attack:
    """One labelled attack: the finding it should raise, about whom, and when."""

    kind: str
    finding_type: str
    #: the device whose identity or traffic it uses; None for fleet or address attacks
    device_id: str | None
    #: for attacks known by an address only (credential stuffing)
    source_ip: str | None
    #: its first and last record
    start: float
    end: float


class Arena:
    """The fleet being attacked: picks targets and writes the attackers' records."""

    def __init__(self, rng: random.Random, fleet: list[Device], streams: dict[str, Out],
                 shared: Out, opens: float, closes: float) -> None:
        self.rng = rng
        self.fleet = fleet
        self.streams = streams
        self.shared = shared
        self.opens, self.closes = opens, closes
        self._busy: dict[str, list[tuple[float, float]]] = {}
        self._fleet_wide: list[float] = []
        #: devices an attack rebooted into another image: one such attack a device, since
        #: ``reboot_into`` rewrites every later record (a second attack generated at an
        #: earlier time would overwrite the first, or repeat its image and change nothing)
        self.rebooted: set[str] = set()

    def target(self, names: tuple[str, ...], lasting: float, *, tries: int = 400
               ) -> tuple[Device, float] | None:
        """A device of one of ``names`` connected throughout ``[at, at + lasting]``."""
        rng = self.rng
        kinds = cycle(rng.sample(names, len(names)))
        for _ in range(tries):
            name = next(kinds)
            candidates = [d for d in self.fleet if d.device_type == name]
            device = rng.choice(candidates)
            spans = [(max(a, self.opens), min(b, self.closes) - lasting)
                     for a, b in device.sessions]
            spans = [(a, b) for a, b in spans if b > a]
            if not spans:
                continue
            a, b = rng.choice(spans)
            at = rng.uniform(a, b)
            if self.claim(device, at, at + lasting):
                return device, at
        return None

    def claim(self, device: Device, start: float, end: float) -> bool:
        """Reserve a device for an attack, if no other attack is near."""
        spans = self._busy.setdefault(device.device_id, [])
        low, high = start - 1800.0, end + 1800.0
        if any(a < high and low < b for a, b in spans):
            return False
        spans.append((start, end))
        return True

    def claim_fleet(self, start: float) -> bool:
        """Reserve a time for a fleet-wide attack, 40 minutes clear of any other."""
        if any(abs(start - other) < 2400.0 for other in self._fleet_wide):
            return False
        self._fleet_wide.append(start)
        return True

    def archetype_of(self, name: str) -> Archetype:
        """The archetype called ``name``."""
        return next(d.archetype for d in self.fleet if d.device_type == name)

    def add(self, device: Device, at: float, record: Record) -> None:
        """One more record in the device's stream."""
        self.streams[device.device_id].append((at, record))

    def public_ip(self) -> str:
        """An address on the internet no device of the fleet talks to."""
        rng = self.rng
        return (f"{rng.choice((45, 89, 91, 103, 146, 185, 194))}.{rng.randint(1, 254)}."
                f"{rng.randint(1, 254)}.{rng.randint(1, 254)}")

    def usual_size(self, device: Device, topic: str, before: float) -> int:
        """The size of the device's last message on ``topic`` before ``before``."""
        suffix = "/" + topic
        for at, record in reversed(self.streams[device.device_id]):
            if (at < before and record["kind"] == "publish"
                    and record["topic"].endswith(suffix)):
                return int(record["size"])
        return int(device.archetype.size)

    def spread(self, start: float, count: int, over: float) -> list[float]:
        """``count`` times from ``start`` over ``over`` seconds, the first at ``start``."""
        return [start, *sorted(start + self.rng.uniform(0.0, over) for _ in range(count - 1))]


EVERY = ("meter", "camera", "gateway", "actuator", "handheld", "terminal")


def flood(arena: Arena) -> Attack | None:
    """Messages per second from a device that sends a few an hour or a minute."""
    picked = arena.target(EVERY, 600.0)
    if picked is None:
        return None
    device, start = picked
    rng = arena.rng
    gap = math.exp(rng.uniform(math.log(0.1), math.log(3.0)))
    size = arena.usual_size(device, device.archetype.topic, start)
    at, last, until = start, start, start + min(rng.uniform(300.0, 600.0), 800 * gap)
    while at < until:
        arena.add(device, at, device.publish(at, device.archetype.topic,
                                             int(size * rng.uniform(0.95, 1.05))))
        last = at
        at += gap * rng.uniform(0.7, 1.3)
    return Attack("flood", FindingType.RATE_CHANGE, device.device_id, None, start, last)


def exfiltration(arena: Arena) -> Attack | None:
    """The device's own messages, at their own pace, carrying 5-60x their usual size."""
    rng = arena.rng
    count = rng.randint(3, 6)
    name = rng.choice(EVERY)
    picked = arena.target((name,), (count + 1) * arena.archetype_of(name).interval * 1.5)
    if picked is None:
        return None
    device, start = picked
    suffix = "/" + device.archetype.topic
    stream = arena.streams[device.device_id]
    carriers = [record for at, record in stream
                if at >= start and record["kind"] == "publish"
                and record["topic"].endswith(suffix)][:count]
    if len(carriers) < count:
        return None
    factor = math.exp(rng.uniform(math.log(5.0), math.log(60.0)))
    for record in carriers:
        record["size"] = int(record["size"] * factor)
    return Attack("exfiltration", FindingType.MESSAGE_SIZE, device.device_id, None,
                  float(carriers[0]["ts"]), float(carriers[-1]["ts"]))


def new_destination(arena: Arena) -> Attack | None:
    """Flows to an internet address no device of the fleet ever used (a C2, a drop)."""
    picked = arena.target(EVERY, 300.0)
    if picked is None:
        return None
    device, start = picked
    rng = arena.rng
    address, port = arena.public_ip(), rng.choice((443, 4444, 8443, 1337, 8080))
    times = arena.spread(start, rng.randint(1, 5), 300.0)
    for at in times:
        arena.add(device, at, device.flow(at, address, port, size=rng.randint(2_000, 500_000),
                                          packets=rng.randint(10, 400),
                                          src_port=rng.randint(32768, 60999)))
    return Attack("new_destination", FindingType.NEW_DESTINATION, device.device_id, None,
                  start, times[-1])


def lateral_movement(arena: Arena) -> Attack | None:
    """Connections to internal hosts the device never talks to: a few (SSH, SMB, RDP)
    or a scan of many."""
    picked = arena.target(EVERY, 180.0)
    if picked is None:
        return None
    device, start = picked
    rng = arena.rng
    site = device.site
    usual = {(address, port) for _, address, port in device.peers}
    scan = rng.random() < 0.5
    wanted = rng.randint(12, 120) if scan else rng.randint(3, 6)
    ports = (22, 23, 80, 443, 445, 502, 1883, 3389, 8080)
    targets: list[tuple[str, int]] = []
    while len(targets) < wanted:
        peer = (site.address(rng.choice((10, 20, 30, 40, 50, 60)), rng.randint(2, 254)),
                rng.choice(ports[:3] if scan else (22, 445, 3389, 23)))
        if peer not in usual and peer not in targets:
            targets.append(peer)
    times = arena.spread(start, len(targets),
                         rng.uniform(20.0, 120.0) if scan else rng.uniform(5.0, 60.0))
    for at, (address, port) in zip(times, targets, strict=True):
        arena.add(device, at, device.flow(at, address, port, size=rng.randint(60, 300),
                                          packets=rng.randint(1, 3),
                                          src_port=rng.randint(32768, 60999)))
    return Attack("lateral_movement", FindingType.LATERAL_MOVEMENT, device.device_id, None,
                  start, times[-1])


def topic_probing(arena: Arena) -> Attack | None:
    """Publishes and subscriptions aimed at other devices' topics and at the broker's."""
    picked = arena.target(EVERY, 150.0)
    if picked is None:
        return None
    device, start = picked
    rng = arena.rng
    others = rng.sample([d.device_id for d in arena.fleet if d is not device], 12)
    candidates = [("#", "subscribe"), ("$SYS/#", "subscribe"),
                  ("devices/+/cmd/#", "subscribe"), ("devices/+/telemetry", "subscribe")]
    for other in others:
        candidates += [(f"devices/{other}/cmd/set", "publish"),
                       (f"devices/{other}/#", "subscribe")]
    chosen = rng.sample(candidates, rng.randint(5, 25))
    # a script: from one to five topics a second
    times = arena.spread(start, len(chosen), len(chosen) / rng.uniform(0.2, 1.0) / 5)
    for at, (topic, action) in zip(times, chosen, strict=True):
        if topic == "devices/+/telemetry" and rng.random() < 0.5:
            arena.add(device, at, device.subscribe(at, topic))  # a grant too broad
        else:
            arena.add(device, at, device.refused(at, topic, action))
    return Attack("topic_probing", FindingType.TOPIC_PROBING, device.device_id, None,
                  start, times[-1])


def credential_stuffing(arena: Arena) -> Attack:
    """One internet address trying many client ids, real and made up, several a second."""
    rng = arena.rng
    address = arena.public_ip()
    start = rng.uniform(arena.opens, arena.closes - 600.0)
    attempts = rng.randint(30, 300)
    known = [d.device_id for d in arena.fleet]
    at, last = start, start
    rate = rng.uniform(0.5, 10.0)
    for _ in range(attempts):
        made_up = ("admin", "test", "iot", "mqtt", f"dev-{rng.randint(0, 99999):05d}",
                   f"meter-{rng.randint(5000, 9999):04d}")
        client = rng.choice(known) if rng.random() < 0.5 else rng.choice(made_up)
        arena.shared.append((at, auth_failure(at, client, address, "bad username or password")))
        last = at
        at += rng.expovariate(rate)
    return Attack("credential_stuffing", FindingType.AUTH_FAILURE_BURST, None, address,
                  start, last)


def foreign_network(arena: Arena) -> Attack | None:
    """The device's identity connecting from the internet or another site's network."""
    picked = arena.target(EVERY, 300.0)
    if picked is None:
        return None
    device, start = picked
    rng = arena.rng
    if rng.random() < 0.6:
        address = arena.public_ip()
    else:
        elsewhere = rng.choice([d.site for d in arena.fleet if d.site is not device.site])
        address = elsewhere.address(rng.choice((10, 20, 30, 40, 50)), rng.randint(2, 254))
    arena.add(device, start, device.connect(start, source_ip=address))
    arena.add(device, start + 0.3, device.subscribe(start + 0.3,
                                                    f"devices/{device.device_id}/cmd/#"))
    leave = start + rng.uniform(60.0, 300.0)
    arena.add(device, leave, device.disconnect(leave, "client disconnected"))
    return Attack("foreign_network", FindingType.UNUSUAL_SOURCE, device.device_id, address,
                  start, leave)


def unusual_hour(arena: Arena) -> Attack | None:
    """A working-hours device used in the middle of its site's night."""
    rng = arena.rng
    candidates = [d for d in arena.fleet if d.archetype.working_hours_only
                  and d.joined < arena.opens - 86400.0]
    for _ in range(200):
        device = rng.choice(candidates)
        days = device.site.days(arena.opens, arena.closes)
        start = device.site.at_local(rng.choice(days), rng.uniform(1.0, 4.5))
        if not arena.opens <= start <= arena.closes - 900.0:
            continue
        if any(a - 3600.0 < start < b + 3600.0 for a, b in device.sessions):
            continue
        if not arena.claim(device, start, start + 900.0):
            continue
        arena.add(device, start, device.connect(start, source_ip=device.address_at(start)))
        arena.add(device, start + 0.4, device.subscribe(start + 0.4,
                                                        f"devices/{device.device_id}/cmd/#"))
        size = arena.usual_size(device, device.archetype.topic, start)
        at = start
        for _ in range(rng.randint(3, 8)):
            at += rng.uniform(20.0, 120.0)
            arena.add(device, at, device.publish(at, device.archetype.topic,
                                                 int(size * rng.uniform(0.9, 1.1))))
        at += rng.uniform(5.0, 60.0)
        arena.add(device, at, device.disconnect(at, "client disconnected"))
        return Attack("unusual_hour", FindingType.UNUSUAL_TIME, device.device_id, None,
                      start, at)
    return None


def reboot_into(arena: Arena, device: Device, at: float, image: tuple[str, str]) -> None:
    """The device restarts at ``at`` running ``image``, and keeps running it."""
    rng = arena.rng
    down = at - rng.uniform(20.0, 90.0)
    stream = arena.streams[device.device_id]
    stream[:] = [(t, r) for t, r in stream if not down < t < at]
    arena.rebooted.add(device.device_id)
    for t, record in stream:
        if t > at and "firmware_hash" in record:
            record["firmware_version"], record["firmware_hash"] = image
    arena.add(device, down, device.disconnect(down, "client disconnected"))
    arena.add(device, at, device.connect(at, image=image))
    later = at + rng.uniform(5.0, 30.0)
    arena.add(device, later, device.attestation(later, image=image))


def firmware_tamper(arena: Arena) -> Attack | None:
    """The version the device runs, with an image that is not the vendor's."""
    picked = arena.target(EVERY, 120.0)
    if picked is None:
        return None
    device, start = picked
    if device.device_id in arena.rebooted:
        return None
    version, _ = device.image_at(start)
    forged = hashlib.sha256(arena.rng.randbytes(16)).hexdigest()
    reboot_into(arena, device, start, (version, forged))
    return Attack("firmware_tamper", FindingType.FIRMWARE_DRIFT, device.device_id, None,
                  start, start)


def firmware_rollback(arena: Arena) -> Attack | None:
    """Back to an older (vulnerable) image the device really ran before."""
    for _ in range(50):
        picked = arena.target(EVERY, 120.0)
        if picked is None:
            return None
        device, start = picked
        if device.device_id in arena.rebooted:
            continue
        versions = device.archetype.versions
        current, _ = device.image_at(start)
        ran = [(version, digest) for (since, version, digest), until
               in zip(device.images, [*(i[0] for i in device.images[1:]), start], strict=True)
               if since < start and versions.index(version) < versions.index(current)
               and any(a < until and since < b for a, b in device.sessions)]
        if ran:
            reboot_into(arena, device, start, ran[0])
            return Attack("firmware_rollback", FindingType.FIRMWARE_DRIFT, device.device_id,
                          None, start, start)
    return None


def mass_reregistration(arena: Arena) -> Attack | None:
    """Many existing identities enrolled again within a minute or two, from one place."""
    rng = arena.rng
    start = rng.uniform(arena.opens, arena.closes - 300.0)
    if not arena.claim_fleet(start):
        return None
    existing = [d for d in arena.fleet if d.joined < start and (d.left or 1e18) > start]
    victims = rng.sample(existing, min(len(existing), rng.randint(8, 25)))
    address = arena.public_ip() if rng.random() < 0.5 else victims[0].site.address(
        rng.choice((10, 20, 30, 40)), rng.randint(2, 254))
    times = arena.spread(start, len(victims), rng.uniform(20.0, 100.0))
    for at, device in zip(times, victims, strict=True):
        arena.add(device, at, device.enroll(at, "reenroll", source_ip=address))
    return Attack("mass_reregistration", FindingType.MASS_REREGISTRATION, None, None,
                  start, times[-1])


PLAYBOOK: tuple[Callable[[Arena], Attack | None], ...] = (
    flood, exfiltration, new_destination, lateral_movement, topic_probing,
    credential_stuffing, foreign_network, unusual_hour, firmware_tamper, firmware_rollback,
    mass_reregistration)
#: every attack kind, in the order of the detector table
KINDS = tuple(attack.__name__ for attack in PLAYBOOK)


def launch(rng: random.Random, fleet: list[Device], streams: dict[str, Out], shared: Out,
           opens: float, closes: float) -> list[Attack]:
    """``PER_KIND`` attacks of every kind between ``opens`` and ``closes``."""
    arena = Arena(rng, fleet, streams, shared, opens + 1800.0, closes - 1800.0)
    attacks = []
    for attack in PLAYBOOK:
        made = 0
        for _ in range(PER_KIND * 20):
            if made == PER_KIND:
                break
            found = attack(arena)
            if found is not None:
                attacks.append(found)
                made += 1
    for stream in streams.values():
        stream.sort(key=lambda item: item[0])
    return attacks
