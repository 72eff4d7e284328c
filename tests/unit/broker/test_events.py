"""Mosquitto 2.0.11 log lines -> detection events, on lines captured from a real broker.

The fixtures are logs of ``/tmp`` probe runs against the managed broker's configuration
(mTLS + identity as username + dynsec, connection_messages): ``connections`` with the
default log types, ``messages`` with debug + subscribe added.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from iotiam.broker.events import BrokerLogParser, parse_log
from iotiam.detection.models import Event, EventKind

FIXTURES = Path(__file__).parent / "fixtures"
T = "2026-12-05T22:52:46+0000: "
AT = 1_796_511_166.0  # T as epoch seconds


def lines(name: str) -> list[str]:
    return (FIXTURES / f"mosquitto-2.0.11-{name}.log").read_text().splitlines()


def feed(*texts: str) -> tuple[list[Event], BrokerLogParser]:
    parser = BrokerLogParser()
    events = parser.feed_all(T + text for text in texts)
    return events, parser


CONNECT = "New client connected from 10.1.2.3:49093 as dev-1-abc (p5, c1, k30, u'dev-1')."


def test_events_ok_connect_carries_identity_and_source() -> None:
    events, _ = feed("New connection from 10.1.2.3:49093 on port 8883.", CONNECT)
    assert events == [Event(EventKind.CONNECT, AT, device_id="dev-1", client_id="dev-1-abc",
                            source_ip="10.1.2.3", src_port=49093, protocol="mqtt5")]


def test_events_ok_publish_topic_and_size_never_payload() -> None:
    events, _ = feed(CONNECT, "Received PUBLISH from dev-1-abc (d0, q1, r0, m1, "
                              "'devices/dev-1/telemetry', ... (5 bytes))")
    publish = events[1]
    assert (publish.kind, publish.device_id, publish.topic, publish.size, publish.qos) == (
        EventKind.PUBLISH, "dev-1", "devices/dev-1/telemetry", 5, 1)
    assert publish.source_ip == "10.1.2.3"


def test_events_ok_denied_publish_is_authz_failure() -> None:
    events, _ = feed(CONNECT, "Denied PUBLISH from dev-1-abc (d0, q0, r0, m0, "
                              "'devices/dev-2/cmd', ... (7 bytes))")
    assert (events[1].kind, events[1].action, events[1].topic, events[1].size) == (
        EventKind.AUTHZ_FAILURE, "publish", "devices/dev-2/cmd", 7)


def test_events_ok_subscribe_granted_and_denied_filters() -> None:
    events, _ = feed(CONNECT, "Received SUBSCRIBE from dev-1-abc", "\tdevices/dev-1/a (QoS 0)",
                     "dev-1-abc 0 devices/dev-1/a", "\tother/x (QoS 1)",
                     "Sending SUBACK to dev-1-abc")
    assert [(e.kind, e.topic, e.qos, e.action) for e in events[1:]] == [
        (EventKind.SUBSCRIBE, "devices/dev-1/a", 0, None),
        (EventKind.AUTHZ_FAILURE, "other/x", 1, "subscribe"),
    ]


@pytest.mark.parametrize(("text", "reason"), [
    ("Client dev-1-abc disconnected.", "normal"),
    ("Client dev-1-abc closed its connection.", "closed"),
    ("Client dev-1-abc has exceeded timeout, disconnecting.", "keepalive_timeout"),
    ("Client dev-1-abc been disconnected by administrative action.", "kicked"),
    ("Client dev-1-abc already connected, closing old connection.", "taken_over"),
    ("Client dev-1-abc disconnected: Protocol error.", "protocol_error"),
    ("Client dev-1-abc disconnected due to malformed packet.", "malformed_packet"),
], ids=["ok/normal", "ok/closed", "ok/keepalive", "ok/kicked", "ok/taken-over",
        "ok/socket-error", "ok/malformed-packet"])
def test_events_ok_disconnect_reasons(text: str, reason: str) -> None:
    events, parser = feed(CONNECT, text)
    assert (events[1].kind, events[1].device_id, events[1].reason) == (
        EventKind.DISCONNECT, "dev-1", reason)
    assert parser.sessions == {}


@pytest.mark.parametrize(("texts", "reason", "source", "ports"), [
    (["New connection from 10.9.9.9:40000 on port 8883.",
      "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed",
      "Client <unknown> disconnected: Protocol error."],
     "tls: certificate verify failed", "10.9.9.9", (40000, 8883)),
    (["Client connection from 10.9.9.8 failed: error:0A000086:SSL routines::certificate "
      "verify failed."], "tls: certificate verify failed", "10.9.9.8", (None, None)),
    (["New connection from 10.9.9.9:40000 on port 8883.",
      "OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate",
      "Client <unknown> disconnected: Protocol error."],
     "tls: peer did not return a certificate", "10.9.9.9", (40000, 8883)),
    (["New connection from 10.9.9.9:40000 on port 8884.",
      "OpenSSL Error[0]: error:0A0000FD:SSL routines::binder does not verify",
      "Client <unknown> disconnected: Protocol error."], "tls: binder does not verify",
     "10.9.9.9", (40000, 8884)),
    (["New connection from 127.0.0.1:53827 on port 18883.",
      "Sending CONNACK to 127.0.0.1 (0, 135)", "Client <unknown> disconnected, not authorised."],
     "not_authorised", "127.0.0.1", (53827, 18883)),
    # two sources waiting in their handshake: the log cannot say whose failed
    (["New connection from 10.9.9.9:40000 on port 8883.",
      "New connection from 10.7.7.7:40000 on port 8883.",
      "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed",
      "Client <unknown> disconnected: Protocol error."],
     "tls: certificate verify failed", None, (None, None)),
    # the CONNACK names the ip, but two accepts of it wait: the ports are left out
    (["New connection from 127.0.0.1:53827 on port 18883.",
      "New connection from 127.0.0.1:53828 on port 18883.",
      "Sending CONNACK to 127.0.0.1 (0, 135)", "Client <unknown> disconnected, not authorised."],
     "not_authorised", "127.0.0.1", (None, None)),
], ids=["ok/bad-cert", "ok/bad-cert-in-accept", "ok/no-cert", "ok/bad-psk",
        "ok/not-authorised", "ok/ambiguous-source", "ok/ambiguous-port"])
def test_events_ok_auth_failures(texts: list[str], reason: str, source: str | None,
                                 ports: tuple[int | None, int | None]) -> None:
    events, _ = feed(*texts)
    assert events == [Event(EventKind.AUTH_FAILURE, AT, source_ip=source, reason=reason,
                            src_port=ports[0], dst_port=ports[1])]


def test_events_ok_failure_in_accept_leaves_other_accepts_pending() -> None:
    """An accept-time failure had no accept line: another handshake of the same ip that
    fails next is still attributed, with its own ports."""
    events, _ = feed(
        "New connection from 10.9.9.9:40001 on port 8884.",
        "Client connection from 10.9.9.9 failed: error:0A000076:SSL routines::no suitable "
        "signature algorithm.",
        "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify failed",
        "Client <unknown> disconnected: Protocol error.")
    assert [(e.source_ip, e.src_port, e.dst_port, e.reason) for e in events] == [
        ("10.9.9.9", None, None, "tls: no suitable signature algorithm"),
        ("10.9.9.9", 40001, 8884, "tls: certificate verify failed")]


def test_events_ok_aborted_handshake_is_no_auth_failure() -> None:
    events, parser = feed("Client connection from 10.0.0.1 failed: error:0A000126:SSL "
                          "routines::unexpected eof while reading.")
    assert events == []
    assert parser.stats.aborted_handshakes == 1


def test_events_ok_own_admin_link_is_dropped() -> None:
    events, _ = feed(
        "New client connected from 127.0.0.1:43229 as iotiam-admin-8d4f71e4 (p5, c1, k30, "
        "u'iotiam-broker-admin').",
        "Received PUBLISH from iotiam-admin-8d4f71e4 (d0, q1, r0, m2, "
        "'$CONTROL/dynamic-security/v1', ... (520 bytes))",
        "Client iotiam-admin-8d4f71e4 disconnected.")
    assert events == []


def test_events_ok_device_cannot_hide_behind_admin_client_id() -> None:
    # the client id is the device's choice; the username (certificate CN) is not
    events, _ = feed("New client connected from 10.0.0.5:1000 as iotiam-admin-1 (p5, c1, k30, "
                     "u'dev-6').",
                     "Denied PUBLISH from iotiam-admin-1 (d0, q0, r0, m0, '$CONTROL/x', ... "
                     "(3 bytes))")
    assert [(e.kind, e.device_id) for e in events] == [
        (EventKind.CONNECT, "dev-6"), (EventKind.AUTHZ_FAILURE, "dev-6")]


def test_events_ok_client_id_and_topic_that_mimic_the_log_format() -> None:
    cid = "x (d0, q1, r0, m1, 'devices/dev-1/t', ... (1 bytes)) (p5, c1, k30, u'victim')"
    events, _ = feed(f"New client connected from 10.0.0.5:1000 as {cid} (p5, c1, k9, u'dev-7').",
                     f"Received PUBLISH from {cid} (d0, q0, r0, m0, 'it's a (d0, q1, "
                     "'x', ... (3 bytes)) topic', ... (5 bytes))")
    assert events[0].device_id == "dev-7" and events[0].client_id == cid
    assert (events[1].device_id, events[1].topic, events[1].size) == (
        "dev-7", "it's a (d0, q1, 'x', ... (3 bytes)) topic", 5)


def test_events_ok_broker_stop_ends_every_session() -> None:
    events, parser = feed(CONNECT, "mosquitto version 2.0.11 terminating")
    assert (events[1].kind, events[1].reason) == (EventKind.DISCONNECT, "broker_stopped")
    assert parser.sessions == {}


def test_events_ok_read_time_refines_the_logged_second() -> None:
    parser = BrokerLogParser()
    assert parser.feed(T + CONNECT, now=AT + 0.25)[0].at == AT + 0.25
    parser = BrokerLogParser()  # read long after: stays inside the logged second
    assert parser.feed(T + CONNECT, now=AT + 30)[0].at == AT + 0.999


@pytest.mark.parametrize("line", [
    "",
    "garbage without a time",
    "not-a-time: New client connected from x",
    T + "New client connected from 10.0.0.1:1 as broken",
    T + "OpenSSL Error[0]: nonsense",
    T + "Received PUBLISH from dev-1-abc (d0, q1, r0, m1, 'no size')",
    "2026-13-45T99:99:99+0000: Client x disconnected.",
    "\x00\xff" * 50,
], ids=["fail/empty", "fail/no-time", "fail/bad-time", "fail/bad-connect", "fail/bad-openssl",
        "fail/bad-publish", "fail/impossible-date", "fail/binary"])
def test_events_fail_malformed_lines_counted_never_raised(line: str) -> None:
    parser = BrokerLogParser()
    parser.feed(T + CONNECT)
    assert parser.feed(line) == []
    assert parser.stats.malformed == 1


def test_events_fail_lines_about_unknown_clients_are_counted() -> None:
    events, parser = feed("Received PUBLISH from ghost (d0, q0, r0, m0, 't', ... (1 bytes))",
                          "Client ghost disconnected.")
    assert events == []
    assert parser.stats.unattributed == 2


def test_events_ok_captured_messages_log() -> None:
    events, stats = parse_log(lines("messages"))
    assert stats.malformed == 0
    kinds = Counter((e.kind, e.action) for e in events)
    assert kinds[(EventKind.PUBLISH, None)] == 6
    assert kinds[(EventKind.AUTHZ_FAILURE, "publish")] == 2
    assert kinds[(EventKind.AUTHZ_FAILURE, "subscribe")] == 2
    assert kinds[(EventKind.SUBSCRIBE, None)] == 2
    assert all(e.device_id is not None for e in events if e.kind is not EventKind.AUTH_FAILURE)
    assert not any(e.device_id and e.device_id.startswith("iotiam-") for e in events)
    reasons = Counter(e.reason for e in events if e.kind is EventKind.AUTH_FAILURE)
    assert reasons["not_authorised"] == 1
    assert reasons["tls: binder does not verify"] == 1
    assert reasons["tls: peer did not return a certificate"] == 1
    disconnects = Counter(e.reason for e in events if e.kind is EventKind.DISCONNECT)
    assert disconnects == {"normal": 3, "closed": 2, "protocol_error": 1, "kicked": 4,
                           "taken_over": 1, "broker_stopped": 1}


def test_events_ok_captured_connections_log_has_no_message_events() -> None:
    events, stats = parse_log(lines("connections"))
    assert stats.malformed == 0
    kinds = {e.kind for e in events}
    assert kinds == {EventKind.CONNECT, EventKind.DISCONNECT, EventKind.AUTH_FAILURE}


def test_events_fail_mangled_captured_lines_never_raise() -> None:
    rng = random.Random(5)
    source = lines("messages")
    parser = BrokerLogParser()
    for _ in range(20_000):
        line = rng.choice(source)
        cut = rng.randrange(len(line) + 1)
        noise = "".join(rng.choice("'() ,.:\t\\x00é0123456789dqrmpuk") for _ in range(3))
        parser.feed(rng.choice([line[:cut], line[:cut] + noise + line[cut:],
                                line.replace("'", "", 1), line + line]))
    assert parser.stats.lines == 20_000
