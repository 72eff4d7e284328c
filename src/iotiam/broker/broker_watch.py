"""Watch a broker over MQTT: its ``$SYS`` statistics and, where its log is out of reach,
the metadata of every message (topic and size, never the payload).

A second client with the admin credentials subscribes to ``$SYS/broker/#`` and, when
asked (``--broker external``: iotiam cannot read that broker's log), to ``#``. In
managed mode the log already yields attributed publishes, and ``#`` would double each.

Facts about Mosquitto 2.0.11 ``$SYS``, measured here (``mosquitto_sub -t '$SYS/#'``):

* Every ``$SYS/broker/...`` value is published *retained*: a new subscriber gets the
  whole set at once (~50 topics), then the broker republishes, every
  ``sys_interval``, only the values that changed, ``uptime`` first.
* The period is ``sys_interval`` + 1 s (the check is "more than interval seconds ago" on
  a 1 s clock): ``sys_interval 10`` (the default; the managed broker sets it) gave uptime
  0, 11, 22, 33, 44 s; ``sys_interval 1`` gave 0, 2, 4, 6, 8 s.
* ``uptime`` reads ``"<n> seconds"``, ``version`` ``"mosquitto version 2.0.11"``; every
  other value is a number: counters since start (``messages/received|sent`` count all
  packets, ``publish/messages/received|sent|dropped`` only PUBLISHes, ``bytes/...`` and
  ``publish/bytes/...``), gauges (``clients/connected|total|maximum|...``,
  ``subscriptions/count``, ``retained messages/count`` — with a space —, ``heap/...``),
  and ``load/<what>/1min|5min|15min``: the broker's own moving averages *per minute*.
* A broker restart starts ``uptime`` and every counter again from 0.

Rates per second are computed here from the counters between two ``uptime`` ticks (so
they are one period old); a counter not republished in a period did not change (rate 0).

Message metadata: MQTT does not tell a subscriber who published, so a message is
attributed to a device by its topic under the default policy's namespace
``devices/<device-id>/...``, where only that device may publish (a backend granted
publish rights into a device's namespace would be counted as the device). Other
messages are counted, not ingested. The subscription is QoS 0 (the broker never queues
or retries for the watcher; the delivered QoS is no longer the publisher's, so events
carry none); retained messages replayed on subscribing are no new publishes and skipped.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotiam.detection.models import MAX_TEXT, Event, EventKind
from iotiam.errors import InvalidInput
from iotiam.inventory.models import check_identifier, is_reserved_id

log = logging.getLogger("iotiam.broker.watch")

Deliver = Callable[[list[Event]], None]

SYS_FILTER = "$SYS/broker/#"
SYS_PREFIX = "$SYS/broker/"
ALL_MESSAGES = "#"
#: the default device policy's namespace (iotiam.policy.defaults): devices/<id>/...
DEVICE_NAMESPACE = "devices"
#: cumulative counters whose rates are kept (per second)
COUNTERS = ("messages/received", "messages/sent", "publish/messages/received",
            "publish/messages/sent", "publish/messages/dropped", "bytes/received",
            "bytes/sent", "publish/bytes/received", "publish/bytes/sent")
TEXT_VALUES = frozenset({"version"})
#: bounded memory: at most this many distinct $SYS values and queued events
MAX_SYS_VALUES = 256
MAX_PENDING = 50_000
BATCH_SECONDS = 0.1
BATCH_EVENTS = 1000

_registry_lock = threading.Lock()
_running: list[BrokerWatch] = []


def device_of_topic(topic: str) -> str | None:
    """The device a topic belongs to (``devices/<id>`` or ``devices/<id>/...``), or None."""
    namespace, _, rest = topic.partition("/")
    if namespace != DEVICE_NAMESPACE:
        return None
    device_id = rest.partition("/")[0]
    try:
        check_identifier(device_id, "device id")
    except InvalidInput:
        return None
    return None if is_reserved_id(device_id) else device_id


class SysStatistics:
    """The latest ``$SYS/broker/...`` values and counter rates (no I/O; thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, float | int | str] = {}
        self.uptime: int | None = None
        self.updated_at: float | None = None
        #: counters as they were at the previous uptime tick, and that tick's uptime
        self._previous: dict[str, float | int] = {}
        self._previous_uptime: int | None = None
        self.malformed = 0
        self.restarts = 0

    def update(self, topic: str, payload: bytes | bytearray, now: float) -> bool:
        """Take one ``$SYS`` message; False (and counted) if it is not a known shape."""
        key = topic.removeprefix(SYS_PREFIX)
        if key == topic or not key:
            self.malformed += 1
            return False
        try:
            text = payload.decode("ascii").strip()
            value = _sys_value(key, text)
        except ValueError:
            self.malformed += 1
            return False
        with self._lock:
            if key not in self.values and len(self.values) >= MAX_SYS_VALUES:
                self.malformed += 1
                return False
            if key == "uptime":
                assert isinstance(value, int)
                self._tick(value)
            self.values[key] = value
            self.updated_at = now
        return True

    def _tick(self, uptime: int) -> None:
        if self.uptime is not None and uptime < self.uptime:
            # a restart: counters start again from 0, the old ones mean nothing now
            self.restarts += 1
            self.values = {k: v for k, v in self.values.items() if k not in COUNTERS}
            self._previous, self._previous_uptime = {}, None
        elif self.uptime is not None and uptime == self.uptime:
            return  # the retained set replayed on re-subscribing: not a new period
        else:
            self._previous = {k: v for k, v in self.values.items()
                              if k in COUNTERS and isinstance(v, int | float)}
            self._previous_uptime = self.uptime
        self.uptime = uptime

    def rates(self) -> dict[str, float]:
        """Per-second rates of the counters over the last period the broker reported."""
        with self._lock:
            if self._previous_uptime is None or self.uptime is None:
                return {}
            span = self.uptime - self._previous_uptime
            rates: dict[str, float] = {}
            for key, before in self._previous.items():
                now = self.values.get(key)
                if span > 0 and isinstance(now, int | float) and now >= before:
                    rates[key] = round((now - before) / span, 3)
            return rates

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe: values, rates per second, when they came."""
        rates = self.rates()
        with self._lock:
            return {"uptime_seconds": self.uptime,
                    "updated_at": _iso(self.updated_at),
                    "values": dict(sorted(self.values.items())),
                    "rates_per_second": rates,
                    "malformed": self.malformed, "restarts_seen": self.restarts}


class BrokerWatch:
    """An MQTT client on the admin listener that reads ``$SYS`` and maybe every message.

    With ``deliver``, messages on ``devices/<id>/...`` become ``publish`` events handed
    to it in batches (every ``batch_seconds`` or ``batch_events``); without, only
    ``$SYS`` is read. Reconnects by itself; ``start`` and ``stop`` never raise.
    """

    def __init__(self, host: str, port: int, username: str, password: str, *,
                 deliver: Deliver | None = None,
                 batch_seconds: float = BATCH_SECONDS, batch_events: int = BATCH_EVENTS,
                 max_pending: int = MAX_PENDING,
                 clock: Callable[[], float] = time.time) -> None:
        self._host, self._port = host, port
        self._deliver = deliver
        self._batch_seconds = batch_seconds
        self._batch_events = batch_events
        self._max_pending = max_pending
        self._clock = clock
        self.sys = SysStatistics()
        self._lock = threading.Lock()
        self._pending: list[Event] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.connected = False
        self.connects = 0
        self.refusals = 0
        #: message counters: seen, ingested (attributed), unattributed, retained replays,
        #: dropped because the consumer fell behind by ``max_pending`` events
        self.seen = self.ingested = self.unattributed = self.retained = self.dropped = 0
        self.deliver_errors = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"iotiam-watch-{secrets.token_hex(4)}",
                                   protocol=mqtt.MQTTv5)
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        # an exception in a callback is logged instead of ending paho's network thread
        self._client.suppress_exceptions = True
        self._client.enable_logger(log)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    @property
    def watches_messages(self) -> bool:
        """Whether every message's metadata is read (not only ``$SYS``)."""
        return self._deliver is not None

    def start(self) -> None:
        """Connect in the background (retrying until the broker is there) and watch."""
        try:
            self._client.connect_async(self._host, self._port, keepalive=30)
            self._client.loop_start()
        except Exception:  # a watcher that cannot start must not stop iotiam
            log.exception("cannot start watching the broker at %s:%d", self._host, self._port)
            return
        if self._deliver is not None:
            self._flusher = threading.Thread(target=self._run_flusher, daemon=True,
                                             name="broker-watch")
            self._flusher.start()
        with _registry_lock:
            _running.append(self)

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect, deliver what is queued, stop."""
        with _registry_lock:
            if self in _running:
                _running.remove(self)
        try:
            self._client.disconnect()
            self._client.loop_stop()
        except Exception:
            log.exception("closing the broker watch connection failed")
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(timeout)
            self._flusher = None

    # -- paho callbacks (network thread: never blocks, never raises) ---------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            self.refusals += 1
            if self.refusals == 1:
                log.warning("the broker refused the watch connection: %s", reason)
            return
        self.connected = True
        self.connects += 1
        filters = [(SYS_FILTER, SubscribeOptions(qos=0))]
        if self._deliver is not None:
            filters.append((ALL_MESSAGES, SubscribeOptions(qos=0, noLocal=True)))
        client.subscribe(filters)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        names = [SYS_FILTER, ALL_MESSAGES]
        for name, reason in zip(names, reasons, strict=False):
            if reason.is_failure:
                log.warning("the broker refused the watch subscription %r: %s (the admin "
                            "role needs subscribePattern and publishClientReceive on "
                            "'$SYS/#' and '#')", name, reason)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: ReasonCode, properties: Any) -> None:
        if self.connected and not self._stop.is_set():
            log.warning("lost the broker watch connection (%s); reconnecting", reason)
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # paho decodes lazily; Mosquitto checks UTF-8 anyway
            self.unattributed += 1
            return
        if topic.startswith("$SYS/"):
            self.sys.update(topic, message.payload, self._clock())
            return
        if self._deliver is None:  # not subscribed to messages: nothing to do
            return
        self.seen += 1
        if message.retain:  # replayed from the retained store on subscribing
            self.retained += 1
            return
        device_id = device_of_topic(topic)
        if device_id is None:
            self.unattributed += 1
            return
        # the size only: the payload is never kept
        event = Event(kind=EventKind.PUBLISH, at=self._clock(), device_id=device_id,
                      topic=topic if len(topic) <= MAX_TEXT else topic[:MAX_TEXT],
                      size=len(message.payload))
        with self._lock:
            if len(self._pending) >= self._max_pending:
                self.dropped += 1
                return
            self._pending.append(event)
            self.ingested += 1
            full = len(self._pending) >= self._batch_events
        if full:
            self._wake.set()

    # -- delivery (its own thread: a slow consumer never stalls the MQTT connection) -----

    def _run_flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._batch_seconds)
            self._wake.clear()
            self._flush()
        self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        deliver = self._deliver
        if deliver is None:
            return
        for start in range(0, len(pending), self._batch_events):
            batch = pending[start:start + self._batch_events]
            try:
                deliver(batch)
            except Exception:  # a failing consumer must not stop the broker's monitoring
                self.deliver_errors += 1
                log.exception("delivering %d broker messages failed; they are dropped",
                              len(batch))

    def statistics(self) -> dict[str, Any]:
        """What the API shows: ``$SYS`` values and rates, the watch's own counters."""
        stats = self.sys.snapshot()
        stats["connected"] = self.connected
        stats["reconnects"] = max(0, self.connects - 1)
        if self.watches_messages:
            with self._lock:
                pending = len(self._pending)
            stats["messages"] = {"seen": self.seen, "ingested": self.ingested,
                                 "unattributed": self.unattributed,
                                 "retained_skipped": self.retained, "dropped": self.dropped,
                                 "pending": pending, "deliver_errors": self.deliver_errors}
        return stats


def broker_statistics() -> dict[str, Any] | None:
    """The statistics of the broker watch running in this process, if any."""
    with _registry_lock:
        watch = _running[-1] if _running else None
    return watch.statistics() if watch is not None else None


def _sys_value(key: str, text: str) -> float | int | str:
    if key in TEXT_VALUES:
        if not text or len(text) > 200:
            raise ValueError(key)
        return text
    if key == "uptime":
        number, _, unit = text.partition(" ")
        if unit != "seconds":
            raise ValueError(text)
        return int(number)
    if "." in text:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    return int(text)


def _iso(at: float | None) -> str | None:
    return datetime.fromtimestamp(at, UTC).isoformat() if at is not None else None
