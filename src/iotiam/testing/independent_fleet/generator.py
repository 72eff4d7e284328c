"""Plan a fleet, write its events, then let the attacks loose on the monitoring days.

``generate(seed, devices=N)`` is a pure function of its arguments: one
``random.Random(seed)`` plans devices and sites, the benign life of the fleet (DHCP
churn, keepalive drops, site outages with buffered messages, firmware rollouts in
waves, devices joining and leaving, certificate renewals, a device stuck with an expired
certificate, stray failed logins), writes every device's records, and then
``attacks.launch`` adds the labelled attacks after the tuning period.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotiam.testing.independent_fleet.archetypes import ARCHETYPES, HOUR, SHARES, Out
from iotiam.testing.independent_fleet.attacks import Attack, launch
from iotiam.testing.independent_fleet.devices import Device, auth_failure, image_hash
from iotiam.testing.independent_fleet.sites import SITES, Site

#: a Tuesday in winter: no daylight-saving change in the span at any site; the
#: tuning days are Tuesday to Saturday, Sunday and Monday are monitored
START = datetime(2026, 1, 13, tzinfo=UTC).timestamp()
DAY = 86400.0
TUNING_DAYS = 5
MONITOR_DAYS = 2
SITE_WEIGHTS = (0.4, 0.3, 0.3)


@dataclass
class Fleet:
    """A generated fleet: where its devices are, what they did, and the attacks in it."""

    seed: int
    start: float
    end: float
    #: events before it are the learning period; every attack starts after it
    tuning_end: float
    #: site -> IANA zone
    sites: dict[str, str]
    device_sites: dict[str, str]
    device_types: dict[str, str]
    #: JSON objects per docs/events.md, in time order
    events: list[dict[str, Any]]
    attacks: list[Attack] = field(default_factory=list)

    @property
    def device_zones(self) -> dict[str, str]:
        """device -> the IANA zone of its site."""
        return {device: self.sites[site] for device, site in self.device_sites.items()}

    def split(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The events of the tuning period, and the rest."""
        cut = bisect.bisect_left([timestamp(event) for event in self.events], self.tuning_end)
        return self.events[:cut], self.events[cut:]


def timestamp(event: dict[str, Any]) -> float:
    """An event's time as epoch seconds (records carry epoch numbers or ISO with a zone)."""
    value = event["ts"]
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(value).timestamp()


