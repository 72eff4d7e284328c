"""GET /v1/detection/stats: the broker's statistics appear only while a watch runs."""

from __future__ import annotations

import paho.mqtt.client as mqtt

from conftest import Installation
from iotiam.broker.broker_watch import BrokerWatch
from iotiam.testing import free_port


def test_stats_ok_without_broker_watch(installation: Installation) -> None:
    answer = installation.api().get("/v1/detection/stats")
    assert answer.status_code == 200, answer.text
    assert "broker" not in answer.json() and answer.json()["events_seen"] == 0


def test_stats_ok_with_broker_watch(installation: Installation) -> None:
    watch = BrokerWatch("127.0.0.1", free_port(), "iotiam-broker-admin", "pw")
    watch.start()  # nothing listens there: it retries in the background
    try:
        uptime = mqtt.MQTTMessage(topic=b"$SYS/broker/uptime")
        uptime.payload = b"42 seconds"
        watch._on_message(watch._client, None, uptime)
        answer = installation.api().get("/v1/detection/stats")
    finally:
        watch.stop()
    assert answer.status_code == 200, answer.text
    broker = answer.json()["broker"]
    assert broker["uptime_seconds"] == 42 and broker["connected"] is False
    assert broker["values"] == {"uptime": 42} and "messages" not in broker


def test_stats_ok_alerts_with_no_channel_counted_as_undelivered(
        installation: Installation) -> None:
    from fleet import add_device, issue

    from iotiam.detection.models import Finding, FindingType, Severity
    from iotiam.kernel import SYSTEM

    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    installation.services.response.set_mode(SYSTEM, "sensor", "monitor")
    installation.services.response.handle([Finding(
        type=FindingType.RATE_CHANGE, severity=Severity.HIGH, at=1_772_366_400.0,
        device_id="s1", summary="rate", detector="test", evidence={})])
    stats = api.get("/v1/detection/stats").json()
    assert stats["alerts_sent"] == 0
    assert stats["alerts_undelivered"] == {"no_channel": 1}
