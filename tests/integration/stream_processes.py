"""Processes of the event stream tests, run as ``python stream_processes.py ROLE ...``:
a detection worker (findings appended to a file) and an event producer. Also the events
both the producers and the test's expectations come from.

Imports only ``iotiam``: it runs as a script, outside the test package.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from iotiam.detection.engine import ModeTable
from iotiam.detection.models import DetectionMode, Event, EventKind, Finding
from iotiam.eventstream.publisher import NatsEventPublisher
from iotiam.eventstream.wire import EventStreamConfig
from iotiam.eventstream.worker import DetectionWorker

T0 = 1_780_000_000.0
DEVICES = 60
#: a publish and a flow every 10 s for 30 minutes
TICKS = 180
#: the device that then floods (its rate jumps 200x)
FLOODER = 7
LEARNING_SECONDS = 600.0
PARTITIONS = 16


def device_events(index: int) -> list[Event]:
    """One device's events in time order: regular telemetry and flows; the flooder's
    burst at the end."""
    device = f"dev-{index:03d}"
    events = []
    for tick in range(TICKS):
        at = T0 + tick * 10 + index * 0.01
        events.append(Event(EventKind.PUBLISH, at, device_id=device, device_type="sensor",
                            topic=f"devices/{device}/telemetry", size=100))
        events.append(Event(EventKind.FLOW, at + 0.001, device_id=device, device_type="sensor",
                            source_ip=f"10.0.1.{index}", dst_ip="10.0.0.1", dst_port=8883,
                            protocol="tcp"))
    if index == FLOODER:
        events += [Event(EventKind.PUBLISH, T0 + TICKS * 10 + k * 0.05, device_id=device,
                         device_type="sensor", topic=f"devices/{device}/telemetry", size=100)
                   for k in range(200)]
    return events


def config(url: str, lease_seconds: float = 1.5) -> EventStreamConfig:
    """The stream as every process of the test sees it."""
    return EventStreamConfig(url, partitions=PARTITIONS, lease_seconds=lease_seconds,
                             snapshot_seconds=0.3)


class FileSink:
    """Findings as JSON lines, with the worker that raised them."""

    def __init__(self, path: Path, worker: str) -> None:
        self.path, self.worker = path, worker

    def report(self, findings: Sequence[Finding]) -> None:
        with self.path.open("a") as out:
            for finding in findings:
                out.write(json.dumps({"worker": self.worker, "type": finding.type.value,
                                      "device_id": finding.device_id}) + "\n")


def work(url: str, name: str, findings: Path) -> None:
    """A worker until SIGTERM (then it releases its partitions)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    DetectionWorker(config(url), FileSink(findings, name), learning_seconds=LEARNING_SECONDS,
                    modes=ModeTable(DetectionMode.MONITOR), name=name).run(stop)


def produce(url: str, parity: int) -> None:
    """Publish the events of every other device, in time order, paced over a few seconds."""
    events = sorted((e for i in range(parity, DEVICES, 2) for e in device_events(i)),
                    key=lambda e: e.at)
    publisher = NatsEventPublisher(config(url))
    for start in range(0, len(events), 200):
        publisher.publish(events[start:start + 200])
        time.sleep(0.08)
    publisher.close()


if __name__ == "__main__":
    role, url, *rest = sys.argv[1:]
    if role == "worker":
        work(url, rest[0], Path(rest[1]))
    else:
        produce(url, int(rest[0]))
