"""The event schema's JSON form: what is accepted, what is refused and why."""

from __future__ import annotations

from typing import Any

import pytest

from iotiam.detection.models import Event, EventKind
from iotiam.errors import InvalidInput

OK = {"kind": "publish", "ts": "2026-03-02T12:00:00.250Z", "device_id": "s1",
      "topic": "devices/s1/telemetry", "size": 120}


def test_ok_round_trip() -> None:
    event = Event.from_json(OK)
    assert event.kind is EventKind.PUBLISH and event.at == 1772452800.25
    assert Event.from_json(event.to_json()) == event


def test_ok_epoch_seconds_and_unknown_client_auth_failure() -> None:
    event = Event.from_json({"kind": "auth_failure", "ts": 1772452800, "client_id": "x",
                             "source_ip": "2001:db8::1"})
    assert event.device_id is None and event.at == 1772452800.0


@pytest.mark.parametrize(("data", "message"), [
    pytest.param([1, 2], "must be a JSON object", id="fail/not-an-object"),
    pytest.param({**OK, "payload": "x"}, "unknown event field(s): payload", id="fail/unknown"),
    pytest.param({**OK, "kind": "reboot"}, "'kind' must be one of", id="fail/kind"),
    pytest.param({**OK, "ts": None}, "'ts' is required", id="fail/no-ts"),
    pytest.param({**OK, "ts": "yesterday"}, "not an ISO 8601 time", id="fail/bad-ts"),
    pytest.param({**OK, "ts": "2026-03-02T12:00:00"}, "needs a time zone", id="fail/naive-ts"),
    pytest.param({**OK, "ts": -1}, "out of range", id="fail/ts-range"),
    pytest.param({**OK, "size": -5}, "'size' must be a non-negative integer", id="fail/size"),
    pytest.param({**OK, "size": True}, "'size' must be a non-negative integer",
                 id="fail/size-bool"),
    pytest.param({**OK, "source_ip": "10.0.0.300"}, "is not an IP address", id="fail/ip"),
    pytest.param({**OK, "topic": ""}, "'topic' must be a non-empty string", id="fail/topic"),
    pytest.param({**OK, "topic": "x" * 2000}, "at most 1024", id="fail/long-topic"),
    pytest.param({k: v for k, v in OK.items() if k != "device_id"}, "needs a 'device_id'",
                 id="fail/no-device"),
    pytest.param({k: v for k, v in OK.items() if k != "topic"}, "needs a 'topic'",
                 id="fail/publish-without-topic"),
    pytest.param({"kind": "flow", "ts": 1, "device_id": "g", "dst_ip": "10.0.0.1"},
                 "needs 'dst_ip' and 'dst_port'", id="fail/flow-without-port"),
])
def test_fail_bad_input(data: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        Event.from_json(data)
    assert message in caught.value.detail
