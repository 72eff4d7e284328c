"""Publishing admitted events to the stream, partitioned by device.

Every event source publishes through one ``NatsEventPublisher`` per process (the API's
ingestion and the broker's event source both call ``EventIngest``, which calls it). A
batch is split by partition, each partition's events into messages of at most
``EVENTS_PER_MESSAGE``, in the order given, and every message carries a ``Nats-Msg-Id``:
a publish retried after a lost acknowledgement is stored once (JetStream drops a
duplicate id within its window).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import threading
from collections.abc import Sequence

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from iotiam.detection.models import Event, EventKind, Finding
from iotiam.detection.partitions import partition_of
from iotiam.errors import StreamUnavailable
from iotiam.eventstream.connection import LoopThread, connect, ensure_stream
from iotiam.eventstream.wire import (
    EVENTS_PER_MESSAGE,
    EventStreamConfig,
    encode_events,
    encode_false_positive,
)

log = logging.getLogger("iotiam.eventstream")

PUBLISH_TIMEOUT_SECONDS = 5.0
#: a message whose acknowledgement did not come is sent again this many times
PUBLISH_ATTEMPTS = 3


class NatsEventPublisher:
    """``detection.ports.EventPublisher`` over JetStream (thread-safe)."""

    def __init__(self, config: EventStreamConfig) -> None:
        self.config = config
        self._producer = secrets.token_hex(8)
        self._numbers = itertools.count(1)
        self._loop: LoopThread | None = None
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._lock = threading.Lock()
        self.messages = 0

    def publish(self, events: Sequence[Event]) -> None:
        """Store every event in its partition's subject; returns once all are stored."""
        if not events:
            return
        self._run(self._messages(events))

    def _run(self, messages: list[tuple[str, bytes, str]]) -> None:
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread("event-publisher")
            loop = self._loop
        try:
            loop.run(self._send(messages), PUBLISH_TIMEOUT_SECONDS * PUBLISH_ATTEMPTS + 5)
        except TimeoutError as e:
            raise StreamUnavailable("the event stream did not acknowledge in time") from e

    def forgive(self, finding: Finding) -> None:
        """Send a false positive to its device's partition (a finding of no device, to
        every partition: any of them may have raised it)."""
        body = encode_false_positive(finding)
        if finding.device_id is not None:
            partitions = [partition_of(Event(EventKind.CONNECT, 0, device_id=finding.device_id),
                                       self.config.partitions)]
        else:
            partitions = list(range(self.config.partitions))
        self._run([(self.config.subject(p), body, f"{self._producer}-{next(self._numbers)}")
                   for p in partitions])

    def _messages(self, events: Sequence[Event]) -> list[tuple[str, bytes, str]]:
        by_partition: dict[int, list[Event]] = {}
        partitions = self.config.partitions
        for event in events:
            by_partition.setdefault(partition_of(event, partitions), []).append(event)
        messages = []
        for partition, mine in by_partition.items():
            subject = self.config.subject(partition)
            for start in range(0, len(mine), EVENTS_PER_MESSAGE):
                body = encode_events(mine[start:start + EVENTS_PER_MESSAGE])
                messages.append((subject, body, f"{self._producer}-{next(self._numbers)}"))
        return messages

    async def _stream(self) -> JetStreamContext:
        if self._js is None:
            self._client = await connect(self.config, f"iotiam-publisher-{self._producer}")
            js = self._client.jetstream()
            await ensure_stream(js, self.config)
            self._js = js
        return self._js

    async def _send(self, messages: list[tuple[str, bytes, str]]) -> None:
        js = await self._stream()
        if self._client is not None and not self._client.is_connected:
            # waiting out a reconnection would hold the caller (an API request) for
            # every attempt's timeout: say so at once, the caller may try again
            raise StreamUnavailable(f"the event stream at {self.config.url} is not "
                                    "connected (reconnecting)")
        await asyncio.gather(*(self._send_one(js, *m) for m in messages))
        self.messages += len(messages)

    async def _send_one(self, js: JetStreamContext, subject: str, body: bytes,
                        message_id: str) -> None:
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await js.publish(subject, body, timeout=PUBLISH_TIMEOUT_SECONDS,
                                 headers={"Nats-Msg-Id": message_id})
                return
            except (TimeoutError, NatsError) as e:
                if attempt == PUBLISH_ATTEMPTS:
                    raise StreamUnavailable(f"the event stream refused a batch: {e}") from e
                log.warning("publishing to %s failed (%s); sending it again", subject, e)

    def close(self) -> None:
        """Flush and disconnect."""
        loop, client = self._loop, self._client
        if loop is None:
            return
        if client is not None:
            try:
                loop.run(client.drain() if client.is_connected else client.close(), 5)
            except (TimeoutError, NatsError, OSError) as e:
                log.warning("the event stream connection did not drain: %s", e)
        loop.close()
        self._loop = self._client = self._js = None
