"""The stream's wire format: a batch of events survives the trip exactly."""

from __future__ import annotations

import pytest

from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity
from iotiam.errors import InvalidInput
from iotiam.eventstream.wire import (
    EventStreamConfig,
    decode_events,
    decode_message,
    encode_events,
    encode_false_positive,
)

AT = 1_800_000_000.123456


def test_wire_ok_round_trip_keeps_every_field_and_exact_time() -> None:
    events = [
        Event(EventKind.FLOW, AT, device_id="gw-1", device_type="gateway",
              source_ip="10.0.0.1", dst_ip="10.0.0.2", dst_port=502, src_port=4000,
              protocol="tcp", bytes=10, packets=1),
        Event(EventKind.AUTH_FAILURE, AT + 1, source_ip="::1", client_id="who",
              reason="bad password"),
    ]
    assert decode_events(encode_events(events)) == events


@pytest.mark.parametrize("body", [b"not json", b"{}", b'[{"kind": "nope", "ts": 1}]',
                                  b'[{"kind": "publish", "ts": 1, "device_id": "d"}]'])
def test_wire_fail_not_a_batch_of_events(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_events(body)


def test_config_ok_subjects_and_buckets_named_after_the_stream() -> None:
    config = EventStreamConfig("nats://127.0.0.1:4222", partitions=4, stream="EV")
    assert config.subject(3) == "iotiam.events.3"
    assert {config.leases_bucket, config.workers_bucket, config.snapshots_bucket} == {
        "EV_leases", "EV_workers", "EV_baselines"}
    assert "partitions=4" in config.description


def test_wire_ok_false_positive_round_trip() -> None:
    finding = Finding(FindingType.RATE_CHANGE, Severity.HIGH, AT, "dev-1", "rate up",
                      "rate_change", {"factor": 12.5, "metric": "aws:num-messages-sent"},
                      "sensor")
    assert decode_message(encode_false_positive(finding)) == finding
    events = [Event(EventKind.CONNECT, AT, device_id="d")]
    assert decode_message(encode_events(events)) == events


def test_wire_fail_damaged_false_positive() -> None:
    with pytest.raises(InvalidInput):
        decode_message(b'{"false_positive": {"type": "nope"}}')


def test_wire_ok_batch_travels_and_version_1_is_still_read() -> None:
    events = [Event(EventKind.CONNECT, AT, device_id="d", batch="bat-1"),
              Event(EventKind.CONNECT, AT + 1, device_id="d")]
    assert decode_events(encode_events(events)) == events
    old_row = ["connect", AT, "d", *([None] * 16)]
    assert decode_events(b'[1,' + str(old_row).replace("None", "null").replace(
        "'", '"').encode() + b']') == [Event(EventKind.CONNECT, AT, device_id="d")]
    with pytest.raises(InvalidInput):
        decode_events(b'[2,["connect",1.0,"d"' + b',null' * 16 + b',7]]')


def test_wire_ok_version_2_rows_are_still_read() -> None:
    row = ["publish", AT, "d", *([None] * 3), "t/1", None, 12, *([None] * 10), "bat-2"]
    body = b"[2," + str(row).replace("None", "null").replace("'", '"').encode() + b"]"
    assert decode_events(body) == [Event(EventKind.PUBLISH, AT, device_id="d", topic="t/1",
                                         size=12, batch="bat-2")]


def test_wire_ok_columns_left_out_when_no_event_has_them() -> None:
    body = encode_events([Event(EventKind.CONNECT, AT, device_id="d"),
                          Event(EventKind.PUBLISH, AT, device_id="e", size=0)])
    assert body.startswith(b"[3,") and b'"size":[null,0]' in body and b"topic" not in body
    assert decode_events(encode_events([])) == []


@pytest.mark.parametrize("body", [
    b'[3,["connect"],[1.0],["d"]]',  # no optional columns
    b'[3,["connect"],[1.0,2.0],["d"],{}]',  # columns of different lengths
    b'[3,["nope"],[1.0],["d"],{}]',  # unknown kind
    b'[3,["connect"],[true],["d"],{}]',  # a time that is not a number
    b'[3,["connect"],[1.0],[7],{}]',  # a device id that is not a string
    b'[3,["connect"],[1.0],["d"],{"size":["12"]}]',  # a string where an int belongs
    b'[3,["connect"],[1.0],["d"],{"qos":[1,2]}]',  # a column longer than the rest
    b'[3,["connect"],[1.0],["d"],{"payload":["x"]}]',  # a column no event has
])
def test_wire_fail_damaged_columns(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode_events(body)