def generate(seed: int, devices: int = 60, *, tuning_days: int = TUNING_DAYS,
             monitor_days: int = MONITOR_DAYS) -> Fleet:
    """A fleet of about ``devices`` devices over a week; attacks in the last two days."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
    start, tuning_end = START, START + tuning_days * DAY
    end = tuning_end + monitor_days * DAY
    fleet = plan_devices(rng, devices, start, end)
    shared: Out = []
    plan_life(rng, fleet, start, tuning_end, end, shared)
    streams = {device.device_id: write(rng, device, start, end) for device in fleet}
    attacks = launch(rng, fleet, streams, shared, tuning_end, end)
    merged = [record for stream in streams.values() for _, record in stream]
    merged += [record for _, record in shared]
    merged.sort(key=timestamp)  # by the time as written, to the millisecond
    return Fleet(seed=seed, start=start, end=end, tuning_end=tuning_end,
                 sites={site.name: site.zone for site in SITES},
                 device_sites={d.device_id: d.site.name for d in fleet},
                 device_types={d.device_id: d.device_type for d in fleet},
                 events=merged, attacks=attacks)


def plan_devices(rng: random.Random, count: int, start: float, end: float) -> list[Device]:
    """Devices of every archetype at weighted sites; a few join or leave in the span."""
    fleet: list[Device] = []
    for archetype in ARCHETYPES:
        for _ in range(max(3, round(SHARES[archetype.name] * count))):
            site = rng.choices(SITES, weights=SITE_WEIGHTS)[0]
            device = Device(device_id=f"{archetype.name}-{len(fleet) + 1:04d}",
                            archetype=archetype, site=site, joined=start,
                            scale=rng.lognormvariate(0.0, 0.15),
                            shift=rng.randint(0, 1))
            device.leases.append((start - DAY, site.address(archetype.vlan,
                                                            rng.randint(10, archetype.scope))))
            first = 1 if rng.random() < 0.1 else 0  # a few came from the factory newer
            version = archetype.versions[first]
            device.images.append((start - 30 * DAY, version,
                                  image_hash(archetype.name, version)))
            if archetype.name == "gateway":
                for _ in range(rng.randint(2, 5)):
                    device.peers.append((start, site.address(50, rng.randint(10, 250)),
                                         rng.choice((502, 502, 502, 102, 44818))))
            fleet.append(device)
    joiners = rng.sample(fleet, max(2, len(fleet) // 16))
    for device in joiners:
        day = rng.uniform(start + DAY, end - 6 * HOUR)
        local = device.site.local(day).date()
        device.joined = device.site.at_local(local, rng.uniform(9.0, 16.0))
        device.leases[0] = (device.joined - HOUR, device.leases[0][1])
    for device in rng.sample([d for d in fleet if d not in joiners], max(1, len(fleet) // 25)):
        device.left = rng.uniform(start + DAY, end - HOUR)
    return fleet


def plan_life(rng: random.Random, fleet: list[Device], start: float, tuning_end: float,
              end: float, shared: Out) -> None:
    """The benign events of the span: churn, drops, outages, rollouts, renewals, strays."""
    for device in fleet:
        at = device.joined
        while True:
            at += rng.expovariate(0.35 / DAY)  # keepalive drop, often a new lease
            if at >= end:
                break
            back = at + rng.uniform(20.0, 120.0)
            device.offline.append((at, back, "keepalive timeout"))
            if rng.random() < 0.35:
                device.leases.append((back - 1.0, device.site.address(
                    device.archetype.vlan, rng.randint(10, device.archetype.scope))))
    for site in SITES:
        for _ in range(rng.randint(1, 2)):
            down = rng.uniform(start + HOUR, end - 2 * HOUR)
            up = down + rng.uniform(600.0, 3600.0)
            for device in fleet:
                if device.site is site:
                    device.offline.append((down, up + rng.uniform(5.0, 90.0), "outage"))
    plan_rollouts(rng, fleet, start, tuning_end, end)
    for device in fleet:
        device.leases.sort()
        device.offline.sort()
    stray = "laptop-test"
    for at in range(int(start), int(end), int(DAY)):
        when = at + rng.uniform(8 * HOUR, 18 * HOUR)
        for i in range(rng.randint(1, 2)):
            shared.append((when + 4 * i, auth_failure(when + 4 * i, stray, "10.1.200.17",
                                                      "bad username or password")))
    expired = rng.choice([d for d in fleet if not d.archetype.working_hours_only
                          and d.left is None])
    lapse = rng.uniform(start + DAY, end - 6 * HOUR)
    fixed = lapse + rng.uniform(1.0, 3.0) * HOUR
    expired.offline.append((lapse, fixed, "certificate expired"))
    expired.offline.sort()
    wait, at = 5.0, lapse + 2.0
    while at < fixed - 60:
        shared.append((at, auth_failure(at, expired.device_id, expired.address_at(at),
                                        "certificate expired")))
        at += wait * rng.uniform(0.8, 1.2)
        wait = min(wait * 2, 300.0)


def plan_rollouts(rng: random.Random, fleet: list[Device], start: float, tuning_end: float,
                  end: float) -> None:
    """Most types move to their next version during tuning, two more while monitored;
    a type of six or more devices moves in two waves hours apart, a smaller one at once."""
    for archetype in ARCHETYPES:
        members = [d for d in fleet if d.archetype is archetype]
        steps = [(1, start + rng.uniform(DAY, max(tuning_end - start - 1.5 * DAY, DAY)))]
        if rng.random() < 0.4:
            steps.append((2, tuning_end + rng.uniform(2 * HOUR, DAY)))
        for index, around in steps:
            version = archetype.versions[index]
            digest = image_hash(archetype.name, version)
            moving = [d for d in members if d.image_at(around)[0] != version]
            rng.shuffle(moving)
            waves = [moving] if len(moving) < 6 else [moving[: len(moving) // 2],
                                                      moving[len(moving) // 2:]]
            for wave in waves:
                at = busy_moment(rng, archetype.working_hours_only, wave, around)
                for device in wave:
                    push = at + rng.uniform(0.0, 300.0)
                    back = push + rng.uniform(60.0, 180.0)
                    device.images.append((push + 1.0, version, digest))
                    device.offline.append((push, back, "firmware update"))
                around += rng.uniform(2.0, 6.0) * HOUR


def busy_moment(rng: random.Random, working_hours_only: bool, wave: list[Device],
                around: float) -> float:
    """When to push a wave: as planned, or for devices that only run in working hours,
    10:00 local at the first wave member's site on a working day at or after then."""
    if not working_hours_only or not wave:
        return around
    site: Site = wave[0].site
    for day in site.days(around, around + 7 * DAY):
        moment = site.at_local(day, 10.0 + rng.uniform(0.0, 1.0))
        if moment >= around and day.weekday() < 5:
            return moment
    return around


