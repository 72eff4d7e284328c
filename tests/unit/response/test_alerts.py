"""Alert channels: the signed webhook's signature and RFC 5424 syslog on a real socket."""

from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from iotiam.response.alerts import (
    AlertDispatcher,
    SyslogChannel,
    sign_webhook,
    verify_webhook_signature,
)

ALERT = {"finding_id": "fnd-1", "type": "topic_probing", "severity": "high",
         "device_id": 'dev"1]', "summary": "probing", "evidence": {"topics": 5}}
RFC5424 = re.compile(rb'^<(?P<pri>\d+)>1 (?P<ts>\S+Z) \S+ iotiam - finding '
                     rb'\[finding@32473 id="fnd-1" type="topic_probing" '
                     rb'device="dev\\"1\\]" severity="high"\] \xef\xbb\xbf(?P<msg>\{.*\})$')


def test_ok_syslog_over_udp_is_rfc5424() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(5)
        port = listener.getsockname()[1]
        dispatcher = AlertDispatcher([SyslogChannel("127.0.0.1", port)])
        dispatcher.send(ALERT)
        message, _ = listener.recvfrom(65536)
        dispatcher.close()
    match = RFC5424.match(message)
    assert match, message
    assert int(match["pri"]) == 10 * 8 + 3  # security/authorization, error (high)
    assert b'"device_id":"dev\\"1]"' in match["msg"]
    assert dispatcher.sent == 1 and dispatcher.failed == 0


def test_ok_syslog_over_tcp_uses_octet_counting() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(5)
        port = listener.getsockname()[1]
        SyslogChannel("127.0.0.1", port, tcp=True).deliver(ALERT)
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    length, _, message = data.partition(b" ")
    assert int(length) == len(message) and RFC5424.match(message)


def test_fail_unreachable_channel_is_counted_and_others_still_get_it() -> None:
    class Failing:
        name = "failing"

        def deliver(self, alert: object) -> None:
            raise OSError("connection refused")

    class Keeping:
        name = "keeping"

        def __init__(self) -> None:
            self.got: list[object] = []

        def deliver(self, alert: object) -> None:
            self.got.append(alert)

    keeping = Keeping()
    dispatcher = AlertDispatcher([Failing(), keeping])
    dispatcher.send(ALERT)
    dispatcher.flush()
    dispatcher.close()
    assert dispatcher.failed == 1 and keeping.got == [ALERT]


def test_fail_signature_checks() -> None:
    secret, body, now = b"k" * 32, b'{"a":1}', int(time.time())
    header = sign_webhook(secret, body, now)
    assert verify_webhook_signature(secret, body, header, now=now)
    assert not verify_webhook_signature(secret, body + b" ", header, now=now)  # tampered
    assert not verify_webhook_signature(b"x" * 32, body, header, now=now)  # other key
    assert not verify_webhook_signature(secret, body, header, now=now + 3600)  # replayed late
    assert not verify_webhook_signature(secret, body, "t=abc,v1=00", now=now)  # garbage
    assert not verify_webhook_signature(secret, body, "", now=now)


def test_ok_undelivered_alerts_counted_by_reason() -> None:
    nowhere = AlertDispatcher([])
    nowhere.send({"finding_id": "f1"})
    assert nowhere.undelivered == {"no_channel": 1}

    class Broken:
        name = "broken"

        def deliver(self, alert: object) -> None:
            raise OSError("refused")

    failing = AlertDispatcher([Broken()])
    failing.send({"finding_id": "f2"})
    failing.flush()
    failing.close()
    assert failing.undelivered == {"delivery_failed": 1} and failing.failed == 1


def test_ok_serve_warns_when_the_playbook_alerts_into_no_channel(
        caplog: pytest.LogCaptureFixture) -> None:
    from iotiam.api.server import warn_if_alerts_go_nowhere
    from iotiam.response.models import DEFAULT_PLAYBOOK, Playbook

    with caplog.at_level(logging.WARNING):
        warn_if_alerts_go_nowhere(DEFAULT_PLAYBOOK, AlertDispatcher([]))
    assert "no alert channel is configured" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_if_alerts_go_nowhere(Playbook(rules=()), AlertDispatcher([]))
        warn_if_alerts_go_nowhere(DEFAULT_PLAYBOOK, AlertDispatcher([SyslogChannel(
            "127.0.0.1", 9)]))
    assert caplog.text == ""
