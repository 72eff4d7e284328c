"""Detection events through a real ``nats-server -js``: producers in two processes,
detection workers in two more, one killed with ``kill -9`` mid-stream.

Each test starts its own server on a free port with its own store (``testing.nats``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import nats
import pytest
from nats.js.errors import KeyNotFoundError, ObjectNotFoundError

from iotiam.detection.engine import ModeTable
from iotiam.detection.models import DetectionMode, Event, EventKind
from iotiam.detection.partitions import PartitionEngine, partition_of
from iotiam.errors import SetupError, StreamUnavailable
from iotiam.eventstream.connection import ensure_stream, read_object
from iotiam.eventstream.publisher import NatsEventPublisher
from iotiam.eventstream.wire import EventStreamConfig
from iotiam.testing import free_port
from iotiam.testing.nats import nats_jetstream

from .conftest import serve_live
from .stream_processes import (
    DEVICES,
    LEARNING_SECONDS,
    PARTITIONS,
    TICKS,
    config,
    device_events,
)

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("stream_processes.py")
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def nats_url() -> Iterator[str]:
    with nats_jetstream() as url:
        yield url


def spawn(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env)


async def _read_owners(stream: EventStreamConfig) -> dict[int, str]:
    client = await nats.connect(stream.url)
    try:
        leases = await client.jetstream().key_value(stream.leases_bucket)
        owners = {}
        for partition in range(stream.partitions):
            try:
                entry = await leases.get(f"p{partition}")
            except KeyNotFoundError:
                continue
            if entry.value:
                owners[partition] = entry.value.decode()
        return owners
    finally:
        await client.close()


async def _read_snapshots(stream: EventStreamConfig) -> dict[int, PartitionEngine]:
    client = await nats.connect(stream.url)
    try:
        store = await client.jetstream().object_store(stream.snapshots_bucket)
        engines = {}
        for partition in range(stream.partitions):
            try:
                found = await read_object(store, f"p{partition}")
            except ObjectNotFoundError:
                continue
            engines[partition] = PartitionEngine.restore(json.loads(found.data or b""),
                                                         modes=None)
        return engines
    finally:
        await client.close()


def owners_of(stream: EventStreamConfig) -> dict[int, str]:
    """Which worker holds each partition's lease."""
    try:
        return asyncio.run(_read_owners(stream))
    except (nats.errors.Error, nats.js.errors.Error):  # the bucket is not there yet
        return {}


def owners(url: str) -> dict[int, str]:
    """``owners_of`` the stream of the worker processes."""
    return owners_of(config(url))


def snapshots(url: str) -> dict[int, PartitionEngine]:
    """``snapshots_of`` the stream of the worker processes."""
    return snapshots_of(config(url))


def snapshots_of(stream: EventStreamConfig) -> dict[int, PartitionEngine]:
    """Every partition's saved engine."""
    try:
        return asyncio.run(_read_snapshots(stream))
    except (nats.errors.Error, nats.js.errors.Error):
        return {}


