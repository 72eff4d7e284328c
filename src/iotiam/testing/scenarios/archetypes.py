"""Device archetypes besides sensors, gateways and controllers: parameters and their days.

* **meters** report every ~5 minutes; some go offline for 20 minutes to 3 hours and,
  right after reconnecting, flush the readings they queued meanwhile, back to back;
* **cameras** send a large snapshot every 30-60 s and a small motion event now and
  then, half of them within seconds of a snapshot (two topics, two sizes);
* **actuators** mostly receive: a heartbeat every ~15 minutes and an ack per command,
  commands coming at random and sometimes a few together (irregular timing);
* **handhelds** work a day shift of their site's local day (from 06:00, 08:00 or 10:00,
  8-9 hours, under way when the scenario starts, so the learning period sees its
  hours), with a break or two; after each connect they upload a sync 4-7x their scan
  size on the scans' topic; scans come at random.

Every draw comes from the builder's one seeded generator (see ``fleet``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from iotiam.detection.models import EventKind
from iotiam.testing.scenarios.models import Device

if TYPE_CHECKING:
    from iotiam.testing.scenarios.fleet import FleetBuilder

METER, CAMERA, ACTUATOR, HANDHELD = "meter", "camera", "actuator", "handheld"
HEARTBEAT = 900.0
SHIFT = 8 * 3600.0


def archetype(b: FleetBuilder, device_id: str, kind: str) -> Device:
    """A new device of one of the archetypes here, with parameters drawn for it."""
    rng = b.rng
    site = rng.randrange(b.sites)
    # all on the current version: a type's only device on an older one that connects
    # after the learning period is a version the type never ran (a finding, rightly)
    device = Device(device_id, kind, site, b.address(site), b.versions[kind][1])
    if kind == METER:
        device.period = rng.uniform(270, 330)
        device.jitter = 0.05
        device.size = rng.uniform(40, 160)
        if rng.random() < 0.5:
            offline = b.when()
            device.outages.append((offline, offline + rng.uniform(1200, 10800)))
    elif kind == CAMERA:
        device.period = rng.uniform(30, 60)
        device.jitter = 0.05
        device.size = rng.uniform(20_000, 80_000)
        device.size_spread = 0.1
        device.events_every = rng.uniform(300, 900)
    elif kind == ACTUATOR:
        device.period = HEARTBEAT
        device.jitter = 0.03
        device.size = rng.uniform(40, 80)
        device.events_every = rng.uniform(300, 1200)
    else:
        # a day shift under way when the scenario starts (its hours are learned), 8-9
        # hours long
        device.shift = min(rng.choice([6.0, 8.0, 10.0]), b.local_hour(device, b.start) - 1)
        device.period = rng.uniform(20, 90)
        device.size = rng.uniform(150, 400)
        device.size_spread = 0.15
        device.sync = rng.uniform(4, 7)
    return device


def average_interval(device: Device) -> float:
    """Seconds between two messages of an actuator, on average (heartbeats and acks)."""
    return 1.0 / (1.0 / HEARTBEAT + 1.3 / device.events_every)


def _publish(b: FleetBuilder, device: Device, at: float, topic: str, size: float,
             spread: float | None = None) -> None:
    grow = b.size_factor(device, at) if topic == "data" else 1.0
    bytes_ = size * grow * b.rng.lognormvariate(0, device.size_spread if spread is None
                                                else spread)
    b.emit(EventKind.PUBLISH, at, device, topic=f"devices/{device.id}/{topic}",
           size=int(bytes_), qos=1)


def _periodic(b: FleetBuilder, device: Device, since: float, until: float,
              topic: str = "data") -> list[float]:
    """Messages every ``device.period`` (faster in an attack's window); their times."""
    rng = b.rng
    times = []
    at = since + rng.uniform(0, device.period)
    rate = b.rate_windows.get(device.id)
    while at < until:
        if not any(off <= at < back for off, back in device.outages):
            _publish(b, device, at, topic, device.size)
            times.append(at)
        step = device.period / b.rate_factor(device, at) \
            * (1 + rng.uniform(-device.jitter, device.jitter))
        if rate and at < rate[0] < at + step:  # the attack starts between two messages
            step = max(rate[0] - at, device.period / rate[2])
        at += step
    return times


def _at_random(b: FleetBuilder, since: float, every: float) -> Iterator[float]:
    """Times of a Poisson process (mean ``every`` seconds apart) until the scenario ends."""
    at = since
    while True:
        at += b.rng.expovariate(1 / every)
        if at >= b.end:
            return
        yield at


def meter_day(b: FleetBuilder, device: Device, since: float) -> None:
    """Readings every ~5 minutes; after an outage, the queued ones at once."""
    rng = b.rng
    b.connect(device, since + rng.uniform(0, 60))
    _periodic(b, device, since, b.end)
    for offline, back in device.outages:
        b.emit(EventKind.DISCONNECT, offline, device, reason="keepalive timeout")
        b.connect(device, back)
        at = back + rng.uniform(0.5, 2.0)
        for _ in range(int((back - offline) / device.period)):
            _publish(b, device, at, "data", device.size)
            at += rng.uniform(0.02, 0.2)
    if device.outages:
        b.noise.append(f"{device.id} offline {device.outages[0][1] - device.outages[0][0]:.0f}"
                       " s, then flushes its queue")


def camera_day(b: FleetBuilder, device: Device, since: float) -> None:
    """Snapshots every 30-60 s; motion events, half of them next to a snapshot."""
    rng = b.rng
    b.sessions(device, since)
    snapshots = _periodic(b, device, since, b.end)
    for at in _at_random(b, since, device.events_every):
        when = at
        if rng.random() < 0.5 and snapshots:
            when = rng.choice(snapshots) + rng.uniform(0.3, 3.0)
        _publish(b, device, when, "motion", 300.0, 0.2)


def actuator_day(b: FleetBuilder, device: Device, since: float) -> None:
    """A heartbeat every ~15 minutes and an ack per command (commands at random)."""
    rng = b.rng
    b.sessions(device, since)
    _periodic(b, device, since, b.end, "state")
    for command in _at_random(b, since, device.events_every):
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
            _publish(b, device, command + rng.uniform(0.1, 1.5), "ack", 30.0, 0.1)
            command += rng.uniform(0.5, 5.0)


def handheld_day(b: FleetBuilder, device: Device, since: float) -> None:
    """A shift of the site's local day: connect, sync, scans, a break or two."""
    rng = b.rng
    start = b.local_day(device, device.shift)
    end = start + SHIFT + rng.uniform(0, 3600)
    at = max(start, since) + rng.uniform(0, 120)
    breaks = sorted(p for p in (rng.uniform(start + 1800, end - 3600)
                                for _ in range(rng.randint(1, 2))) if at + 600 < p < end - 600)
    for pause in [*breaks, end]:
        if at >= min(pause, b.end):
            break
        b.connect(device, at)
        _publish(b, device, at + rng.uniform(1, 5), "data", device.size * device.sync)
        at += rng.uniform(5, 10)
        while at < pause:
            _publish(b, device, at, "data", device.size)
            at += rng.expovariate(1 / device.period)
        b.emit(EventKind.DISCONNECT, pause, device, reason="break")
        at = pause + rng.uniform(600, 1800)


ARCHETYPES: dict[str, Callable[[FleetBuilder, Device, float], None]] = {
    METER: meter_day, CAMERA: camera_day, ACTUATOR: actuator_day, HANDHELD: handheld_day}
