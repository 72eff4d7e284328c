"""One function per attack kind: each picks a victim and a time, emits the attack's
events into the builder and records its ground truth."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from iotiam.detection.models import EventKind, FindingType
from iotiam.testing.scenarios.archetypes import ACTUATOR, average_interval
from iotiam.testing.scenarios.fleet import CONTROLLER, GATEWAY, SENSOR, FleetBuilder, image_hash


def rate_change(b: FleetBuilder, gateway: bool) -> None:
    """A device publishing 3-10x faster for 10-30 minutes."""
    device = b.victim(GATEWAY if gateway else SENSOR)
    start = b.when()
    factor = b.rng.uniform(3, 10)
    end = start + b.rng.uniform(600, 1800)
    b.rate_windows[device.id] = (start, end, factor)
    b.attack(FindingType.RATE_CHANGE, device, start, end, f"publishes {factor:.1f}x faster")


def flood(b: FleetBuilder) -> None:
    """An actuator (heartbeat every 15 minutes, an ack per command) flooding 50-120x its
    average rate for 5-15 minutes."""
    rng = b.rng
    device = b.victim(ACTUATOR)
    start = b.when()
    factor = rng.uniform(50, 120)
    step = average_interval(device) / factor
    at, end = start, start + rng.uniform(300, 900)
    while at < end:
        b.emit(EventKind.PUBLISH, at, device, topic=f"devices/{device.id}/ack",
               size=int(30 * rng.lognormvariate(0, 0.1)), qos=1)
        at += step * rng.uniform(0.8, 1.2)
    b.attack(FindingType.RATE_CHANGE, device, start, end,
             f"floods {factor:.0f}x its average rate")


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
    """A controller active in its site's evening, when controllers there are not."""
    rng = b.rng
    evening = [d for d in b.devices if d.type == CONTROLLER and d.id not in b.busy
               and b.local_day(d, 19.35) < b.end - 3600]
    device = rng.choice(evening)
    b.busy.add(device.id)
    earliest, latest = b.local_day(device, 19.35), b.end - 1200
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
             f"active at {datetime.fromtimestamp(start, ZoneInfo(b.zone_of(device))):%H:%M} "
        f"{b.zone_of(device)}")


def firmware_drift(b: FleetBuilder) -> None:
    """A tampered image, a rollback, or a lone unknown version."""
    rng = b.rng
    device = b.victim(SENSOR, GATEWAY)
    start = b.when()
    old, new = b.versions[device.type]
    shape = rng.choice(["tampered", "rollback", "rollback", "unknown"])
    if shape == "rollback" and device.firmware == old:
        shape = "tampered"  # it already runs the older version
    elif shape == "rollback" and rng.random() < 0.5:
        # back to a signed version it really ran: it was updated earlier today
        device.firmware = old
        updated = rng.uniform(b.start + 600, start - 1800)
        b.firmware_changes.setdefault(device.id, []).append((updated, new))
        b.emit(EventKind.DISCONNECT, updated - 2, device, reason="firmware update")
        b.connect(device, updated)
        shape = "rollback to a version it ran"
    if shape == "tampered":
        version = device.firmware[0]
        image = (version, image_hash("tampered", device.id, str(start)))
    elif shape.startswith("rollback"):
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
