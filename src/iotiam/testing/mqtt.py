"""A small synchronous MQTT device for tests and benchmarks (paho-mqtt, MQTT v5, TLS)."""

from __future__ import annotations

import queue
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


class MqttDevice:
    """Connects with a client certificate (or a PSK), records what happens to it."""

    def __init__(self, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnected_at: float | None = None
        self.connect_result: str | None = None
        self._acks: dict[int, list[ReasonCode]] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def use_certificate(self, ca: Path, cert: Path, key: Path) -> MqttDevice:
        """mTLS: verify the broker against ``ca``, present ``cert``."""
        self.client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
                            tls_version=ssl.PROTOCOL_TLS_CLIENT)
        return self

    def connect(self, port: int, *, timeout: float = 5.0) -> bool:
        """Connect and wait for CONNACK; False if refused or the TLS handshake failed."""
        try:
            self.client.connect("127.0.0.1", port, keepalive=30)
        except (OSError, ssl.SSLError) as e:
            self.connect_result = f"{type(e).__name__}: {e}"
            return False
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.client.loop_stop()
            return False
        return self.connect_result == "Success"

    def subscribe(self, topic: str, *, timeout: float = 5.0) -> bool:
        """Subscribe at QoS 1; whether the broker granted it."""
        _, mid = self.client.subscribe(topic, qos=1)
        if mid is None:
            return False
        with self._acked:
            self._acked.wait_for(lambda: mid in self._acks, timeout)
            reasons = self._acks.pop(mid, None)
        return reasons is not None and not any(r.is_failure for r in reasons)

    def publish(self, topic: str, payload: bytes = b"x") -> None:
        """Publish at QoS 1 and wait until it left (the broker may still drop it)."""
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def received(self, timeout: float = 1.0) -> tuple[str, bytes] | None:
        """The next message delivered to this device, or None."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        self.connect_result = str(reason)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        if self.disconnected_at is None:
            self.disconnected_at = time.monotonic()
        self.disconnected.set()

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        with self._acked:
            self._acks[mid] = reasons
            self._acked.notify_all()


def refused_within(seconds: float, client_id: str, ca: Path, cert: Path, key: Path,
                   port: int) -> bool:
    """Whether the broker on ``port`` refuses ``cert`` within ``seconds``, trying a fresh
    connection every half second (a broker applies a revocation on its next reload)."""
    deadline = time.monotonic() + seconds
    while True:
        device = MqttDevice(client_id).use_certificate(ca, cert, key)
        refused = not device.connect(port)
        device.close()
        if refused:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)
