"""The log follower on a plain file: batches, partial lines, rotation, truncation."""

from __future__ import annotations

import os
from pathlib import Path

from iotiam.broker.event_source import BrokerEventSource
from iotiam.detection.models import Event

T = "2026-12-05T22:52:46+0000: "


def connect(n: int) -> str:
    return f"{T}New client connected from 10.0.0.{n}:1000 as c{n} (p5, c1, k30, u'dev-{n}').\n"


class Batches:
    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    def __call__(self, events: list[Event]) -> None:
        self.batches.append(events)

    @property
    def devices(self) -> list[str | None]:
        return [e.device_id for batch in self.batches for e in batch]


def source(path: Path, sink: Batches, **options: object) -> BrokerEventSource:
    return BrokerEventSource(path, sink, batch_seconds=0.0, **options)  # type: ignore[arg-type]


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_event_source_ok_follows_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text(connect(1))  # history from before serve started: not replayed
    sink = Batches()
    src = source(log, sink)
    src.start()
    append(log, connect(3))
    src.stop()
    assert sink.devices == ["dev-3"]


def test_event_source_ok_partial_line_waits_for_its_end(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    sink = Batches()
    src = source(log, sink)
    line = connect(1)
    log.write_text(line[:30])
    src.poll()
    assert sink.devices == []
    append(log, line[30:])
    src.poll()
    assert sink.devices == ["dev-1"]


def test_event_source_ok_batches_by_size(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("".join(connect(n) for n in range(1, 8)))
    sink = Batches()
    src = BrokerEventSource(log, sink, batch_events=3, batch_seconds=60)
    src.poll()  # never started: reads the file from its start
    assert [len(b) for b in sink.batches] == [3, 3]
    src._flush()
    assert [len(b) for b in sink.batches] == [3, 3, 1]


def test_event_source_ok_external_rotation_and_truncation(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    sink = Batches()
    src = source(log, sink)
    src.poll()
    append(log, connect(1))
    os.replace(log, tmp_path / "mosquitto.log.1")  # logrotate: rename, then HUP
    append(tmp_path / "mosquitto.log.1", connect(2))  # written before the broker reopened
    log.write_text(connect(3))
    for _ in range(3):
        src.poll()
    assert sink.devices == ["dev-1", "dev-2", "dev-3"]
    log.write_text("")  # copytruncate: the same file, emptied ...
    src.poll()
    append(log, connect(4))  # ... and written again
    for _ in range(2):
        src.poll()
    assert sink.devices[-1] == "dev-4"


def test_event_source_ok_rotates_big_log_itself(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    hups: list[int] = []
    sink = Batches()
    src = source(log, sink, rotate=lambda: hups.append(1), max_log_bytes=10)
    src.poll()
    append(log, connect(1))
    src.poll()  # reads
    src.poll()  # idle: rotates
    assert hups == [1] and not log.exists()
    assert (tmp_path / "mosquitto.log.1").exists()
    log.write_text(connect(2))  # the broker reopened after the HUP
    src.poll()
    src.poll()
    assert sink.devices == ["dev-1", "dev-2"]


def test_event_source_fail_consumer_error_does_not_stop_it(tmp_path: Path) -> None:
    log = tmp_path / "mosquitto.log"
    log.write_text("")
    calls: list[int] = []

    def broken(events: list[Event]) -> None:
        calls.append(len(events))
        if len(calls) == 1:
            raise RuntimeError("detection is down")

    src = BrokerEventSource(log, broken, batch_seconds=0.0)
    src.poll()
    append(log, connect(1) + "garbage\n")
    src.poll()
    append(log, connect(2))
    src.poll()
    assert calls == [1, 1] and src.deliver_errors == 1
    assert src.stats.malformed == 1
    assert src.stats.events == 2
