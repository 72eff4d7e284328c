"""iotiam's admin link to Mosquitto's dynamic-security plugin.

Commands are JSON on ``$CONTROL/dynamic-security/v1``; the plugin answers on
``…/v1/response`` and echoes each command's ``correlationData`` field (Mosquitto 2.0
reads the JSON field, not the MQTT v5 property). Many commands travel in one message,
which is what makes a full sync of 10k devices a matter of seconds.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from iotiam.errors import IamError

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
#: commands per MQTT message: large enough to amortise, small enough to answer quickly
CHUNK = 500
#: messages sent ahead of their answers: the plugin is never idle waiting for the next
IN_FLIGHT = 4


class BrokerUnavailable(IamError):
    """The broker cannot be reached or did not answer in time; nothing was assumed done."""

    kind = "broker-unavailable"
    title = "Broker unavailable"


class DynsecError(IamError):
    """The plugin refused a command."""

    kind = "broker-refused"
    title = "Broker refused a command"


class DynsecAdmin:
    """A connected admin client; ``execute`` sends commands and waits for their answers."""

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 timeout: float = 10.0, cancel: threading.Event | None = None) -> None:
        self._timeout = timeout
        self._cancel = cancel or threading.Event()
        self._lock = threading.Condition()
        self._answers: dict[str, dict[str, Any]] = {}
        self._connected = False
        self._subscribed = False
        self._connect_error: str | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"iotiam-admin-{secrets.token_hex(4)}",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(username, password)
        # a lost link is replaced by a new client, not redialled: keep paho's own retry
        # short so that closing never waits long behind it
        self._client.reconnect_delay_set(min_delay=1, max_delay=1)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as e:
            raise BrokerUnavailable(f"cannot reach the broker's admin listener "
                                    f"{host}:{port}: {e}") from e
        self._client.loop_start()
        with self._lock:
            ready = self._wait(lambda: bool(self._subscribed or self._connect_error), timeout)
            error = self._connect_error
        # closed outside the lock: closing joins paho's thread, whose callbacks take it
        if not ready:
            self.close()
            raise BrokerUnavailable("the broker did not accept the admin connection in "
                                    f"{timeout:.0f}s")
        if error:
            self.close()
            raise BrokerUnavailable(f"the broker refused the admin connection: {error}")

    # -- paho callbacks (network thread) -------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        with self._lock:
            if reason.is_failure:
                self._connect_error = str(reason)
                self._lock.notify_all()
                return
            self._connected = True
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        with self._lock:
            if any(r.is_failure for r in reasons):
                self._connect_error = f"subscribing to {RESPONSE_TOPIC}: {reasons[0]}"
            else:
                self._subscribed = True
            self._lock.notify_all()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        with self._lock:
            self._connected = False
            self._subscribed = False
            self._lock.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._lock:
            for response in responses:
                key = response.get("correlationData")
                if isinstance(key, str):
                    self._answers[key] = response
            self._lock.notify_all()

    # -- use ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the admin link is up."""
        return self._subscribed

    def execute(self, commands: Sequence[dict[str, Any]], *, chunk: int = CHUNK
                ) -> list[dict[str, Any]]:
        """Run commands in order; their answers (``error`` set where the plugin refused).

        They go in messages of ``chunk`` commands, up to ``IN_FLIGHT`` messages ahead of
        the answers (the plugin runs them in order, each ``correlationData`` says which
        answer is whose). The wait fails only when no answer at all arrived for
        ``timeout`` seconds: a long batch on a busy broker is slow, not dead.
        """
        size = max(1, chunk)
        chunks = [commands[i:i + size] for i in range(0, len(commands), size)]
        sent: list[list[str]] = []
        answers: list[dict[str, Any]] = []
        collected = 0
        try:
            for batch in chunks:
                if len(sent) - collected >= IN_FLIGHT:
                    answers += self._collect(sent[collected])
                    collected += 1
                sent.append(self._send(batch))
            for keys in sent[collected:]:
                answers += self._collect(keys)
        except BaseException:
            with self._lock:
                for keys in sent:
                    for key in keys:
                        self._answers.pop(key, None)
            raise
        return answers

    def _send(self, commands: Sequence[dict[str, Any]]) -> list[str]:
        prefix = secrets.token_hex(4)
        keys = [f"{prefix}-{i}" for i in range(len(commands))]
        payload = json.dumps({"commands": [
            {**command, "correlationData": key} for command, key in zip(commands, keys,
                                                                       strict=True)
        ]})
        with self._lock:
            if not self._subscribed:
                raise BrokerUnavailable("the admin link to the broker is down")
        info = self._client.publish(CONTROL_TOPIC, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(
                f"publishing to the broker failed: {mqtt.error_string(info.rc)}")
        return keys

    def _collect(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Wait for these answers while any answer keeps arriving."""
        with self._lock:
            while True:
                seen = len(self._answers)
                self._wait(partial(self._moved, keys, seen), self._timeout)
                if all(k in self._answers for k in keys):
                    return [self._answers.pop(key) for key in keys]
                if not self._subscribed:
                    raise BrokerUnavailable("the admin link to the broker went down while "
                                            "it ran dynamic-security commands")
                if len(self._answers) == seen:
                    raise BrokerUnavailable("the broker did not answer the dynamic-security "
                                            f"commands within {self._timeout:.0f}s")

    def _moved(self, keys: Sequence[str], seen: int) -> bool:
        """All these answers are in, the link fell, or some other answer came."""
        return (all(k in self._answers for k in keys) or not self._subscribed
                or len(self._answers) != seen)

    def _wait(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait (holding the condition) until ready, the timeout, or cancellation."""
        deadline = time.monotonic() + timeout
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._cancel.is_set():
                return False
            self._lock.wait(min(remaining, 0.1))
        return True

    def check(self, commands: Sequence[dict[str, Any]], *,
              tolerate: Sequence[str] = (), chunk: int = CHUNK) -> list[dict[str, Any]]:
        """``execute`` and raise on the first refusal not in ``tolerate`` (substrings)."""
        answers = self.execute(commands, chunk=chunk)
        for command, answer in zip(commands, answers, strict=True):
            error = answer.get("error")
            if error and not any(t in error for t in tolerate):
                raise DynsecError(f"{command.get('command')} refused by the broker: {error}")
        return answers

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
