"""``iotiam-agent gateway``: the agent on a gateway serves its children and speaks for them.

It fetches its children's PSKs over mTLS (sealed to its key, ``Agent.children``) and
serves them on a local Mosquitto's TLS-PSK listener (``broker.child_listener``): each
child may publish and subscribe only ``devices/<child>/...``. The agent reads what the
children publish there and relays each message upstream: the control plane judges it
as the child's (``POST /v1/gateways/self/relay``), and an allowed message is published
to the central broker with the gateway's certificate when ``upstream`` is set. Each
child's connection is reported as a sighting. The children list is fetched again every
``refresh_seconds``: a child that left it (revoked, suspended, moved) leaves the
listener's files and its session is kicked; a re-keyed child's old key stops working.
The gateway's own certificate is renewed as ``iotiam-agent run`` renews it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import httpx

from iotiam.agent import gateway_calls
from iotiam.agent.agent import Agent
from iotiam.agent.gateway_calls import GatewayRefused, gateway_call, gateway_client
from iotiam.agent.gateway_reports import HttpsReports, MqttReports
from iotiam.agent.paths import AgentError
from iotiam.broker.child_listener import (
    AGENT_USERNAME,
    NEXT_KEY_TOPIC,
    ChildListener,
    Installed,
    LocalChild,
    wait_connected,
)
from iotiam.broker.event_source import BrokerEventSource
from iotiam.detection.models import Event, EventKind
from iotiam.errors import IamError
from iotiam.policy.actions import PUBLISH

log = logging.getLogger("iotiam.agent.gateway")

#: how often the children list is fetched by default (a removed child's key works on
#: the gateway at most this long; ``--refresh``)
REFRESH_SECONDS = 30.0
MIN_REFRESH, MAX_REFRESH = 1.0, 3600.0
#: messages waiting to be relayed; beyond this the newest are dropped (and counted)
MAX_QUEUED = 10_000
#: most events one report may carry (``POST /v1/gateways/self/events``)
MAX_EVENTS = 1000
#: the longest topic relayed (the relay API takes no longer resource)
MAX_TOPIC = 65535


@dataclass(frozen=True)
class Upstream:
    """The central broker relayed messages are published to (mTLS, gateway's cert)."""

    host: str
    port: int


@dataclass
class RelayStats:
    """What the gateway did since it started."""

    refreshes: int = 0
    refresh_failures: int = 0
    relayed: int = 0
    refused: int = 0
    failed: int = 0
    dropped: int = 0
    kicked: int = 0
    sightings: int = 0
    events: int = 0


class GatewayRelay:
    """The gateway mode's work, one step at a time (``run`` loops over it)."""

    def __init__(self, agent: Agent, listener: ChildListener, *,
                 refresh_seconds: float = REFRESH_SECONDS,
                 upstream: Upstream | None = None, reports: str = "https") -> None:
        """``reports``: ``mqtt`` (on the gateway's report topics upstream, which needs
        ``upstream``) or ``https`` (the gateway API)."""
        if reports == "mqtt" and upstream is None:
            raise AgentError("reports over MQTT need the central broker (--upstream)")
        self.agent = agent
        self.reporter: HttpsReports | MqttReports = MqttReports(agent.device_id) \
            if reports == "mqtt" else HttpsReports(agent)
        self.listener = listener
        self.refresh_seconds = refresh_seconds
        self.upstream = upstream
        self.stats = RelayStats()
        self._messages: queue.Queue[tuple[str, bytes, int]] = queue.Queue(MAX_QUEUED)
        self._local: Any = None
        self._upstream_client: Any = None
        self._events: BrokerEventSource | None = None
        self._http: httpx.Client | None = None
        self._http_serial: str | None = None
        #: child -> the next key's PSK id left retained on its topic
        self._offered: dict[str, str] = {}
        self._current_expiry: dict[str, str | None] = {}
        #: set when a child used its next key: the listing changed, fetch it now
        self._refresh_due = False

    # -- the children --------------------------------------------------------------------

    def refresh(self) -> Installed:
        """Fetch the children, install them on the listener, kick who lost its key.

        Refused by the server (this gateway revoked or distrusted): every child is
        dropped and kicked, then ``GatewayRefused`` is raised. Unreachable: the children
        keep the keys last fetched (``AgentError``)."""
        try:
            children = self._listed()
        except GatewayRefused:
            self._install([])
            raise
        installed = self._install(children)
        self._offer_next_keys(children)
        return installed

    def _listed(self) -> list[LocalChild]:
        listed = gateway_calls.children(self.agent)
        self._current_expiry = {k.child_id: k.expires_at for k in listed if not k.next}
        return [LocalChild(k.child_id, k.identity, k.key, k.psk_id, k.next) for k in listed]

    def _offer_next_keys(self, children: list[LocalChild]) -> None:
        """Leave each child its next key, retained on its own topic (only it reads it:
        the local ACL), and take it away once it is no longer pending."""
        if self._local is None:
            return
        pending = {c.child_id: c for c in children if c.next}
        for child_id in sorted(set(self._offered) - set(pending)):
            self._local.publish(NEXT_KEY_TOPIC.format(child=child_id), b"", qos=1,
                                retain=True)
            del self._offered[child_id]
        for child_id, child in sorted(pending.items()):
            if self._offered.get(child_id) == child.psk_id:
                continue
            message = {"v": 1, "identity": child.identity, "key": child.key.hex(),
                       "psk_id": child.psk_id,
                       "current_expires_at": self._current_expiry.get(child_id)}
            self._local.publish(NEXT_KEY_TOPIC.format(child=child_id),
                                json.dumps(message).encode(), qos=1, retain=True)
            self._offered[child_id] = child.psk_id
            log.info("offered %s its next key (%s)", child_id, child.identity)

    def _install(self, children: list[LocalChild]) -> Installed:
        try:
            installed = self.listener.install(children)
        except IamError as e:
            raise AgentError(f"cannot install the children: {e.detail}") from e
        for identity in installed.to_kick:
            if self.listener.kick(identity):
                self.stats.kicked += 1
        self.stats.refreshes += 1
        if installed.to_kick:
            log.info("children: %d served; dropped %s, re-keyed %s", installed.children,
                     ", ".join(installed.removed) or "none",
                     ", ".join(installed.rekeyed) or "none")
        return installed

    def child_of(self, topic: str) -> str | None:
        """The child a local topic belongs to (the ACL lets only it publish there)."""
        parts = topic.split("/")
        if len(parts) < 2 or parts[0] != "devices":
            return None
        served = {c.child_id for c in self.listener.children.values()}
        return parts[1] if parts[1] in served else None

    # -- messages ------------------------------------------------------------------------

    def relay(self, topic: str, payload: bytes, qos: int = 0) -> bool:
        """Ask the control plane about a child's message; publish it upstream if allowed.
        Whether it was allowed."""
        child = self.child_of(topic)
        if child is None or len(topic) > MAX_TOPIC:
            self.stats.refused += 1
            return False
        try:
            answer = gateway_call(
                self.agent, "POST", "/v1/gateways/self/relay",
                {"child": child, "action": PUBLISH, "resource": topic}, step="relay",
                http=self._relay_client())
        except AgentError as e:
            self._close_relay_client()  # a new connection (and certificate) next time
            self.stats.failed += 1
            log.warning("relaying %s for %s failed: %s", topic, child,
                        " ".join(e.diagnostics().split()))
            return False
        if answer.get("decision") != "permit":
            self.stats.refused += 1
            log.info("refused %s for %s: %s", topic, child, answer.get("reason"))
            return False
        self.stats.relayed += 1
        if self._upstream_client is not None:
            self._upstream_client.publish(topic, payload, qos=min(qos, 1))
        return True

    def _relay_client(self) -> httpx.Client:
        """One kept connection for the relay calls, new after a renewal."""
        serial = self.agent.serial
        if self._http is None or self._http_serial != serial:
            self._close_relay_client()
            self._http, self._http_serial = gateway_client(self.agent), serial
        return self._http

    def _close_relay_client(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        parts = str(message.topic).split("/")
        if len(parts) > 2 and parts[0] == "devices" and parts[2] == "psk":
            return  # the next keys the agent leaves (never relayed upstream)
        try:
            self._messages.put_nowait((message.topic, bytes(message.payload),
                                       int(message.qos)))
        except queue.Full:
            self.stats.dropped += 1

    def drain(self, seconds: float) -> int:
        """Relay what the children sent, waiting up to ``seconds`` for the first one."""
        done = 0
        try:
            topic, payload, qos = self._messages.get(timeout=max(seconds, 0.0))
        except queue.Empty:
            return 0
        while True:
            self.relay(topic, payload, qos)
            done += 1
            try:
                topic, payload, qos = self._messages.get_nowait()
            except queue.Empty:
                return done

    # -- what the gateway's broker saw ----------------------------------------------------

    def observed(self, events: list[Event]) -> None:
        """What the gateway's broker logged (``BrokerEventSource``): each child's
        connection is reported as a sighting, and every event about a child (publishes,
        subscribes, refused publishes, disconnects) goes to the gateway events API,
        scored as the child's. Events naming no child (a wrong key from an unknown
        client) are not reported: the server refuses events without a device."""
        by_identity = self.listener.children
        for event in events:
            used = by_identity.get(event.device_id or "")
            if event.kind is EventKind.CONNECT and used is not None and used.next:
                self._report_next_key_used(used)
        about = [replace(e, device_id=by_identity[e.device_id].child_id) for e in events
                 if e.device_id in by_identity]
        seen = sorted({e.device_id for e in about
                       if e.kind is EventKind.CONNECT and e.device_id is not None})
        if seen:
            self.reporter.sightings(seen)
            self.stats.sightings += len(seen)
        for event in about:
            if event.kind is EventKind.AUTHZ_FAILURE:
                log.warning("child %s was refused: %s on %s", event.device_id,
                            event.action or "request", event.topic)
        for start in range(0, len(about), MAX_EVENTS):
            batch = [e.to_json() for e in about[start:start + MAX_EVENTS]]
            self.reporter.events(batch)
            self.stats.events += len(batch)

    def _report_next_key_used(self, child: LocalChild) -> None:
        try:
            gateway_call(self.agent, "POST", "/v1/gateways/self/key-used",
                         {"child": child.child_id, "psk_id": child.psk_id}, step="key-used")
        except AgentError as e:
            log.warning("reporting %s's next key failed: %s", child.child_id,
                        " ".join(e.diagnostics().split()))
            return
        log.info("%s connected with its next key (%s): now its current key",
                 child.child_id, child.identity)
        self._refresh_due = True  # the old key leaves the listing: drop it now

    # -- the process ---------------------------------------------------------------------

    def start(self) -> None:
        """Fetch the children (a refusal or an unreachable server stops here, before
        anything runs), start the listener, then the local reader and the uplink."""
        first = self._listed()
        self.listener.start()
        try:
            self.listener.install(first)
            self.stats.refreshes += 1
            self._events = BrokerEventSource(self.listener.files.log, self.observed)
            self._events.start()
            self._local = self._connect_local()
            self._offer_next_keys(first)
            if self.upstream is not None:
                self._upstream_client = self._connect_upstream(self.upstream)
        except BaseException:
            self.stop()
            raise

    def _connect_local(self) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=AGENT_USERNAME)
        client.username_pw_set(AGENT_USERNAME, self.listener.password)
        client.on_message = self._on_message
        client.on_connect = lambda c, *_: c.subscribe("devices/#", qos=1)
        client.connect("127.0.0.1", self.listener.config.local_port, keepalive=30)
        client.loop_start()
        if not wait_connected(client):
            raise AgentError("the gateway's local broker refused the agent's login: "
                             f"{self.listener.log_tail()[-300:]}")
        return client

    def _connect_upstream(self, upstream: Upstream) -> Any:
        import paho.mqtt.client as mqtt

        # MQTT v5: reports carry a response topic and correlation data
        client = self.agent.mqtt_client(protocol=mqtt.MQTTv5)
        if isinstance(self.reporter, MqttReports):
            self.reporter.attach(client)
        try:
            client.connect(upstream.host, upstream.port, keepalive=60)
        except OSError as e:
            raise AgentError(f"cannot reach the broker {upstream.host}:{upstream.port}: "
                             f"{e}") from e
        client.loop_start()
        if not wait_connected(client):
            client.loop_stop()
            raise AgentError(f"the broker {upstream.host}:{upstream.port} refused the "
                             "gateway's certificate")
        return client

    def run(self, stop: threading.Event) -> None:
        """Serve and relay until ``stop``; refresh the children on schedule."""
        next_refresh = time.monotonic() + self.refresh_seconds
        last_problem = ""
        while not stop.is_set():
            if time.monotonic() >= next_refresh or self._refresh_due:
                self._refresh_due = False
                try:
                    self.refresh()
                except AgentError as e:
                    # unreachable: the children keep the keys last fetched until the
                    # server answers (refused: none are left, ``refresh``)
                    self.stats.refresh_failures += 1
                    problem = " ".join(e.diagnostics().split())
                    if problem != last_problem:  # once, not every refresh
                        log.warning("fetching the children failed: %s", problem)
                    last_problem = problem
                else:
                    last_problem = ""
                if self.listener.ensure_running():  # its files are still in place
                    self._offered.clear()  # retained next keys died with it
                    self._offer_next_keys(list(self.listener.children.values()))
                self.agent.tick()  # renews the gateway's certificate when due
                next_refresh = time.monotonic() + self.refresh_seconds
            self.drain(min(0.5, max(0.0, next_refresh - time.monotonic())))

    def stop(self) -> None:
        """Stop the readers and the listener."""
        for client in (self._local, self._upstream_client):
            if client is not None:
                client.disconnect()
                client.loop_stop()
        self._local = self._upstream_client = None
        self._close_relay_client()
        if self._events is not None:
            self._events.stop()
            self._events = None
        self.listener.stop()