def wait_for(what: str, condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def flows_by_device(engines: dict[int, PartitionEngine]) -> Counter[str]:
    """Flow events each device's baseline counted, and check each is in its partition."""
    counted: Counter[str] = Counter()
    for partition, engine in engines.items():
        state = engine.engine.snapshot()["detectors"]["lateral_movement"]["flows"]
        for device, flows in state.items():
            assert partition_of(Event(EventKind.FLOW, 0, device_id=device), PARTITIONS) \
                == partition, f"{device} was counted in partition {partition}"
            counted[device] += flows
    return counted


def expected_findings() -> set[tuple[str, str | None]]:
    """What one engine per partition raises on the same events, in process."""
    engines = {p: PartitionEngine.fresh(p, learning_seconds=LEARNING_SECONDS,
                                        modes=ModeTable(DetectionMode.MONITOR))
               for p in range(PARTITIONS)}
    events = sorted((e for i in range(DEVICES) for e in device_events(i)), key=lambda e: e.at)
    found = set()
    for event in events:
        for finding in engines[partition_of(event, PARTITIONS)].engine.process(event):
            found.add((finding.type.value, finding.device_id))
    return found


def test_ok_worker_killed_mid_stream_another_resumes_from_its_snapshots(
        nats_url: str, tmp_path: Path) -> None:
    findings = tmp_path / "findings.jsonl"
    first = spawn("worker", nats_url, "worker-a", str(findings))
    wait_for("worker-a to hold every partition", lambda: len(owners(nats_url)) == PARTITIONS)
    second = spawn("worker", nats_url, "worker-b", str(findings))
    try:
        wait_for("the partitions to be shared", lambda: sorted(Counter(
            owners(nats_url).values()).values()) == [PARTITIONS // 2, PARTITIONS // 2])
        producers = [spawn("producer", nats_url, "0"), spawn("producer", nats_url, "1")]
        held_by_a = {p for p, w in owners(nats_url).items() if w == "worker-a"}
        # kill -9 once worker-a has saved some of its progress: the rest it applied
        # after its last snapshot must be applied again by its successor, once
        wait_for("worker-a to snapshot", lambda: any(
            e.applied > 0 for p, e in snapshots(nats_url).items() if p in held_by_a))
        assert all(p.poll() is None for p in producers), "the kill must be mid-stream"
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert [p.wait(timeout=60) for p in producers] == [0, 0]
        wait_for("worker-b to take every partition",
                 lambda: set(owners(nats_url).values()) == {"worker-b"})
        total = sum(len(device_events(i)) for i in range(DEVICES))
        wait_for("every event to be applied", lambda: sum(
            e.engine.stats.events for e in snapshots(nats_url).values()) >= total, 30)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
    engines = snapshots(nats_url)
    assert sum(e.engine.stats.events for e in engines.values()) == total
    assert flows_by_device(engines) == {f"dev-{i:03d}": TICKS for i in range(DEVICES)}
    raised = [json.loads(line) for line in findings.read_text().splitlines()]
    assert {(f["type"], f["device_id"]) for f in raised} == expected_findings()
    assert expected_findings()  # the scenario does raise something


def test_fail_no_server_publish_is_refused_with_stream_unavailable() -> None:
    publisher = NatsEventPublisher(EventStreamConfig(f"nats://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(StreamUnavailable):
            publisher.publish(device_events(0)[:3])
    finally:
        publisher.close()


def test_fail_stream_cut_into_other_partitions_is_refused(nats_url: str) -> None:
    async def both() -> None:
        client = await nats.connect(nats_url)
        try:
            js = client.jetstream()
            await ensure_stream(js, EventStreamConfig(nats_url, partitions=16))
            await ensure_stream(js, EventStreamConfig(nats_url, partitions=16))
            with pytest.raises(SetupError, match="partitions"):
                await ensure_stream(js, EventStreamConfig(nats_url, partitions=8))
        finally:
            await client.close()

    asyncio.run(both())


def test_serve_ok_api_events_reach_a_worker_then_503_once_the_stream_is_gone(
        tmp_path: Path) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(nats_jetstream())
        env = {"IOTIAM_EVENTS_URL": url, "IOTIAM_EVENT_PARTITIONS": "4",
               "IOTIAM_DETECTION_LEARNING_SECONDS": "0"}
        for server in serve_live("sqlite", tmp_path, env):
            server.register("st-1", device_type="sensor")
            now = time.time()
            burst = [{"kind": "auth_failure", "ts": now + i / 10, "device_id": "st-1",
                      "source_ip": "198.51.100.9"} for i in range(40)]
            with server.api() as api:
                assert api.put("/v1/detection/modes/sensor",
                               json={"mode": "monitor"}).status_code == 200
                answer = api.post("/v1/events", json=burst).json()
                # published, not scored in the API's process: the finding comes later
                assert (answer["accepted"], answer["findings"]) == (40, 0)

                def found() -> bool:
                    return bool(api.get("/v1/findings", params={"device": "st-1"}
                                        ).json()["items"])

                wait_for("the worker's finding", found)
                # the upload's findings, raised in the worker, are the batch's
                linked = api.get(answer["findings_url"]).json()["items"]
                assert [f["device_id"] for f in linked] == ["st-1"], linked
                stream = EventStreamConfig(url, partitions=4)
                assert sorted(owners_of(stream)) == [0, 1, 2, 3]
                ready = httpx.get(f"{server.http_url}/readyz", timeout=10).json()
                assert ready["checks"]["stream"]["ready"] is True, ready
                assert ready["checks"]["stream"]["partitions"] == [0, 1, 2, 3]
                # a false positive reaches the engine that raised it: the burst's peak
                # becomes the device's allowance in that partition's baselines
                finding = api.get("/v1/findings", params={"device": "st-1"}).json()["items"][0]
                assert api.post(f"/v1/findings/{finding['id']}/resolve",
                                json={"false_positive": True}).status_code == 200
                home = partition_of(Event(EventKind.CONNECT, 0, device_id="st-1"), 4)

                def allowed(stream: EventStreamConfig = stream, home: int = home) -> bool:
                    engine = snapshots_of(stream).get(home)
                    state = engine.engine.snapshot()["detectors"] if engine else {}
                    return bool(state and state["auth_failure_burst"]["allow"])

                wait_for("the allowance in the partition's snapshot", allowed)
                stack.close()  # the NATS server goes away
                refused = api.post("/v1/events", json=burst[:1])
                assert refused.status_code == 503, refused.text
                with contextlib.closing(sqlite3.connect(server.data_dir / "iotiam.db")) as db:
                    assert db.execute("SELECT count(*) FROM event_batches").fetchone() == (1,)
                assert refused.headers["content-type"].startswith("application/problem+json")
                assert "event stream" in refused.json()["detail"]

                def unready(readyz: str = f"{server.http_url}/readyz") -> bool:
                    answer = httpx.get(readyz, timeout=10)
                    return answer.status_code == 503 and "stream" in answer.json()["detail"]

                wait_for("/readyz to say the stream is gone", unready)
