"""Policy decisions: p50 ≤ 5 µs uncached and ≥ 200k decisions/s on one core.

The fleet: 100k devices (20k with --quick), 1,000 policies, 50 org units (root, 7
tenants, 14 business units, 28 sites with their own time zones and networks), 20
device types, 200 groups, 100 devices with policies of their own. Policies use
variables, time windows, source networks, trust scores, guardrail denies and
device-level grants, like a real fleet's.

The requests: 100k drawn up front — publish in the own namespace (permit), publish
into another device's namespace (default deny), publish to a guardrail-denied topic
(explicit deny), subscribe (filter subsumption), receive, connect, firmware topics.

"Uncached" means no decision is ever cached: every call validates the resource and
walks the rules for it, evaluating conditions and variables against this subject and
context. What *is* reused is compiled structure: the policy set is compiled once
(timed below), and a device's view (the rule tries of the parts that apply to it:
org chain with device type, each group, its own attachments — each part shared by
every device that has it; variables are compared while walking, never substituted
into a part) is looked up on its first decision and memoised on the subject object
with its variable values.
The warm rows run after one pass over every device; the cold row times first
decisions on a fresh engine, view building included.

p50/p99 take ``time.perf_counter_ns`` around each call (the timer's own ~50-100 ns
is included); throughput is a tight loop over the same requests timed as a whole.
"""

from __future__ import annotations

import ipaddress
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks.harness import Result, RunConfig, Target
from iotiam.inventory.models import DeviceState
from iotiam.policy.actions import CONNECT, PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    PolicyDocument,
    RequestContext,
    Site,
    Subject,
    TargetKind,
)
from iotiam.policy.parsing import policy_from_mapping

NAME = "policy-decisions"
TITLE = "policy decision point: 100k devices, 1,000 policies, 50 org units (uncached)"
P50_TARGET_US = 5.0
RATE_TARGET = 200_000
DEVICES, QUICK_DEVICES = 100_000, 20_000
REQUESTS = 100_000
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney",
         "America/Sao_Paulo", "Europe/London")
NOW = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Europe moves to summer time

Request = tuple[Subject, str, str, RequestContext]


