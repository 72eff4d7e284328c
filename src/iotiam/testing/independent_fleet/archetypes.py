"""Device archetypes: the rhythm of each kind of device, written from what such devices do.

Each archetype turns one online session of a planned device into records: its own
messages, the flows a flow exporter sees for it (DNS to the site resolver, NTP, its
vendor cloud, its PLCs), and what it does after an outage. When a device is powered
and working is the archetype's business too (``windows``): meters run around the clock,
handhelds only in the local shift hours of their site.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from iotiam.testing.independent_fleet.devices import Device, Record

Out = list[tuple[float, Record]]
HOUR = 3600.0


def jittered(start: float, end: float, period: float, jitter: float,
             rng: random.Random) -> Iterator[float]:
    """A timer's ticks in ``[start, end)``: ``period`` apart, each off by ``jitter`` (sd)."""
    at = start + rng.uniform(1.0, period)
    while at < end:
        yield at
        at += max(period + rng.gauss(0.0, jitter), period / 4)


def poisson(start: float, end: float, rate_per_hour: float, rng: random.Random,
            weight: Callable[[float], float] | None = None) -> Iterator[float]:
    """Arrivals in ``[start, end)``; ``weight(at) -> 0..1`` thins a rate that changes."""
    if rate_per_hour <= 0:
        return
    at = start
    while True:
        at += rng.expovariate(rate_per_hour / HOUR)
        if at >= end:
            return
        if weight is None or rng.random() < weight(at):
            yield at


class Archetype:
    """What every archetype has; subclasses give their traffic."""

    name = ""
    #: third octet of its VLAN at every site
    vlan = 0
    #: addresses in its DHCP scope (a /24 holds ~200 usable leases, Wi-Fi /22s ~1000)
    scope = 200
    versions: tuple[str, ...] = ()
    #: its vendor cloud's public addresses (DNS round robin among them)
    cloud: tuple[str, ...] = ()
    #: the topic of its main messages and their usual spacing and size
    topic = "telemetry"
    interval = 300.0
    size = 200.0
    #: powered only in working hours (whose local hours it never runs outside)
    working_hours_only = False

    def windows(self, device: Device, start: float, end: float,
                rng: random.Random) -> list[tuple[float, float]]:
        """When it is powered and working; 24/7 unless the archetype says otherwise."""
        return [(max(start, device.joined), min(end, device.left or end))]

    def on_connect(self, device: Device, at: float, rng: random.Random, out: Out) -> None:
        """What it does right after CONNECT: subscribe to its command topic."""
        when = at + rng.uniform(0.05, 0.4)
        out.append((when, device.subscribe(when, f"devices/{device.device_id}/cmd/#")))

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        """Its messages during one session."""
        raise NotImplementedError

    def after_outage(self, device: Device, at: float, missed: float, rng: random.Random,
                     out: Out) -> None:
        """What it sends on reconnecting after ``missed`` seconds offline."""

    def flows(self, device: Device, start: float, end: float, rng: random.Random,
              out: Out) -> None:
        """DNS, NTP and its vendor cloud, as the site's flow exporter sees them."""
        site = device.site
        for at in poisson(start, end, 3.0, rng):
            out.append((at, device.flow(at, site.resolver, 53, protocol="udp",
                                        size=rng.randint(120, 400), packets=2,
                                        src_port=rng.randint(32768, 60999))))
        for at in jittered(start, end, HOUR, 120.0, rng):
            out.append((at, device.flow(at, site.ntp_server, 123, protocol="udp", size=152,
                                        packets=2, src_port=123)))
        if self.cloud:
            for at in poisson(start, end, 6.0, rng):
                out.append((at, device.flow(
                    at, rng.choice(self.cloud), rng.choice((443, 8883)),
                    size=int(rng.lognormvariate(math.log(40_000), 0.8)),
                    packets=rng.randint(20, 400), src_port=rng.randint(32768, 60999))))

    def daytime(self, device: Device, at: float) -> tuple[int, bool]:
        """Local hour and whether it is a weekday at the device's site."""
        local = device.site.local(at)
        return local.hour, local.weekday() < 5


