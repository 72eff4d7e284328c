"""Partitioned detection: the partition of an event, and a partition's engine that counts
a redelivered batch once and carries on from its snapshot."""

from __future__ import annotations

import json

import pytest

from iotiam.detection.engine import DetectionEngine, ModeTable
from iotiam.detection.models import DetectionMode, Event, EventKind, Finding
from iotiam.detection.partitions import PartitionEngine, partition_key, partition_of
from iotiam.errors import InvalidInput

AT = 1_800_000_000.0


def publish(device: str, at: float) -> Event:
    return Event(EventKind.PUBLISH, at, device_id=device, device_type="sensor",
                 topic=f"devices/{device}/telemetry", size=100)


def fresh(partition: int = 3) -> PartitionEngine:
    return PartitionEngine.fresh(partition, learning_seconds=60,
                                 modes=ModeTable(DetectionMode.MONITOR))


def test_partition_ok_every_event_of_a_device_in_one_partition() -> None:
    events = [publish("dev-1", AT), Event(EventKind.CONNECT, AT, device_id="dev-1",
                                          source_ip="10.0.0.1"),
              Event(EventKind.FLOW, AT, device_id="dev-1", dst_ip="10.0.0.2", dst_port=1)]
    assert len({partition_of(e, 16) for e in events}) == 1


def test_partition_ok_devices_spread_over_every_partition() -> None:
    seen = {partition_of(publish(f"dev-{i}", AT), 16) for i in range(1000)}
    assert seen == set(range(16))


def test_partition_ok_unknown_client_by_its_address_then_client_id() -> None:
    from_ip = Event(EventKind.AUTH_FAILURE, AT, source_ip="10.9.9.9", client_id="x")
    assert partition_key(from_ip) == "10.9.9.9"
    assert partition_key(Event(EventKind.AUTH_FAILURE, AT, client_id="x")) == "x"
    # two identities from one address land together: the burst from it is seen whole
    other = Event(EventKind.AUTH_FAILURE, AT, source_ip="10.9.9.9", client_id="y")
    assert partition_of(from_ip, 16) == partition_of(other, 16)


def test_apply_ok_a_position_applied_already_is_skipped() -> None:
    engine = fresh()
    assert engine.apply(5, [publish("dev-1", AT), publish("dev-1", AT + 10)]) == []
    assert engine.apply(5, [publish("dev-1", AT + 20)]) is None
    assert engine.apply(4, [publish("dev-1", AT + 20)]) is None
    assert engine.engine.stats.events == 2
    assert engine.apply(9, [publish("dev-1", AT + 20)]) == []
    assert (engine.applied, engine.engine.stats.events, engine.unsaved) == (9, 3, 2)


def test_apply_ok_a_failing_event_fails_alone() -> None:
    class Broken:
        name = "broken"

        def learn(self, event: Event) -> None:
            if event.device_id == "bad":
                raise RuntimeError("a detector's bug")

        def __call__(self, event: Event) -> list[Finding]:
            return []

        def forgive(self, finding: Finding) -> None:
            """Nothing to widen."""

    engine = PartitionEngine(0, DetectionEngine([Broken()], modes=ModeTable("monitor")))
    assert engine.apply(1, [publish("bad", AT), publish("good", AT)]) == []
    assert (engine.failed, engine.applied) == (1, 1)


def test_snapshot_ok_restored_engine_carries_on_from_the_same_position() -> None:
    engine = fresh()
    for n in range(1, 40):
        engine.apply(n, [publish("dev-1", AT + 10 * n)])
    state = json.loads(json.dumps(engine.snapshot()))
    again = PartitionEngine.restore(state, modes=ModeTable(DetectionMode.MONITOR))
    assert (again.partition, again.applied) == (3, 39)
    assert again.engine.snapshot() == engine.engine.snapshot()
    assert again.apply(39, [publish("dev-1", AT + 400)]) is None
    # the restored baseline judges as the original does: the same flood, the same finding
    flood = [publish("dev-1", AT + 400 + k * 0.05) for k in range(60)]
    found = engine.apply(40, flood)
    assert found and found == again.apply(40, flood)


@pytest.mark.parametrize("state", [{}, {"version": 9}, {"version": 1, "partition": 1},
                                   {"version": 1, "partition": "x", "applied": 0,
                                    "engine": {}}])
def test_restore_fail_damaged_snapshot(state: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        PartitionEngine.restore(state, modes=None)


def test_forgive_ok_in_order_once_and_widens_the_baseline() -> None:
    engine = fresh()
    for n in range(1, 40):
        engine.apply(n, [publish("dev-1", AT + 10 * n)])
    flood = [publish("dev-1", AT + 400 + k * 0.05) for k in range(60)]
    (finding, *_) = fresh_copy(engine).apply(40, flood) or []
    assert engine.forgive(40, finding)
    assert not engine.forgive(40, finding)  # redelivered: applied once
    assert engine.applied == 40
    assert engine.apply(41, flood) == []  # that flood is tolerated now


def fresh_copy(engine: PartitionEngine) -> PartitionEngine:
    return PartitionEngine.restore(engine.snapshot(), modes=ModeTable(DetectionMode.MONITOR))
