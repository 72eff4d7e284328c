"""The broker watch without a broker: topic attribution, ``$SYS`` parsing, batching."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from iotiam.broker.broker_watch import (
    MAX_SYS_VALUES,
    BrokerWatch,
    SysStatistics,
    broker_statistics,
    device_of_topic,
)
from iotiam.detection.models import Event, EventKind
from iotiam.testing import free_port

SECRET = b"payload-that-must-never-be-kept"


@pytest.mark.parametrize(("topic", "device"), [
    pytest.param("devices/sensor-1/telemetry", "sensor-1", id="ok"),
    pytest.param("devices/sensor-1", "sensor-1", id="ok/namespace-root"),
    pytest.param("devices/s.1_x-2/a/b/c", "s.1_x-2", id="ok/deep"),
    pytest.param("devices/sensor-1/", "sensor-1", id="ok/empty-last-level"),
    pytest.param("sensors/sensor-1/t", None, id="fail/other-namespace"),
    pytest.param("devicesX/sensor-1/t", None, id="fail/namespace-prefix"),
    pytest.param("Devices/sensor-1/t", None, id="fail/namespace-case"),
    pytest.param("devices", None, id="fail/no-device"),
    pytest.param("devices//t", None, id="fail/empty-id"),
    pytest.param("devices/séance/t", None, id="fail/not-an-id"),
    pytest.param("devices/" + "a" * 129 + "/t", None, id="fail/id-too-long"),
    pytest.param("devices/iotiam-broker-admin/t", None, id="fail/reserved"),
    pytest.param("devices/admin/t", None, id="fail/reserved-name"),
    pytest.param("/devices/sensor-1/t", None, id="fail/leading-slash"),
])
def test_device_of_topic(topic: str, device: str | None) -> None:
    assert device_of_topic(topic) == device


@pytest.mark.parametrize(("topic", "payload", "key", "value"), [
    pytest.param("$SYS/broker/uptime", b"11 seconds", "uptime", 11, id="ok/uptime"),
    pytest.param("$SYS/broker/clients/connected", b"3", "clients/connected", 3, id="ok/gauge"),
    pytest.param("$SYS/broker/load/messages/received/1min", b"60.60",
                 "load/messages/received/1min", 60.6, id="ok/load"),
    pytest.param("$SYS/broker/retained messages/count", b"53", "retained messages/count", 53,
                 id="ok/space-in-topic"),
    pytest.param("$SYS/broker/version", b"mosquitto version 2.0.11", "version",
                 "mosquitto version 2.0.11", id="ok/version"),
    pytest.param("$SYS/broker/clients/connected", b"three", None, None, id="fail/not-a-number"),
    pytest.param("$SYS/broker/uptime", b"11 minutes", None, None, id="fail/uptime-unit"),
    pytest.param("$SYS/broker/uptime", b"11", None, None, id="fail/uptime-no-unit"),
    pytest.param("$SYS/broker/heap/current", b"\xff\xfe", None, None, id="fail/not-ascii"),
    pytest.param("$SYS/broker/load/x/1min", b"in.f", None, None, id="fail/bad-float"),
    pytest.param("$SYS/broker/load/x/1min", b"nan", None, None, id="fail/nan"),
    pytest.param("$SYS/broker/version", b"", None, None, id="fail/empty-version"),
    pytest.param("$SYS/other/thing", b"1", None, None, id="fail/not-broker"),
    pytest.param("$SYS/broker/", b"1", None, None, id="fail/no-key"),
])
def test_sys_values(topic: str, payload: bytes, key: str | None,
                    value: float | int | str | None) -> None:
    stats = SysStatistics()
    assert stats.update(topic, payload, 100.0) is (key is not None)
    if key is None:
        assert stats.malformed == 1 and stats.values == {}
    else:
        assert stats.values == {key: value} and stats.malformed == 0
        assert stats.snapshot()["updated_at"] == "1970-01-01T00:01:40+00:00"


def _tick(stats: SysStatistics, uptime: int, **counters: int) -> None:
    stats.update("$SYS/broker/uptime", f"{uptime} seconds".encode(), float(uptime))
    for name, value in counters.items():
        stats.update(f"$SYS/broker/{name.replace('__', '/')}", str(value).encode(), uptime)


def test_sys_rates_ok_per_period_and_unchanged_is_zero() -> None:
    stats = SysStatistics()
    _tick(stats, 0, publish__messages__received=0, bytes__sent=0)
    assert stats.rates() == {}  # one sample: no rate yet
    _tick(stats, 11, publish__messages__received=110, bytes__sent=2200)
    assert stats.rates() == {"publish/messages/received": 10.0, "bytes/sent": 200.0}
    _tick(stats, 22, bytes__sent=2200 + 11)  # received not republished: unchanged
    assert stats.rates() == {"publish/messages/received": 0.0, "bytes/sent": 1.0}
    assert stats.snapshot()["uptime_seconds"] == 22


def test_sys_rates_ok_retained_replay_is_no_new_period() -> None:
    stats = SysStatistics()
    _tick(stats, 0, messages__sent=0)
    _tick(stats, 11, messages__sent=22)
    # a reconnect replays the retained set with the same uptime
    _tick(stats, 11, messages__sent=22)
    assert stats.rates() == {"messages/sent": 2.0}


def test_sys_rates_fail_restart_forgets_counters() -> None:
    stats = SysStatistics()
    _tick(stats, 0, messages__sent=0)
    _tick(stats, 11, messages__sent=22)
    stats.update("$SYS/broker/clients/connected", b"4", 11.0)
    _tick(stats, 0)
    assert stats.restarts == 1 and stats.rates() == {}
    assert "messages/sent" not in stats.values and stats.values["clients/connected"] == 4
    _tick(stats, 0, messages__sent=5)
    _tick(stats, 11, messages__sent=16)
    assert stats.rates() == {"messages/sent": 1.0}


def test_sys_values_fail_bounded() -> None:
    stats = SysStatistics()
    for i in range(MAX_SYS_VALUES + 10):
        stats.update(f"$SYS/broker/x/{i}", b"1", 0.0)
    assert len(stats.values) == MAX_SYS_VALUES and stats.malformed == 10


class Collected:
    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[Event]] = []
        self.fail = fail
        self.got = threading.Event()

    def __call__(self, events: list[Event]) -> None:
        self.batches.append(events)
        self.got.set()
        if self.fail:
            raise RuntimeError("consumer down")


def message(topic: str, payload: bytes = SECRET, *, retain: bool = False) -> mqtt.MQTTMessage:
    msg = mqtt.MQTTMessage(topic=topic.encode())
    msg.payload = payload
    msg.retain = retain
    return msg


def feed(watch: BrokerWatch, msg: mqtt.MQTTMessage) -> None:
    watch._on_message(watch._client, None, msg)  # what paho's network thread calls


def watch_for(collected: Collected | None, *, max_pending: int = 100,
              batch_events: int = 10, batch_seconds: float = 0.1) -> BrokerWatch:
    return BrokerWatch("127.0.0.1", free_port(), "iotiam-broker-admin", "pw",
                       deliver=collected, clock=lambda: 1000.0, max_pending=max_pending,
                       batch_events=batch_events, batch_seconds=batch_seconds)


def test_messages_ok_attributed_sized_never_payload() -> None:
    collected = Collected()
    watch = watch_for(collected)
    feed(watch, message("devices/sensor-1/telemetry"))
    feed(watch, message("devices/sensor-1/state", retain=True))  # replayed on subscribing
    feed(watch, message("factory/line-1/t"))
    feed(watch, message("$SYS/broker/clients/connected", b"2"))
    watch._flush()
    (batch,) = collected.batches
    assert batch == [Event(kind=EventKind.PUBLISH, at=1000.0, device_id="sensor-1",
                           topic="devices/sensor-1/telemetry", size=len(SECRET))]
    assert SECRET.decode() not in repr(batch) and SECRET.decode() not in str(batch[0].to_json())
    stats = watch.statistics()
    assert stats["messages"] == {"seen": 3, "ingested": 1, "unattributed": 1,
                                 "retained_skipped": 1, "dropped": 0, "pending": 0,
                                 "deliver_errors": 0}
    assert stats["values"] == {"clients/connected": 2} and stats["connected"] is False


def test_messages_fail_bounded_when_consumer_lags() -> None:
    collected = Collected()
    watch = watch_for(collected, max_pending=3, batch_events=2)
    for _ in range(5):
        feed(watch, message("devices/d1/t"))
    assert watch.dropped == 2 and watch.ingested == 3
    watch._flush()
    assert [len(b) for b in collected.batches] == [2, 1]  # never more than a batch at once


def test_messages_fail_consumer_error_counted_not_raised() -> None:
    collected = Collected(fail=True)
    watch = watch_for(collected, batch_seconds=0.02)
    watch.start()  # nothing listens on that port: it keeps retrying, never raises
    try:
        feed(watch, message("devices/d1/t"))
        assert collected.got.wait(2)
    finally:
        watch.stop()
    assert watch.deliver_errors == 1


def test_sys_only_ok_without_deliver_and_registry() -> None:
    assert broker_statistics() is None
    watch = watch_for(None)
    watch.start()
    try:
        feed(watch, message("devices/d1/t"))  # would not even be subscribed to
        feed(watch, message("$SYS/broker/uptime", b"5 seconds"))
        stats = broker_statistics()
        assert stats is not None and stats["uptime_seconds"] == 5 and "messages" not in stats
    finally:
        watch.stop()
    assert broker_statistics() is None