class Fleet:
    """The org tree, sites, policies and attachments of the benchmark."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.tenants = [f"t{t}" for t in range(7)]
        self.units: list[tuple[str, str]] = [("root", "/root/")]  # (id, path)
        self.sites: list[tuple[str, str, Site]] = []  # (unit id, path, site)
        for t, tenant in enumerate(self.tenants):
            self.units.append((tenant, f"/root/{tenant}/"))
            for b in range(2):
                bu = f"{tenant}-bu{b}"
                self.units.append((bu, f"/root/{tenant}/{bu}/"))
                for s in range(2):
                    unit = f"{bu}-s{s}"
                    path = f"/root/{tenant}/{bu}/{unit}/"
                    network = ipaddress.ip_network(f"10.{t * 4 + b * 2 + s}.0.0/16")
                    site = Site(f"site-{unit}", ZONES[(t + s) % len(ZONES)], (network,))
                    self.units.append((unit, path))
                    self.sites.append((unit, path, site))
        assert len(self.units) == 50, len(self.units)
        self.types = [f"type{i}" for i in range(20)]
        self.groups = [(f"g{i}", self.sites[i % len(self.sites)]) for i in range(200)]
        self.policies: list[PolicyDocument] = []
        self.attachments: list[Attachment] = []

    def add(self, body: dict[str, object], target: AttachmentTarget, scope: str) -> None:
        """One policy attached to one target."""
        name = f"p{len(self.policies):04d}"
        document = policy_from_mapping({"name": name, "version": 1, **body})
        self.policies.append(document)
        self.attachments.append(Attachment(name, target, scope))

    def build_policies(self, device_ids: list[str]) -> None:
        """1,000 policies over org units, types, groups and single devices."""
        org = TargetKind.ORG_UNIT
        self.policies.append(DEFAULT_DEVICE_POLICY)
        self.attachments.append(Attachment(DEFAULT_DEVICE_POLICY.name,
                                           AttachmentTarget(org, "root"), "/root/"))
        self.add({"guardrail": True, "statements": [
            {"sid": "no-admin", "effect": "deny", "actions": ["mqtt:publish"],
             "topics": ["devices/+/admin/#", "broadcast/#"]},
            {"sid": "low-trust", "effect": "deny", "actions": ["mqtt:*"], "topics": ["#"],
             "conditions": {"trust_score_below": 20}}]}, AttachmentTarget(org, "root"), "/root/")
        for unit, path in self.units:
            for k in range(6 if unit != "root" else 4):
                self.add(self._unit_policy(unit, k), AttachmentTarget(org, unit), path)
        for i in range(200):
            device_type = self.types[i % 20]
            self.add({"statements": [
                {"effect": "allow", "actions": ["mqtt:subscribe", "mqtt:receive"],
                 "topics": [f"firmware/${{device.type}}/channel{i // 20}/#"]},
                {"effect": "allow", "actions": ["mqtt:publish"],
                 "topics": [f"devices/${{device.id}}/{device_type}/metric{i // 20}"]}]},
                AttachmentTarget(TargetKind.DEVICE_TYPE, device_type), "/root/")
        for group, (_unit, path, _site) in self.groups:
            for k in range(2):
                self.add({"statements": [
                    {"effect": "allow", "actions": ["mqtt:subscribe", "mqtt:receive"],
                     "topics": [f"groups/{group}/cmd{k}/#"]},
                    {"effect": "allow", "actions": ["mqtt:publish"],
                     "topics": [f"groups/{group}/status{k}/${{device.id}}"],
                     "conditions": {"source_networks": ["${device.site}"]}}]},
                    AttachmentTarget(TargetKind.GROUP, group), path)
        while len(self.policies) < 1000:
            device = self.rng.choice(device_ids)
            self.add({"statements": [
                {"effect": "allow", "actions": ["mqtt:publish", "mqtt:subscribe"],
                 "topics": [f"service/{device}/#"]}]},
                AttachmentTarget(TargetKind.DEVICE, device), "/root/")

    def _unit_policy(self, unit: str, k: int) -> dict[str, object]:
        kinds: list[dict[str, object]] = [
            {"statements": [{"effect": "allow", "actions": ["mqtt:subscribe", "mqtt:receive"],
                             "topics": [f"org/{unit}/broadcast/#"]}]},
            {"statements": [{"effect": "allow", "actions": ["mqtt:publish"],
                             "topics": ["sites/${device.site}/telemetry/${device.id}/#"],
                             "conditions": {"min_trust_score": 50}}]},
            {"statements": [{"effect": "allow", "actions": ["mqtt:publish"],
                             "topics": ["devices/${device.id}/maintenance/#"],
                             "conditions": {"time_window": {"days": ["mon-fri"],
                                                            "start": "07:00", "end": "19:00"}}}]},
            {"statements": [{"effect": "deny", "actions": ["mqtt:publish"],
                             "topics": [f"devices/${{device.id}}/restricted-{unit}/#"]}]},
            {"statements": [{"effect": "allow", "actions": ["mqtt:publish", "mqtt:receive"],
                             "topics": [f"devices/${{device.id}}/{unit}/+/data"],
                             "conditions": {"firmware_compliant": True}}]},
            {"statements": [{"effect": "allow", "actions": ["http:GET"],
                             "paths": ["/v1/devices/${device.id}/#"]}]},
        ]
        return kinds[k]

    def subjects(self, count: int) -> list[Subject]:
        """Devices spread over the sites, with types, groups and attributes."""
        out = []
        for i in range(count):
            unit, path, site = self.sites[i % len(self.sites)]
            local_groups = [g for g, (u, _p, _s) in self.groups if u == unit]
            groups = frozenset(self.rng.sample(local_groups, self.rng.randint(0, 2)))
            out.append(Subject(f"dev-{i:06d}", self.types[i % 20], unit, path,
                               DeviceState.ACTIVE, site.name,
                               {"zone": f"z{i % 5}", "fw": "1.2.3"}, groups))
        return out


def requests(rng: random.Random, subjects: list[Subject], count: int) -> list[Request]:
    """A realistic mix of actions and resources."""
    ctx = RequestContext(NOW, ipaddress.ip_address("10.1.2.3"), 80.0, True)
    out: list[Request] = []
    for _ in range(count):
        s = rng.choice(subjects)
        other = rng.choice(subjects).device_id
        roll = rng.random()
        if roll < 0.45:
            req = (PUBLISH, f"devices/{s.device_id}/telemetry/temp")
        elif roll < 0.55:
            req = (PUBLISH, f"devices/{other}/telemetry/temp")
        elif roll < 0.60:
            req = (PUBLISH, f"devices/{s.device_id}/admin/reboot")
        elif roll < 0.70:
            req = (PUBLISH, f"devices/{s.device_id}/{s.type_name}/metric3")
        elif roll < 0.80:
            req = (RECEIVE, f"devices/{s.device_id}/cmd/set")
        elif roll < 0.87:
            req = (SUBSCRIBE, f"devices/{s.device_id}/cmd/#")
        elif roll < 0.92:
            req = (RECEIVE, f"firmware/{s.type_name}/channel{rng.randrange(10)}/blob")
        elif roll < 0.96:
            req = (PUBLISH, f"sites/{s.site}/telemetry/{s.device_id}/x")
        else:
            req = (CONNECT, s.device_id)
        out.append((s, req[0], req[1], ctx))
    return out


def timed(decide: Callable[..., object], batch: list[Request]) -> list[int]:
    """Nanoseconds of each decision."""
    clock = time.perf_counter_ns
    samples = []
    for subject, action, resource, ctx in batch:
        started = clock()
        decide(subject, action, resource, ctx)
        samples.append(clock() - started)
    return samples


def percentile(samples: list[int], q: float) -> float:
    """Nearest-rank percentile in microseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] / 1000


