"""How ``iotiam-agent gateway`` reports over MQTT: reports wait (bounded) while the
upstream session is down and go once it is up, each with a response topic and
correlation data; each refusal in an answer is one log line."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from iotiam.agent.gateway_reports import MqttReports, log_answer


class FakeClient:
    """What ``MqttReports`` uses of a paho client."""

    def __init__(self) -> None:
        self.up = False
        self.published: list[tuple[str, bytes, int, Any]] = []
        self.on_connect: Any = None
        self.callbacks: dict[str, Any] = {}

    def is_connected(self) -> bool:
        return self.up

    def publish(self, topic: str, payload: bytes, qos: int = 0, properties: Any = None
                ) -> None:
        self.published.append((topic, payload, qos, properties))

    def message_callback_add(self, topic: str, callback: Any) -> None:
        self.callbacks[topic] = callback


def test_reports_wait_for_the_session_then_go_ok() -> None:
    client = FakeClient()
    reports = MqttReports("gw-1", max_pending=2)
    reports.attach(client)
    reports.sightings(["tag-1"])
    reports.events([{"kind": "connect", "device_id": "tag-1", "ts": 1.0}])
    reports.sightings(["tag-2"])  # a third while down: the oldest is dropped
    assert client.published == [] and reports.dropped == 1
    client.up = True
    assert reports.flush() == 2
    (events, sightings) = client.published
    assert events[0] == "gateways/gw-1/reports/events" and events[2] == 1
    assert json.loads(events[1])["events"][0]["device_id"] == "tag-1"
    assert sightings[0] == "gateways/gw-1/reports/sightings"
    assert json.loads(sightings[1]) == {"children": ["tag-2"]}
    assert events[3].ResponseTopic == "gateways/gw-1/answers"
    assert events[3].CorrelationData != sightings[3].CorrelationData
    # once up, a report goes at once
    reports.sightings(["tag-3"])
    assert len(client.published) == 3 and reports.sent == 3


def test_answer_refused_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    client = FakeClient()
    client.up = True
    reports = MqttReports("gw-1")
    reports.attach(client)
    reports.sightings(["tag-9"])
    correlation = client.published[0][3].CorrelationData
    answer = {"report": "sightings",
              "results": [{"child": "tag-9", "accepted": False, "reason": "not its child"}]}
    with caplog.at_level(logging.WARNING, logger="iotiam.agent.gateway"):
        client.callbacks["gateways/gw-1/answers"](None, None, SimpleNamespace(
            payload=json.dumps(answer).encode(),
            properties=SimpleNamespace(CorrelationData=correlation)))
    assert [r.getMessage() for r in caplog.records] == [
        "sighting of tag-9 refused: not its child"]
    assert reports.answered == 1


@pytest.mark.parametrize(("kind", "answer", "lines"), [
    ("events", {"report": "events", "accepted": 2, "refused": []}, []),
    ("events", {"report": "events", "refused": [{"event": 3, "reason": "foreign"},
                                                {"event": 4, "reason": "x"}]},
     ["2 event(s) refused by the server: foreign"]),
    ("sightings", {"report": "sightings", "error": {"detail": "not valid JSON"}},
     ["sightings report refused by the server: not valid JSON"]),
], ids=["ok/all-taken", "fail/events-refused", "fail/whole-report"])
def test_log_answer(kind: str, answer: dict[str, Any], lines: list[str],
                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="iotiam.agent.gateway"):
        log_answer(kind, answer)
    assert [r.getMessage() for r in caplog.records] == lines