def write(rng: random.Random, device: Device, start: float, end: float) -> Out:
    """Every record of one device's planned life, time-ordered."""
    out: Out = []
    archetype = device.archetype
    last_end: float | None = None
    if device.joined > start:
        when = device.joined - rng.uniform(30.0, 120.0)
        out.append((when, device.enroll(when, "new")))
    for begin, finish, opened_by, closed_by in sessions(
            archetype.windows(device, start, end, rng), device.offline):
        device.sessions.append((begin, finish))
        out.append((begin, device.connect(begin)))
        archetype.on_connect(device, begin, rng, out)
        if opened_by == "outage" and last_end is not None:
            archetype.after_outage(device, begin, begin - last_end, rng, out)
        archetype.traffic(device, begin, finish, rng, out)
        archetype.flows(device, begin, finish, rng, out)
        at = begin + rng.uniform(5.0, 30.0)
        while at < finish:
            out.append((at, device.attestation(at)))
            at += 6 * HOUR + rng.uniform(-900.0, 900.0)
        if finish < end:
            reason = {"keepalive timeout": "keepalive timeout", "outage": "keepalive timeout",
                      "certificate expired": "certificate expired"}.get(
                          closed_by, "client disconnected")
            if device.left is not None and finish >= device.left:
                reason = "decommissioned"
            out.append((finish, device.disconnect(finish, reason)))
        last_end = finish
    renew = device.joined + rng.uniform(0.2, 4.7) * DAY
    while renew < (device.left or end):
        online = next((max(renew, a) + (rng.uniform(5.0, 60.0) if a > renew else 0.0)
                       for a, b in device.sessions if b > renew), None)
        if online is None or online >= end:
            break
        when = online
        out.append((when, device.enroll(when, "renew")))
        renew = when + 4.7 * DAY + rng.uniform(-0.5, 0.5) * DAY
    out.sort(key=lambda item: item[0])
    return out


def sessions(windows: list[tuple[float, float]], offline: list[tuple[float, float, str]]
             ) -> list[tuple[float, float, str, str]]:
    """Connected spans: each window cut by the offline spans, with what opened and
    closed each one."""
    spans = []
    for begin, finish in windows:
        cursor, opened = begin, "start"
        for down, up, why in offline:
            if up <= cursor or down >= finish:
                continue
            if down > cursor + 1.0:
                spans.append((cursor, down, opened, why))
            cursor, opened = max(cursor, up), why
        if finish - cursor > 1.0:
            spans.append((cursor, finish, opened, "end"))
    return spans
