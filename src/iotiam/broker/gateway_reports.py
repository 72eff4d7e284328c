"""Gateways' reports over MQTT: iotiam reads them on the broker and answers each.

A gateway publishes its children's sightings and events on its own report topics
(``gateways/<id>/reports/sightings|events``, QoS 1, the JSON bodies of the HTTPS
endpoints) with its own mTLS session. The broker lets only that gateway publish there
(``policy.broker_acl.with_reports``, or the plugin's ``Gateways.decide_report_topic``),
so the topic names the gateway as its certificate would on HTTPS. This client, on the
admin listener with the admin's credentials, reads them through a shared subscription
(``layout.REPORTS_SUBSCRIPTION``: with several replicas on one broker, each report goes
to one of them), hands each to the report use case (``gateways.reports.GatewayReports``,
the HTTPS endpoints' code) and publishes the answer on the gateway's answers topic
(``gateways/<id>/answers``, QoS 1) with the report's MQTT v5 correlation data: the
HTTPS endpoint's answer, or ``{"error": {...}}`` when the report was refused whole.

Reports are taken on a thread of their own, one at a time: paho's network thread only
queues them (at most ``MAX_PENDING``; beyond, a report is dropped, counted and logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotiam.broker.layout import REPORTS_SUBSCRIPTION
from iotiam.errors import IamError
from iotiam.gateways.models import answers_topic, report_of_topic

log = logging.getLogger("iotiam.broker.gateway_reports")

#: reports queued for the taker; beyond this the newest are dropped (and counted)
MAX_PENDING = 10_000
#: the longest correlation data echoed back (MQTT allows 65,535 bytes; an id needs 16)
MAX_CORRELATION = 64


class ReportTaker(Protocol):
    """The report use case (``gateways.reports.GatewayReports``)."""

    def take(self, gateway_id: str, kind: str, payload: bytes, *, max_bytes: int
             ) -> dict[str, Any]:
        """The answer to one report, or ``IamError`` when it is refused whole."""
        ...


@dataclass(frozen=True)
class Report:
    """One report as it came off the broker."""

    gateway_id: str
    kind: str
    payload: bytes
    correlation: bytes | None


@dataclass
class ReportCounts:
    """What the consumer did since it started."""

    taken: int = 0
    refused: int = 0
    failed: int = 0
    dropped: int = 0


def answer_of(taker: ReportTaker, report: Report, max_bytes: int) -> dict[str, Any]:
    """The answer to ``report``: the use case's, or the refusal (a bug is logged and
    answered as a refusal too: one report never stops the next, G12)."""
    try:
        return taker.take(report.gateway_id, report.kind, report.payload,
                          max_bytes=max_bytes)
    except IamError as e:
        return {"report": report.kind,
                "error": {"type": e.kind, "title": e.title, "detail": e.detail}}
    except Exception:
        log.exception("taking a %s report of %s failed", report.kind, report.gateway_id)
        return {"report": report.kind,
                "error": {"type": "error", "title": "iotiam error",
                          "detail": "the report could not be taken; the server logged why"}}


class GatewayReportConsumer:
    """Reads gateways' reports on the broker's admin listener and answers them."""

    def __init__(self, host: str, port: int, username: str, password: str,
                 taker: ReportTaker, *, max_bytes: int, max_pending: int = MAX_PENDING
                 ) -> None:
        self._host, self._port = host, port
        self._taker = taker
        self._max_bytes = max_bytes
        self._queue: queue.Queue[Report | None] = queue.Queue(max_pending)
        self._worker: threading.Thread | None = None
        self.counts = ReportCounts()
        self.connected = False
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"iotiam-reports-{secrets.token_hex(4)}",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.suppress_exceptions = True  # a callback's bug must not end the loop
        self._client.enable_logger(log)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background (retrying until the broker is there) and read."""
        self._worker = threading.Thread(target=self._run, daemon=True,
                                        name="gateway-reports")
        self._worker.start()
        try:
            self._client.connect_async(self._host, self._port, keepalive=30)
            self._client.loop_start()
        except Exception:  # reports not read must not stop iotiam
            log.exception("cannot read gateways' reports at %s:%d", self._host, self._port)

    def stop(self, timeout: float = 5.0) -> None:
        """Take what is queued, then disconnect."""
        if self._worker is not None:
            with contextlib.suppress(queue.Full):  # then the join times out
                self._queue.put(None, timeout=timeout)
            self._worker.join(timeout)
            self._worker = None
        try:
            self._client.disconnect()
            self._client.loop_stop()
        except Exception:
            log.exception("closing the gateway reports connection failed")

    # -- paho callbacks (network thread: never blocks) -----------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.warning("the broker refused the gateway reports connection: %s", reason)
            return
        self.connected = True
        client.subscribe([(REPORTS_SUBSCRIPTION, SubscribeOptions(qos=1))])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        if any(reason.is_failure for reason in reasons):
            log.warning("the broker refused the subscription %r: gateways' reports over "
                        "MQTT are not read (the admin role needs subscribePattern on it "
                        "and publishClientSend on 'gateways/+/answers')",
                        REPORTS_SUBSCRIPTION)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        if self.connected:
            log.warning("lost the gateway reports connection (%s); reconnecting", reason)
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        try:
            named = report_of_topic(message.topic)
        except UnicodeDecodeError:
            named = None
        if named is None or message.retain:  # a retained message is no new report
            return
        correlation = getattr(message.properties, "CorrelationData", None)
        report = Report(named[0], named[1], bytes(message.payload),
                        bytes(correlation)[:MAX_CORRELATION] if correlation else None)
        try:
            self._queue.put_nowait(report)
        except queue.Full:
            self.counts.dropped += 1
            log.warning("dropped a %s report of %s: %d reports wait already",
                        report.kind, report.gateway_id, self._queue.qsize())

    # -- taking them (its own thread) ----------------------------------------------------

    def _run(self) -> None:
        while (report := self._queue.get()) is not None:
            self.take(report)

    def take(self, report: Report) -> dict[str, Any]:
        """Take one report and publish the answer to its gateway; the answer."""
        answer = answer_of(self._taker, report, self._max_bytes)
        if "error" in answer:
            self.counts.refused += 1
            log.warning("refused a %s report of gateway %s: %s", report.kind,
                        report.gateway_id, answer["error"]["detail"])
        else:
            self.counts.taken += 1
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if report.correlation is not None:
            properties.CorrelationData = report.correlation
        # the gateway's own answers topic, whatever response topic the report named:
        # the admin publishes nowhere a client chose
        self._client.publish(answers_topic(report.gateway_id), json.dumps(answer).encode(),
                             qos=1, properties=properties)
        return answer
