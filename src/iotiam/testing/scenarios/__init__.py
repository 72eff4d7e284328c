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

Layout: ``models`` (the ground truth), ``fleet`` (devices and their normal day),
``attacks`` (one function per attack kind), ``noise`` (benign noise), and ``generate``
here, which puts them together in a fixed order (every part draws from one seeded
generator, so the order is what makes a seed's events reproducible).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from operator import attrgetter

from iotiam.detection.models import FindingType
from iotiam.testing.scenarios.attacks import (
    auth_failure_burst,
    firmware_drift,
    flood,
    lateral_movement,
    mass_reregistration,
    message_size,
    new_destination,
    rate_change,
    topic_probing,
    unusual_source,
    unusual_time,
)
from iotiam.testing.scenarios.fleet import (
    CONTROLLER,
    DEFAULT_DURATION,
    DEFAULT_LEARNING,
    DEFAULT_START,
    GATEWAY,
    SENSOR,
    SETTLE,
    FleetBuilder,
)
from iotiam.testing.scenarios.models import Attack, Scenario
from iotiam.testing.scenarios.noise import background_noise, rollout

__all__ = ["Attack", "Scenario", "generate"]


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
        if i % 2:
            makers.append(partial(flood, b))
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
                    {d.id: d.type for d in b.devices}, b.events, b.attacks, b.noise,
                    {d.id: b.zone_of(d) for d in b.devices})
