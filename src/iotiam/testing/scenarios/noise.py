"""Benign noise: what a real fleet does that looks a little like an attack."""

from __future__ import annotations

from iotiam.detection.models import EventKind
from iotiam.testing.scenarios.fleet import GATEWAY, SENSOR, FleetBuilder, image_hash
from iotiam.testing.scenarios.models import Device


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
        if device.id in b.busy:
            # an attack's victim: its attack's connects were drawn with the firmware it
            # ran then, before this rollout existed
            continue
        b.firmware_changes.setdefault(device.id, []).append((at, image))
        b.emit(EventKind.DISCONNECT, at - 2, device, reason="firmware update")
        b.connect(device, at)
        # the new firmware reports more fields, and tries two topics its policy does
        # not grant yet
        b.size_windows[device.id] = (at, b.end, growth)
        for topic in ("diagnostics", "shadow/update"):
            b.emit(EventKind.AUTHZ_FAILURE, at + rng.uniform(5, 60), device,
                   topic=f"devices/{device.id}/{topic}", action="publish",
                   reason="not authorized")
    b.noise.append(f"firmware rollout of {version} to every {kind} over {spread:.0f} s; "
                   f"messages grow {growth:.2f}x, two topics refused once each")


def background_noise(b: FleetBuilder) -> None:
    """Everything else benign that looks a little like an attack."""
    quiet = [d for d in b.devices if d.id not in b.busy]
    # the order matters: each step draws from the one seeded random generator
    _single_auth_failures(b, quiet)
    _expired_certificate_retries(b, quiet)
    _refused_topics(b, quiet)
    _renewals(b, quiet)
    _new_sensor_batch(b)
    _faster_sensor(b, quiet)
    _busy_gateways(b)
    _rotation_wave(b, quiet)


def _single_auth_failures(b: FleetBuilder, quiet: list[Device]) -> None:
    """Single authentication failures: a device's own, and internet background."""
    rng = b.rng
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


def _expired_certificate_retries(b: FleetBuilder, quiet: list[Device]) -> None:
    """A device retrying with an expired certificate."""
    rng = b.rng
    stuck = rng.choice(quiet)
    b.busy.add(stuck.id)
    at = b.when()
    until = at + rng.uniform(600, 1200)
    while at < until:
        b.emit(EventKind.AUTH_FAILURE, at, stuck, client_id=stuck.id, source_ip=stuck.ip,
               reason="certificate expired")
        at += rng.uniform(20, 40)
    b.noise.append(f"{stuck.id} retries with an expired certificate every 20-40 s")


def _refused_topics(b: FleetBuilder, quiet: list[Device]) -> None:
    """Refused on the same topic every minute, and single refusals."""
    rng = b.rng
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


def _renewals(b: FleetBuilder, quiet: list[Device]) -> None:
    """Certificate renewals: single re-enrollments."""
    rng = b.rng
    at = b.start
    while at < b.end:
        at += rng.expovariate(1 / 1200.0)
        device = rng.choice(quiet)
        b.emit(EventKind.ENROLL, at, device, source_ip=device.ip, reason="renewal")
    b.noise.append("certificate renewals (single re-enrollments)")


def _new_sensor_batch(b: FleetBuilder) -> None:
    """A batch of new sensors enrolled, connecting from the fleet's sites."""
    rng = b.rng
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


def _faster_sensor(b: FleetBuilder, quiet: list[Device]) -> None:
    """A sensor reconfigured to report twice as often, for good."""
    candidates = [d for d in quiet if d.type == SENSOR and d.id not in b.busy]
    if not candidates:  # a small fleet's sensors are all busy with other noise already
        return
    faster = b.rng.choice(candidates)
    b.busy.add(faster.id)
    b.rate_windows[faster.id] = (b.when(), b.end, 2.0)
    b.noise.append(f"{faster.id} reconfigured to report twice as often")


def _busy_gateways(b: FleetBuilder) -> None:
    """A gateway's busy spell, and a new internal peer for another."""
    rng = b.rng
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


def _rotation_wave(b: FleetBuilder, quiet: list[Device]) -> None:
    """A site's certificates rotated: a handful of devices re-enroll together."""
    rng = b.rng
    at = b.when()
    wave = rng.sample([d for d in quiet if d.id not in b.busy], rng.randint(2, 4))
    for device in wave:
        b.emit(EventKind.ENROLL, at + rng.uniform(0, 120), device, source_ip=device.ip,
               reason="certificate rotation")
    b.noise.append(f"{len(wave)} devices re-enroll within 2 minutes (certificate rotation)")
