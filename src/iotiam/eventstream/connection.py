"""The NATS side shared by publishers and workers: connecting, the stream, a loop thread.

Foreign exceptions are wrapped here once: an unreachable server is ``StreamUnavailable``,
a stream cut into another number of partitions is a ``SetupError``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from iotiam.errors import SetupError, StreamUnavailable
from iotiam.eventstream.wire import EventStreamConfig

log = logging.getLogger("iotiam.eventstream")
T = TypeVar("T")
CONNECT_TIMEOUT_SECONDS = 2.0
FIRST_CONNECT_SECONDS = 3.0


class LoopThread:
    """An asyncio loop on a daemon thread, so that synchronous callers (the API's
    threadpool, the broker's event source) can use the asyncio NATS client."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``work`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        """Stop the loop (what is running on it is abandoned)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


async def _trouble(error: Exception) -> None:
    # the client's default logs a traceback for every refused connection attempt
    log.warning("event stream: %s", error or type(error).__name__)


async def connect(config: EventStreamConfig, name: str) -> Client:
    """A client that reconnects by itself once connected (the first connection is not
    retried for more than a few seconds: the caller hears the stream is unavailable)."""
    try:
        # with endless reconnection the client retries its first connection endlessly too
        return await asyncio.wait_for(nats.connect(
            config.url, name=name, connect_timeout=CONNECT_TIMEOUT_SECONDS,
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
            error_cb=_trouble), FIRST_CONNECT_SECONDS)
    except (OSError, TimeoutError, NatsError) as e:
        raise StreamUnavailable(f"cannot reach the event stream at {config.url}: {e}") from e


async def ensure_stream(js: JetStreamContext, config: EventStreamConfig) -> None:
    """Create the stream if it is missing; refuse one cut into other partitions."""
    try:
        info = await js.stream_info(config.stream)
    except NotFoundError:
        try:
            await js.add_stream(StreamConfig(
                name=config.stream, description=config.description,
                subjects=[f"{config.subject_prefix}.>"], retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE, max_age=config.retention_seconds,
                duplicate_window=config.duplicate_window_seconds))
            return
        except NatsError:  # another process created it meanwhile: read what it made
            info = await js.stream_info(config.stream)
    if info.config.description != config.description:
        raise SetupError(f"the event stream {config.stream} was created with "
                         f"{info.config.description!r}, this process has "
                         f"{config.description!r}: every process needs the same partitions")


#: one read of a snapshot object, and how many reads before giving up
OBJECT_READ_SECONDS = 3.0
OBJECT_READ_TRIES = 10


async def read_object(store: ObjectStore, name: str) -> ObjectStore.ObjectResult:
    """An object of ``store``, read again when it was rewritten while being read: nats-py's
    ``get`` then waits for ever for chunks purged with the old version (a worker taking
    over a partition while the lease's last owner still saves its snapshot)."""
    for attempt in range(1, OBJECT_READ_TRIES + 1):
        try:
            return await asyncio.wait_for(store.get(name), OBJECT_READ_SECONDS)
        except TimeoutError:
            log.warning("object %s not read in %.0f s (try %d of %d): reading it again",
                        name, OBJECT_READ_SECONDS, attempt, OBJECT_READ_TRIES)
    raise StreamUnavailable(f"the snapshot {name} could not be read in "
                            f"{OBJECT_READ_TRIES} tries")