def run(config: RunConfig) -> list[Result]:
    """Build the fleet, compile, then time cold, warm and tight-loop decisions."""
    rng = random.Random(20260329)
    fleet = Fleet(rng)
    count = config.size(DEVICES, QUICK_DEVICES)
    subjects = fleet.subjects(count)
    fleet.build_policies([s.device_id for s in subjects])
    sites = [site for _u, _p, site in fleet.sites]

    started = time.perf_counter()
    engine = PolicyEngine(fleet.policies, fleet.attachments, sites, generation=1)
    compile_seconds = time.perf_counter() - started

    batch = requests(rng, subjects, config.size(REQUESTS, REQUESTS // 5))
    cold_engine = PolicyEngine(fleet.policies, fleet.attachments, sites, generation=2)
    cold_batch = [(s, PUBLISH, f"devices/{s.device_id}/telemetry/temp", batch[0][3])
                  for s in subjects[: config.size(20_000, 5_000)]]
    cold = timed(cold_engine.decide, cold_batch)

    started = time.perf_counter()
    for subject in subjects:  # one entry per device, as a running PDP has
        engine.view(subject)
    warm_up = time.perf_counter() - started
    outcomes = [engine.decide(*r).allowed for r in batch]
    permits = sum(outcomes) / len(outcomes)

    warm = timed(engine.decide, batch)
    rounds = config.size(5, 2)
    rates, cpu_rates = [], []
    decide = engine.decide
    for _ in range(rounds):
        started, cpu_started = time.perf_counter(), time.process_time()
        for subject, action, resource, ctx in batch:
            decide(subject, action, resource, ctx)
        rates.append(len(batch) / (time.perf_counter() - started))
        cpu_rates.append(len(batch) / (time.process_time() - cpu_started))
    rate, cpu_rate = statistics.median(rates), statistics.median(cpu_rates)
    sizes = (f"{count:,} devices, {len(fleet.policies):,} policies, {len(fleet.units)} org "
             f"units, {len(fleet.attachments):,} attachments")
    return [
        Result(f"{NAME}: p50 per decision, warm", percentile(warm, 50), "µs",
               Target(P50_TARGET_US, at_least=False),
               f"no decision cache; {len(batch):,} mixed requests, {permits:.0%} permitted; "
               f"p90 {percentile(warm, 90):.2f} µs, p99 {percentile(warm, 99):.2f} µs; {sizes}"),
        Result(f"{NAME}: throughput, one core", rate, "decisions/s", Target(RATE_TARGET),
               f"tight loop, wall clock, median of {rounds} passes over the same requests"),
        Result(f"{NAME}: throughput per CPU-second", cpu_rate, "decisions/s",
               Target(RATE_TARGET),
               "the same loop timed by process CPU time: what one core does when this "
               "process has it, whatever else the machine runs"),
        Result(f"{NAME}: p50 first decision per device (cold)", percentile(cold, 50), "µs",
               notes=f"fresh engine, includes building the device entry and its shared view; "
                     f"p99 {percentile(cold, 99):.1f} µs over {len(cold_batch):,} devices"),
        Result(f"{NAME}: compile the policy set", compile_seconds * 1000, "ms",
               notes=f"{engine.view_count()} shared views after warm-up "
                     f"({warm_up:.2f} s for all {count:,} device entries)"),
    ]