class Meter(Archetype):
    """A utility meter: a reading every five minutes, around the clock; it buffers
    readings while the network is down and sends them all on reconnecting."""

    name = "meter"
    vlan = 10
    versions = ("3.1.0", "3.2.0", "3.3.0")
    interval = 300.0
    size = 180.0

    def reading_size(self, device: Device, at: float, rng: random.Random) -> int:
        # each firmware generation added fields to the reading
        grown = 1.0 + 0.3 * device.generation_at(at)
        return int(self.size * device.scale * grown) + rng.randint(-8, 8)

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        for at in jittered(start, end, self.interval, 3.0, rng):
            out.append((at, device.publish(at, self.topic, self.reading_size(device, at, rng))))

    def after_outage(self, device: Device, at: float, missed: float, rng: random.Random,
                     out: Out) -> None:
        when = at + rng.uniform(0.5, 3.0)
        for _ in range(min(int(missed // self.interval), 288)):
            out.append((when, device.publish(when, self.topic,
                                              self.reading_size(device, when, rng))))
            when += rng.uniform(0.02, 0.15)


class Camera(Archetype):
    """A camera: a snapshot every two minutes, larger by day, and a motion event with its
    own snapshot right beside it whenever something moves (more by day, on weekdays)."""

    name = "camera"
    vlan = 20
    versions = ("5.0.2", "5.1.0", "5.2.1")
    cloud = ("52.29.140.17", "52.29.140.18", "3.120.33.9")
    topic = "snapshot"
    interval = 120.0
    size = 120_000.0

    def snapshot_size(self, device: Device, at: float, rng: random.Random) -> int:
        hour, _ = self.daytime(device, at)
        mean = 150_000 if 8 <= hour < 17 else 90_000  # grey infrared images at night
        return int(rng.lognormvariate(math.log(mean * device.scale), 0.2))

    def motion_weight(self, device: Device, at: float) -> float:
        hour, weekday = self.daytime(device, at)
        busy = 1.0 if 7 <= hour < 19 else 0.12
        return busy if weekday else busy * 0.4

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        for at in jittered(start, end, self.interval, 2.0, rng):
            out.append((at, device.publish(at, self.topic,
                                           self.snapshot_size(device, at, rng), qos=0)))
        for at in poisson(start, end, 10.0, rng, lambda t: self.motion_weight(device, t)):
            events = [at]
            while rng.random() < 0.3:
                events.append(events[-1] + rng.uniform(5.0, 40.0))
            for when in events:
                if when >= end:
                    break
                out.append((when, device.publish(when, "motion", rng.randint(90, 140))))
                shot = when + rng.uniform(0.05, 1.5)
                out.append((shot, device.publish(shot, self.topic,
                                                 self.snapshot_size(device, shot, rng),
                                                 qos=0)))

    def after_outage(self, device: Device, at: float, missed: float, rng: random.Random,
                     out: Out) -> None:
        when = at + rng.uniform(1.0, 5.0)
        out.append((when, device.publish(when, "status", rng.randint(250, 350))))


class Gateway(Archetype):
    """A plant gateway: polls its PLCs (Modbus, S7, EtherNet/IP) and forwards a summary
    every minute to the broker; it stores and forwards what it could not send."""

    name = "gateway"
    vlan = 30
    versions = ("2.8.4", "2.9.0", "3.0.0")
    cloud = ("20.50.2.12", "20.50.2.40", "40.113.8.9")
    interval = 60.0
    size = 1_600.0

    def summary_size(self, device: Device, at: float, rng: random.Random) -> int:
        grown = 1.0 + 0.1 * device.generation_at(at)
        return int(rng.lognormvariate(math.log(self.size * device.scale * grown), 0.15))

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        for at in jittered(start, end, self.interval, 1.5, rng):
            out.append((at, device.publish(at, self.topic, self.summary_size(device, at, rng))))
        for at in poisson(start, end, 0.5, rng):
            out.append((at, device.publish(at, "alarm", rng.randint(150, 260))))
        for since, address, port in device.peers:
            # the flow exporter's active timeout: one record per peer every five minutes
            for at in jittered(max(start, since), end, 300.0, 2.0, rng):
                out.append((at, device.flow(at, address, port,
                                            size=rng.randint(4_000, 40_000),
                                            packets=rng.randint(40, 300),
                                            src_port=rng.randint(32768, 60999))))

    def after_outage(self, device: Device, at: float, missed: float, rng: random.Random,
                     out: Out) -> None:
        when = at + rng.uniform(0.5, 2.0)
        for _ in range(min(int(missed // self.interval), 1440)):
            out.append((when, device.publish(when, self.topic,
                                              self.summary_size(device, when, rng))))
            when += rng.uniform(0.01, 0.04)


class Actuator(Archetype):
    """A valve or relay: mostly receives; a heartbeat every 15 minutes and an ack (then a
    state report) per command, commands coming by day and sometimes as a scene."""

    name = "actuator"
    vlan = 40
    versions = ("1.4.0", "1.5.0", "1.6.2")
    topic = "heartbeat"
    interval = 900.0
    size = 56.0

    def command_weight(self, device: Device, at: float) -> float:
        hour, weekday = self.daytime(device, at)
        return 1.0 if weekday and 7 <= hour < 19 else 0.1

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        for at in jittered(start, end, self.interval, 20.0, rng):
            out.append((at, device.publish(at, self.topic, rng.randint(48, 64))))
        for at in poisson(start, end, 3.0, rng, lambda t: self.command_weight(device, t)):
            commands = [at]
            if rng.random() < 0.2:  # a scene: several commands at once
                for _ in range(rng.randint(2, 5)):
                    commands.append(commands[-1] + rng.uniform(0.5, 2.0))
            for when in commands:
                ack = when + rng.uniform(0.05, 0.4)
                state = ack + rng.uniform(0.3, 1.2)
                if state < end:
                    out.append((ack, device.publish(ack, "ack", rng.randint(36, 44))))
                    out.append((state, device.publish(state, "state", rng.randint(80, 110))))

    def after_outage(self, device: Device, at: float, missed: float, rng: random.Random,
                     out: Out) -> None:
        when = at + rng.uniform(0.5, 2.0)
        out.append((when, device.publish(when, "state", rng.randint(80, 110))))


class Handheld(Archetype):
    """A warehouse scanner: only in its worker's shift (early 06-14 or late 14-22, local),
    on weekdays and, at some sites, Saturday mornings; a new Wi-Fi lease every shift; a
    sync upload of 4-7 scans' size at shift start, then scans in bursts, a lunch break,
    now and then overtime, and days the worker is away."""

    name = "handheld"
    vlan = 64
    scope = 1000
    versions = ("7.0.1", "7.1.0", "7.2.0")
    topic = "scan"
    interval = 60.0
    size = 320.0
    working_hours_only = True

    def windows(self, device: Device, start: float, end: float,
                rng: random.Random) -> list[tuple[float, float]]:
        site = device.site
        spans = []
        for day in site.days(start, end):
            saturday = day.weekday() == 5
            if not site.works_on(day) or (saturday and device.shift == 1):
                continue
            if rng.random() < 0.08:  # the worker is away
                continue
            begin = site.at_local(day, 6.0 + 8.0 * device.shift) + rng.gauss(0.0, 420.0)
            length = 8 * HOUR if not saturday else 5 * HOUR
            if rng.random() < 0.05:
                length += rng.uniform(0.25, 1.0) * HOUR  # overtime
            finish = begin + length + rng.gauss(0.0, 300.0)
            begin, finish = max(begin, start, device.joined), min(finish, end,
                                                                  device.left or end)
            if finish - begin > 600:
                device.leases.append((begin - 30.0, device.site.address(
                    self.vlan, rng.randint(10, self.scope))))
                spans.append((begin, finish))
        device.leases.sort()
        return spans

    def on_connect(self, device: Device, at: float, rng: random.Random, out: Out) -> None:
        super().on_connect(device, at, rng, out)
        when = at + rng.uniform(0.5, 1.0)
        out.append((when, device.subscribe(when, "fleet/handheld/announce", qos=0)))

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        scan = self.size * device.scale
        sync = start + rng.uniform(3.0, 20.0)
        if sync < end:
            out.append((sync, device.publish(sync, "sync", int(scan * rng.uniform(4.0, 7.0)))))
        local = device.site.local(start)
        lunch = start + (4.0 - (local.minute / 60.0)) * HOUR
        at = sync
        while True:
            at += rng.uniform(2.0, 8.0) if rng.random() < 0.3 else rng.expovariate(1 / 70.0)
            if lunch <= at < lunch + 1800:
                at = lunch + 1800 + rng.uniform(0, 120)
            if at >= end:
                break
            out.append((at, device.publish(at, self.topic,
                                           int(scan * rng.uniform(0.85, 1.15)))))


class Terminal(Archetype):
    """A store terminal: switched on in opening hours (weekdays 07-19, Saturdays 09-14,
    local), a status every two minutes and a message per transaction, busiest at noon;
    its firmware asks for a legacy config topic at every start, which the ACL refuses."""

    name = "terminal"
    vlan = 50
    versions = ("4.2.0", "4.3.1", "4.4.0")
    topic = "status"
    interval = 120.0
    size = 225.0
    working_hours_only = True

    def windows(self, device: Device, start: float, end: float,
                rng: random.Random) -> list[tuple[float, float]]:
        site = device.site
        spans = []
        for day in site.days(start, end):
            weekday = day.weekday()
            if weekday == 6:
                continue
            opening, closing = (7.0, 19.0) if weekday < 5 else (9.0, 14.0)
            begin = site.at_local(day, opening) + rng.uniform(-600.0, 300.0)
            finish = site.at_local(day, closing) + rng.uniform(-300.0, 900.0)
            begin, finish = max(begin, start, device.joined), min(finish, end,
                                                                  device.left or end)
            if finish - begin > 600:
                spans.append((begin, finish))
        return spans

    def on_connect(self, device: Device, at: float, rng: random.Random, out: Out) -> None:
        super().on_connect(device, at, rng, out)
        when = at + rng.uniform(0.5, 1.5)
        out.append((when, device.refused(when, "fleet/terminal/config/#", "subscribe")))

    def transaction_weight(self, device: Device, at: float) -> float:
        hour, _ = self.daytime(device, at)
        return 1.0 if 11 <= hour < 14 else 0.45

    def traffic(self, device: Device, start: float, end: float, rng: random.Random,
                out: Out) -> None:
        for at in jittered(start, end, self.interval, 10.0, rng):
            out.append((at, device.publish(at, self.topic, rng.randint(210, 240))))
        for at in poisson(start, end, 30.0, rng,
                          lambda t: self.transaction_weight(device, t)):
            out.append((at, device.publish(at, "txn", rng.randint(450, 900))))


ARCHETYPES: tuple[Archetype, ...] = (Meter(), Camera(), Gateway(), Actuator(), Handheld(),
                                     Terminal())
#: the share of a fleet each archetype makes up
SHARES = {"meter": 0.28, "camera": 0.14, "gateway": 0.12, "actuator": 0.2, "handheld": 0.16,
          "terminal": 0.1}

