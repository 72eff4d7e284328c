"""Detection through NATS JetStream: 2 worker processes, events/s end to end, p99 event →
finding, and worker CPU per event (targets: ≥ 50,000 events/s, p99 ≤ 1 s).

A private ``nats-server -js`` (``iotiam.testing.nats``) per phase; the events are the
labelled scenario generator's (``iotiam.testing.scenarios``: sensors, gateways,
controllers, benign noise, attacks of every kind), every type in ``monitor``. This
process publishes (``NatsEventPublisher``, batches of ``BATCH`` events split by
partition); two worker processes (``DetectionWorker``, 16 partitions, 8 each) score.

- **Throughput**: the workers hold their partitions, then every event is published as
  fast as this process can; the rate is events / (last event applied - first publish):
  publishing, the stream, decoding and scoring, end to end.
- **Latency**: a fresh stream, the same events offered open loop at 50,000 events/s
  (batch *i* published at *i* · ``BATCH`` / 50,000 s); for every finding, the time from
  the publish of the batch holding the event that raised it to the finding reaching the
  worker's sink (both clocks are this host's wall clock).
- **Worker CPU per event**: each worker's process CPU time, from holding its partitions
  (start-up excluded) to its exit, over the events it scored. Each worker process runs
  ``freeze_start_up`` first, as ``iotiam serve`` does before its workers start.
- **Publisher CPU per event**: this process's CPU time publishing flat out (partitioning,
  encoding, the NATS client), over the events published.
- An info row: the latency at 10,000 events/s, which a loaded host keeps up with (the
  stream's own delay, without a queue in front of the workers).
"""

from __future__ import annotations

import bisect
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.detection import percentile_ms
from benchmarks.harness import Result, RunConfig, Target
from iotiam.api.server import freeze_start_up
from iotiam.detection.engine import ModeTable
from iotiam.detection.models import DetectionMode, Event, Finding
from iotiam.eventstream.publisher import NatsEventPublisher
from iotiam.eventstream.wire import EventStreamConfig
from iotiam.eventstream.worker import DetectionWorker
from iotiam.testing.nats import nats_jetstream
from iotiam.testing.scenarios import generate

NAME = "detection-stream"
TITLE = "detection events through NATS JetStream, 2 workers: events/s, p99 event → finding"
RATE_TARGET = 50_000
LATENCY_TARGET_MS = 1000.0
OFFERED_RATE = 50_000
#: an info row: the latency of the stream itself, at a rate a loaded host keeps up with
LIGHT_RATE = 10_000
BATCH = 5_000
WORKERS = 2
SEED = 20260302
ROOT = Path(__file__).resolve().parents[1]


def stream(url: str) -> EventStreamConfig:
    """The stream both sides use."""
    return EventStreamConfig(url, partitions=16)


class TimedFindings:
    """Keeps (event time, wall time found) of every finding."""

    def __init__(self) -> None:
        self.found: list[tuple[float, float]] = []

    def report(self, findings: Sequence[Finding]) -> None:
        now = time.time()
        self.found.extend((f.at, now) for f in findings)


def work(url: str, learning: float, status: Path) -> None:
    """A worker process: score until SIGTERM, writing progress to ``status``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    freeze_start_up()  # as ``iotiam serve`` does before its workers start
    sink = TimedFindings()
    worker = DetectionWorker(stream(url), sink, learning_seconds=learning,
                             modes=ModeTable(DetectionMode.MONITOR))
    progress: dict[str, float] = {"events": 0, "last": 0.0, "partitions": 0}

    def watch() -> None:
        while not stop.wait(0.02):
            if worker.events_applied != progress["events"]:
                progress.update(events=worker.events_applied, last=time.time())
                write()
            elif len(worker.owned) != progress["partitions"]:
                write()

    def write() -> None:
        progress["partitions"] = len(worker.owned)
        body = {**progress, "cpu": time.process_time(), "found": sink.found}
        tmp = status.with_suffix(".tmp")
        tmp.write_text(json.dumps(body))
        tmp.replace(status)

    threading.Thread(target=watch, daemon=True).start()
    worker.run(stop)
    write()


def read(status: Path) -> dict[str, Any]:
    """A worker's last progress (nothing yet: zeros)."""
    try:
        data: dict[str, Any] = json.loads(status.read_text())
        return data
    except (OSError, ValueError):
        return {"events": 0, "last": 0.0, "partitions": 0, "cpu": 0.0, "found": []}


