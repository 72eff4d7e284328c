"""How ``iotiam-agent gateway`` reports its children's sightings and events: over HTTPS
(``POST /v1/gateways/self/sightings|events``, mTLS) or over MQTT, on the gateway's own
report topics on the central broker (its mTLS session there), docs/gateways.md.

Over MQTT a report is published at QoS 1 on ``gateways/<id>/reports/<kind>`` with an
MQTT v5 response topic (``gateways/<id>/answers``, the only one the broker lets it read)
and correlation data; iotiam answers there with what the HTTPS endpoint would have
answered, and a refusal is logged in one line. Reports made while the session is down
wait (at most ``MAX_PENDING``, the oldest dropped first) and go when it is back.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

from iotiam.agent.gateway_calls import gateway_call
from iotiam.agent.paths import AgentError
from iotiam.gateways.models import answers_topic, report_topic

if TYPE_CHECKING:
    from iotiam.agent.agent import Agent

log = logging.getLogger("iotiam.agent.gateway")

#: reports waiting for the upstream session; beyond this the oldest are dropped
MAX_PENDING = 1000
#: reports sent and not answered yet, remembered to name them in the answer's log line
MAX_OUTSTANDING = 10_000
REPORT_MODES = ("mqtt", "https")


class Reporter(Protocol):
    """Where a gateway's reports go."""

    def sightings(self, children: list[str]) -> None:
        """Report the children seen (each connection to the gateway's listener)."""
        ...

    def events(self, batch: list[dict[str, Any]]) -> None:
        """Report events about the children (at most ``MAX_EVENTS``)."""
        ...


def log_answer(kind: str, answer: dict[str, Any]) -> None:
    """One line for each refusal in the server's answer to a report (none when all of
    it was taken)."""
    error = answer.get("error")
    if isinstance(error, dict):
        log.warning("%s report refused by the server: %s", kind, error.get("detail"))
        return
    if kind == "sightings":
        for result in answer.get("results", []):
            if isinstance(result, dict) and not result.get("accepted"):
                log.warning("sighting of %s refused: %s", result.get("child"),
                            result.get("reason"))
        return
    refused = answer.get("refused", [])
    if isinstance(refused, list) and refused:
        first = refused[0] if isinstance(refused[0], dict) else {}
        log.warning("%d event(s) refused by the server: %s", len(refused),
                    first.get("reason"))


class HttpsReports:
    """Reports as calls of the gateway API (mTLS)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def sightings(self, children: list[str]) -> None:
        """``POST /v1/gateways/self/sightings``."""
        if self._post("sightings", {"children": children}):
            log.info("reported sighting(s): %s", ", ".join(children))

    def events(self, batch: list[dict[str, Any]]) -> None:
        """``POST /v1/gateways/self/events``."""
        self._post("events", {"events": batch})

    def _post(self, kind: str, body: dict[str, Any]) -> bool:
        try:
            answer = gateway_call(self.agent, "POST", f"/v1/gateways/self/{kind}", body,
                                  step=kind)
        except AgentError as e:
            log.warning("reporting %s failed: %s", kind, " ".join(e.diagnostics().split()))
            return False
        log_answer(kind, answer)
        return True


class MqttReports:
    """Reports published on the gateway's own report topics, answered on its answers
    topic. ``attach`` it to the upstream client before that connects."""

    def __init__(self, gateway_id: str, *, max_pending: int = MAX_PENDING) -> None:
        self.gateway_id = gateway_id
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self._max_pending = max_pending
        self._outstanding: dict[bytes, str] = {}
        self._serial = 0
        self._client: Any = None
        self.dropped = self.sent = self.answered = 0

    def attach(self, client: Any) -> None:
        """Use ``client`` (paho, MQTT v5, the gateway's mTLS session): its connections
        subscribe to the answers and send what waits."""
        self._client = client
        client.on_connect = self._on_connect
        client.message_callback_add(answers_topic(self.gateway_id), self._on_answer)

    def sightings(self, children: list[str]) -> None:
        """Publish a sightings report (or keep it until the session is up)."""
        self._queue("sightings", {"children": children})
        log.info("reported sighting(s): %s (MQTT)", ", ".join(children))

    def events(self, batch: list[dict[str, Any]]) -> None:
        """Publish an events report (or keep it until the session is up)."""
        self._queue("events", {"events": batch})

    def _queue(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                dropped_kind, _ = self._pending.popleft()
                self.dropped += 1
                log.warning("dropped a waiting %s report: %d reports wait for the broker",
                            dropped_kind, self._max_pending)
            self._pending.append((kind, json.dumps(body).encode()))
        self.flush()

    def flush(self) -> int:
        """Publish what waits, if the session is up; how many were published."""
        client = self._client
        if client is None or not client.is_connected():
            return 0
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        done = 0
        while True:
            with self._lock:
                if not self._pending:
                    return done
                kind, payload = self._pending.popleft()
                self._serial += 1
                correlation = f"{kind}:{self._serial}".encode()
                if len(self._outstanding) >= MAX_OUTSTANDING:
                    self._outstanding.pop(next(iter(self._outstanding)))
                self._outstanding[correlation] = kind
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = answers_topic(self.gateway_id)
            properties.CorrelationData = correlation
            client.publish(report_topic(self.gateway_id, kind), payload, qos=1,
                           properties=properties)
            self.sent += 1
            done += 1

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("the broker refused the gateway's session: %s", reason)
            return
        client.subscribe(answers_topic(self.gateway_id), qos=1)
        # from paho's network thread: publishing queues, it does not wait
        threading.Thread(target=self.flush, name="gateway-reports", daemon=True).start()

    def _on_answer(self, client: Any, userdata: Any, message: Any) -> None:
        correlation = getattr(message.properties, "CorrelationData", None)
        with self._lock:
            kind = self._outstanding.pop(bytes(correlation), None) if correlation else None
        try:
            answer = json.loads(bytes(message.payload))
        except ValueError:
            log.warning("the server's answer to a report is not JSON")
            return
        if not isinstance(answer, dict):
            return
        self.answered += 1
        log_answer(kind or str(answer.get("report", "a")), answer)
