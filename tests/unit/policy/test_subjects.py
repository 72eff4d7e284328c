"""The hook's subject cache: no store reads on a hit; published changes drop their
devices at once, other record changes are seen at the next check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from iotiam.changes import CertificateRevoked, CredentialRevoked, DeviceChanged, Published
from iotiam.clock import FrozenClock
from iotiam.inventory.models import Device, DeviceState
from iotiam.policy.models import DevicePosture
from iotiam.policy.subjects import DeviceSubjects
from iotiam.testing.fakes.changes import MemoryChangeFeed
from policy.fakes import T0


def _device(device_id: str, at: datetime) -> Device:
    return Device(id=device_id, type_name="sensor", org_unit_id="plant1",
                  org_path="/root/acme/plant1/", state=DeviceState.ACTIVE, site="berlin",
                  location=None, attributes={}, created_at=at, updated_at=at)


@dataclass
class FakeFleet:
    """``DeviceDirectory`` in memory, counting reads."""

    devices: dict[str, Device] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)
    reads: int = 0
    checks: int = 0
    batch_reads: list[list[str]] = field(default_factory=list)

    def device(self, device_id: str) -> Device | None:
        self.reads += 1
        return self.devices.get(device_id)

    def devices_of(self, device_ids: Sequence[str]) -> dict[str, Device]:
        self.batch_reads.append(list(device_ids))
        return {d: self.devices[d] for d in device_ids if d in self.devices}

    def groups_of(self, device_ids: Sequence[str]) -> dict[str, set[str]]:
        return {d: set(self.groups[d]) for d in device_ids if d in self.groups}

    def device_changes(self, since: datetime) -> list[tuple[str, datetime]]:
        self.checks += 1
        return [(d.id, d.updated_at) for d in self.devices.values() if d.updated_at > since]

    def change(self, device_id: str, at: datetime, **fields: object) -> None:
        self.devices[device_id] = replace(self.devices[device_id], updated_at=at,
                                          **fields)  # type: ignore[arg-type]


def _cache(fleet: FakeFleet, clock: FrozenClock, **options: float) -> DeviceSubjects:
    return DeviceSubjects(fleet, clock, **options)  # type: ignore[arg-type]


def test_cached_ok_reads_once() -> None:
    clock = FrozenClock(T0)
    fleet = FakeFleet({"d1": _device("d1", T0 - timedelta(hours=1))}, {"d1": {"line-1"}})
    cache = _cache(fleet, clock, check_every=3600)
    first = cache.cached("d1")
    assert first is not None and first.groups == frozenset({"line-1"})
    assert cache.cached("d1") is first  # the same object: the engine's memo stays
    assert cache.cached("ghost") is None and cache.cached("ghost") is None
    assert fleet.reads == 2 and fleet.checks == 0


def test_cached_ok_change_seen_at_next_check() -> None:
    clock = FrozenClock(T0)
    fleet = FakeFleet({"d1": _device("d1", T0 - timedelta(hours=1)),
                       "d2": _device("d2", T0 - timedelta(hours=1))})
    cache = _cache(fleet, clock, check_every=0)  # check before every question
    d1, d2 = cache.cached("d1"), cache.cached("d2")
    assert d1 is not None and d2 is not None
    clock.advance(timedelta(seconds=1))
    fleet.change("d1", clock.now(), state=DeviceState.QUARANTINED)
    fleet.groups["d1"] = {"line-2"}
    again = cache.cached("d1")
    assert again is not None and again is not d1
    assert again.state is DeviceState.QUARANTINED and again.groups == frozenset({"line-2"})
    assert cache.cached("d2") is d2  # unchanged devices stay cached
    # a change already acted on is not acted on again while it stays in the look-back
    reads = fleet.reads
    assert cache.cached("d1") is again
    assert fleet.reads == reads


def test_cached_ok_registration_after_unknown() -> None:
    clock = FrozenClock(T0)
    fleet = FakeFleet()
    cache = _cache(fleet, clock, check_every=0)
    assert cache.cached("late") is None
    clock.advance(timedelta(seconds=1))
    fleet.devices["late"] = _device("late", clock.now())
    subject = cache.cached("late")
    assert subject is not None and subject.device_id == "late"


def test_cached_ok_bounded_and_forget() -> None:
    clock = FrozenClock(T0)
    fleet = FakeFleet({f"d{i}": _device(f"d{i}", T0 - timedelta(hours=1)) for i in range(50)})
    cache = _cache(fleet, clock, check_every=3600, max_entries=20)
    for i in range(50):
        cache.cached(f"d{i}")
    assert len(cache) <= 20
    cache.forget("d49")
    reads = fleet.reads
    cache.cached("d49")
    assert fleet.reads == reads + 1
    cache.forget()
    assert len(cache) == 0


def test_subjects_of_ok_one_group_query() -> None:
    clock = FrozenClock(T0)
    fleet = FakeFleet({"a": _device("a", T0), "b": _device("b", T0)}, {"b": {"g"}})
    cache = _cache(fleet, clock)
    page = cache.subjects_of([fleet.devices["a"], fleet.devices["b"]])
    assert [(s.device_id, s.groups) for s in page] == [("a", frozenset()),
                                                      ("b", frozenset({"g"}))]
    assert fleet.reads == 0


def test_cached_ok_revocation_from_the_feed_drops_at_once() -> None:
    """G3: a revoked credential drops its device's subject as soon as the change feed
    delivers it, without waiting for a check."""
    clock = FrozenClock(T0)
    fleet = FakeFleet({"d1": _device("d1", T0 - timedelta(hours=1)),
                       "d2": _device("d2", T0 - timedelta(hours=1))})
    cache = _cache(fleet, clock, check_every=3600)
    feed = MemoryChangeFeed()
    feed.subscribe((CertificateRevoked, CredentialRevoked, DeviceChanged), cache.changed)
    d1, d2 = cache.cached("d1"), cache.cached("d2")
    feed.publish(CertificateRevoked(0x01AB, "issuing-1", "d1"))
    again = cache.cached("d1")
    assert again is not None and again is not d1
    assert cache.cached("d2") is d2
    assert cache.cached("d1") is again  # one revocation, one re-read
    feed.publish(CredentialRevoked("psk", "psk-1", "d2"), DeviceChanged(("d1",), "suspended"))
    assert cache.cached("d2") is not d2 and cache.cached("d1") is not again
    assert fleet.checks == 0


def test_cached_ok_uncredentialed_subject_kept_one_check_only() -> None:
    """A device with no valid credential is read again after ``check_every``: getting a
    credential back moves nothing the change check sees."""
    clock = FrozenClock(T0)
    fleet = FakeFleet({"d1": _device("d1", T0 - timedelta(hours=1))})
    cache = DeviceSubjects(fleet, clock, check_every=3600,  # type: ignore[arg-type]
                           posture=NoCredentials())
    first = cache.cached("d1")
    assert first is not None and first.credentialed is False
    assert cache.cached("d1") is first
    cache._check_every = 0  # the interval has passed
    assert cache.cached("d1") is not first


class NoCredentials:
    """``PostureLookup`` for devices that hold no credential."""

    def posture_of(self, device_ids: Sequence[str]) -> dict[str, DevicePosture]:
        return {d: DevicePosture(None, None, credentialed=False) for d in device_ids}


def test_cached_many_ok_reads_only_the_uncached_devices_and_together() -> None:
    clock = FrozenClock(T0)
    at = T0 - timedelta(hours=1)
    fleet = FakeFleet({d: _device(d, at) for d in ("d1", "d2", "d3")},
                      {"d2": {"line-2"}})
    cache = _cache(fleet, clock, check_every=3600)
    first = cache.cached("d1")
    found = cache.cached_many(["d1", "d2", "d3", "gone", "d2"])
    assert fleet.batch_reads == [["d2", "d3", "gone"]]  # one read, d1 was cached
    assert found["d1"] is first and found["gone"] is None
    subject = found["d2"]
    assert subject is not None and subject.groups == frozenset({"line-2"})
    # now cached: the single-device path reads nothing
    assert cache.cached("d2") is subject and cache.cached("d3") is found["d3"]
    assert fleet.reads == 1
    assert cache.cached_many(["d1", "d2"]) == {"d1": first, "d2": subject}
    assert len(fleet.batch_reads) == 1


def test_cached_many_ok_a_published_change_drops_what_it_read() -> None:
    clock = FrozenClock(T0)
    fleet = FakeFleet({"d1": _device("d1", T0 - timedelta(hours=1))})
    cache = _cache(fleet, clock, check_every=3600)
    cache.cached_many(["d1"])
    fleet.change("d1", T0, state=DeviceState.QUARANTINED)
    cache.changed(Published(1, DeviceChanged(("d1",))))
    again = cache.cached_many(["d1"])["d1"]
    assert again is not None and again.state is DeviceState.QUARANTINED
    assert len(fleet.batch_reads) == 2