def wait_for(condition: Any, seconds: float, what: str) -> None:
    """Poll ``condition`` until true, or fail naming ``what``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def phase(events: list[Event], learning: float, rate: float | None, workdir: Path
          ) -> tuple[float, list[float], list[dict[str, Any]], float]:
    """Publish ``events`` (at ``rate`` events/s, None: flat out) to 2 fresh workers; the
    end-to-end rate, event → finding latencies (s), each worker's last status and this
    process's CPU time publishing."""
    with nats_jetstream() as url:
        statuses = [workdir / f"worker-{n}-{rate}.json" for n in range(WORKERS)]
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        workers = [subprocess.Popen(
            [sys.executable, "-m", "benchmarks.detection_stream", url, str(learning),
             str(path)], env=env, cwd=ROOT) for path in statuses]
        try:
            publisher = NatsEventPublisher(stream(url))
            publisher.publish(events[:1])  # creates the stream before the workers read it
            wait_for(lambda: sum(read(s)["events"] for s in statuses) >= 1
                     and sorted(read(s)["partitions"] for s in statuses) == [8, 8], 60,
                     "two workers holding 8 partitions each")
            idle_cpu = [read(s)["cpu"] for s in statuses]  # start-up: not per event
            sent: list[tuple[float, float]] = []  # (first event time, wall time published)
            started, cpu = time.time(), time.process_time()
            for n, start in enumerate(range(1, len(events), BATCH)):
                if rate is not None:
                    delay = started + n * BATCH / rate - time.time()
                    if delay > 0:
                        time.sleep(delay)
                batch = events[start:start + BATCH]
                sent.append((batch[0].at, time.time()))
                publisher.publish(batch)
            publisher.close()
            cpu = time.process_time() - cpu
            wait_for(lambda: sum(read(s)["events"] for s in statuses) >= len(events), 600,
                     "every event to be scored")
        finally:
            for process in workers:
                process.send_signal(signal.SIGTERM)
            for process in workers:
                process.wait(timeout=60)
        final = [read(s) for s in statuses]
    for status, cpu in zip(final, idle_cpu, strict=True):
        status["cpu"] -= cpu
    end = max(f["last"] for f in final)
    times = [t for t, _ in sent]
    latencies = []
    for worker in final:
        for at, found in worker["found"]:
            index = bisect.bisect_right(times, at) - 1
            if index >= 0:
                latencies.append(found - sent[index][1])
    return (len(events) - 1) / (end - started), latencies, final, cpu


def run(config: RunConfig) -> list[Result]:
    """Both phases over the scenario's events."""
    scenario = generate(SEED, devices=config.size(150, 60))
    events, learning = scenario.events, scenario.learning_seconds
    with tempfile.TemporaryDirectory(prefix="iotiam-bench-stream-") as workdir:
        rate, _, flat, publishing = phase(events, learning, None, Path(workdir))
        _, latencies, paced, _ = phase(events, learning, OFFERED_RATE, Path(workdir))
        _, light, _, _ = phase(events, learning, LIGHT_RATE, Path(workdir))
    scored = sum(w["events"] for w in flat)
    cpu_us = sum(w["cpu"] for w in flat) / scored * 1e6
    split = " / ".join(f"{w['events']:,}" for w in flat)
    return [
        Result(f"{NAME}: events/s end to end, {WORKERS} workers", rate, "events/s",
               Target(RATE_TARGET),
               f"{len(events):,} events published flat out in batches of {BATCH:,} → "
               f"scored by 2 worker processes (events per worker {split}); "
               f"{len(scenario.devices)} devices, {len(scenario.attacks)} attacks"),
        Result(f"{NAME}: worker CPU per event", cpu_us, "µs",
               notes=f"both workers' process CPU time from holding their partitions to "
                     f"their exit (decoding, scoring, snapshots) over the events they "
                     f"scored: {1e6 / cpu_us:,.0f} events per worker CPU-second"),
        Result(f"{NAME}: publisher CPU per event", publishing / (len(events) - 1) * 1e6,
               "µs", notes="this process's CPU time publishing flat out (partitioning, "
                           "encoding, the NATS client) over the events published"),
        Result(f"{NAME}: event → finding p99 at {OFFERED_RATE:,} events/s", percentile_ms(
            latencies, 99), "ms", Target(LATENCY_TARGET_MS, at_least=False),
            f"{len(latencies)} findings; p50 {percentile_ms(latencies, 50):.0f} ms, max "
            f"{percentile_ms(latencies, 100):.0f} ms; publish of the event's batch → "
            f"finding in the worker's sink; workers' events {sum(w['events'] for w in paced):,}"),
        Result(f"{NAME}: event → finding p99 at {LIGHT_RATE:,} events/s",
               percentile_ms(light, 99), "ms",
               notes=f"{len(light)} findings; p50 {percentile_ms(light, 50):.0f} ms: the "
                     f"stream's own delay when the workers are not the bottleneck"),
    ]


if __name__ == "__main__":
    work(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]))
