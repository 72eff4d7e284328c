"""A detection worker: owns some partitions of the event stream and scores their events.

Ownership is a lease in a JetStream key-value bucket whose entries expire
(``lease_seconds``): a worker claims a partition by creating its key (which fails while
another worker holds it), keeps it by updating the key at the revision it last wrote
(which fails once anybody else took it), and gives it up by deleting it. Each worker also
renews an entry of its own in a second bucket; the live entries say how many workers
there are, and each keeps about its share (``ceil(partitions / workers)``), releasing the
rest so that a worker that joins gets some. A worker killed with ``kill -9`` stops
renewing: its leases expire and the others claim its partitions.

A claimed partition's engine carries on from the partition's snapshot in the object
store (its baselines and the stream position they include) and reads the partition's
subject from the next position with an ordered consumer; a batch at or before the
snapshot's position is skipped (``PartitionEngine.apply``), so every event is counted
once however often it is delivered. Snapshots are written right after a successful
renewal (so a worker that lost its lease does not overwrite its successor's), every
``snapshot_seconds`` while events arrive and when a partition is released.

The NATS client lives on the worker's event loop; events are decoded and scored on a
thread of its own, fed through a bounded queue: scored on the loop, a backlog held the
renewals back until the leases expired under a busy worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import secrets
import threading
import time
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, KeyValueConfig, ObjectStoreConfig
from nats.js.errors import (
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    ObjectNotFoundError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from iotiam.detection.models import Finding
from iotiam.detection.partitions import PartitionEngine
from iotiam.detection.ports import FindingSink, ModeSource, ZoneSource
from iotiam.errors import IamError, InvalidInput, StreamUnavailable
from iotiam.eventstream.connection import connect, ensure_stream, read_object
from iotiam.eventstream.wire import EventStreamConfig, decode_message
from iotiam.readiness import Status

log = logging.getLogger("iotiam.eventstream")

#: messages read ahead of the scoring thread (each up to ``EVENTS_PER_MESSAGE`` events)
INBOX = 64


@dataclass
class Owned:
    """A partition this worker holds: its engine, lease revision and subscription."""

    engine: PartitionEngine
    revision: int
    subscription: JetStreamContext.PushSubscription | None
    saved_at: float = 0.0


class DetectionWorker:
    """Claims partitions, scores their events, snapshots them; one per process."""

    def __init__(self, config: EventStreamConfig, sink: FindingSink, *,
                 learning_seconds: float, modes: ModeSource | None = None,
                 zones: ZoneSource | None = None, name: str | None = None) -> None:
        self.config = config
        self.name = name or f"worker-{secrets.token_hex(6)}"
        self._sink = sink
        self._learning = learning_seconds
        self._modes = modes
        self._zones = zones
        self.owned: dict[int, Owned] = {}
        #: events scored by this worker since it started (redeliveries skipped not counted)
        self.events_applied = 0
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._leases: KeyValue | None = None
        self._workers: KeyValue | None = None
        self._snapshots: ObjectStore | None = None
        #: messages handed from the event loop to the scoring thread, in arrival order
        self._inbox: queue.Queue[tuple[Owned, int, bytes] | None] = queue.Queue(INBOX)
        #: when the last pass with the stream succeeded (monotonic), and what went wrong
        self._last_pass: float | None = None
        self._trouble = "not connected yet"

    def readiness(self) -> Status:
        """``/readyz``'s ``stream`` check: ready while passes with the stream succeed
        (leases renewed within their lifetime)."""
        last = self._last_pass
        if last is None or time.monotonic() - last > self.config.lease_seconds:
            return Status(False, f"no pass with the event stream lately: {self._trouble}")
        owned = sorted(dict(self.owned))
        return Status(True, f"owns {len(owned)} of {self.config.partitions} partitions",
                      {"partitions": owned})

    # -- the job --------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, then release every partition (a background job)."""
        asyncio.run(self.work(stop))

    async def work(self, stop: threading.Event) -> None:
        """The worker's loop on the running event loop; events are scored on a thread of
        their own, so that a backlog never holds up the renewal of the leases."""
        scorer = threading.Thread(target=self._score_all, name=f"{self.name}-scoring",
                                  daemon=True)
        scorer.start()
        tick = self.config.lease_seconds / 4
        try:
            while not stop.is_set():
                try:
                    await self._open()
                    await self.tick()
                    self._last_pass = time.monotonic()
                except (IamError, NatsError, TimeoutError, OSError) as e:
                    log.warning("detection worker %s: %s", self.name, e)
                    self._trouble = str(e) or type(e).__name__
                await asyncio.sleep(tick)
            await self.close()
        finally:
            self._inbox.put(None)
            await asyncio.to_thread(scorer.join)

    async def _open(self) -> None:
        if self._client is not None:
            return
        client = await connect(self.config, f"iotiam-{self.name}")
        try:
            js = client.jetstream()
            await ensure_stream(js, self.config)
            ttl = self.config.lease_seconds
            self._leases = await js.create_key_value(
                KeyValueConfig(self.config.leases_bucket, ttl=ttl))
            self._workers = await js.create_key_value(
                KeyValueConfig(self.config.workers_bucket, ttl=ttl))
            self._snapshots = await js.create_object_store(
                self.config.snapshots_bucket,
                ObjectStoreConfig(bucket=self.config.snapshots_bucket))
        except BaseException:
            await client.close()  # the next tick connects again from scratch
            raise
        self._client, self._js = client, js

    async def tick(self) -> None:
        """Renew, snapshot what is due, then claim or release to keep this worker's share."""
        assert self._workers is not None and self._leases is not None
        await self._workers.put(self.name, b"alive")
        await self._renew()
        share = math.ceil(self.config.partitions / await self._live_workers())
        if len(self.owned) > share:
            for partition in sorted(self.owned)[share:]:
                await self.release(partition)
        elif len(self.owned) < share:
            await self._claim(share)

    async def _live_workers(self) -> int:
        assert self._workers is not None
        try:
            return max(1, len(await self._workers.keys()))
        except NoKeysError:
            return 1

    async def _renew(self) -> None:
        # all at once: one after the other, they could outlast the leases they renew
        kept = await asyncio.gather(*(self._renew_one(p, o) for p, o in self.owned.items()))
        now = asyncio.get_running_loop().time()
        for owned in kept:
            if owned is not None and owned.engine.unsaved \
                    and now - owned.saved_at >= self.config.snapshot_seconds:
                await self._save(owned)

    async def _renew_one(self, partition: int, owned: Owned) -> Owned | None:
        assert self._leases is not None
        try:
            owned.revision = await self._leases.update(
                self._key(partition), self.name.encode(), last=owned.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            if not await self._still_mine(partition, owned):
                log.warning("%s lost partition %d to another worker", self.name, partition)
                await self._drop(partition)
                return None
        return owned

    async def _still_mine(self, partition: int, owned: Owned) -> bool:
        """Whether the lease still names this worker: a renewal whose answer timed out
        did happen, and left a revision this worker has not seen."""
        assert self._leases is not None
        try:
            entry = await self._leases.get(self._key(partition))
        except KeyNotFoundError:
            return False
        if entry.value != self.name.encode() or entry.revision is None:
            return False
        owned.revision = entry.revision
        return True

    async def _claim(self, share: int) -> None:
        assert self._leases is not None
        for partition in range(self.config.partitions):
            if len(self.owned) >= share:
                return
            if partition in self.owned:
                continue
            try:
                revision = await self._leases.create(self._key(partition), self.name.encode())
            except KeyWrongLastSequenceError:
                continue  # another worker holds it
            try:
                await self._take(partition, revision)
            except StreamUnavailable as e:  # its snapshot could not be read: claimed later
                log.warning("%s gives partition %d back: %s", self.name, partition, e)
                await self._leases.delete(self._key(partition), last=revision)

    async def _take(self, partition: int, revision: int) -> None:
        assert self._js is not None
        engine = await self._load(partition)
        owned = Owned(engine, revision, None, asyncio.get_running_loop().time())

        async def score(msg: Msg) -> None:
            item = (owned, msg.metadata.sequence.stream, msg.data)
            while True:
                try:
                    return self._inbox.put_nowait(item)
                except queue.Full:  # the scoring thread is behind: hold the stream back
                    await asyncio.sleep(0.005)

        owned.subscription = await self._js.subscribe(
            self.config.subject(partition), cb=score, ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=engine.applied + 1))
        self.owned[partition] = owned
        log.info("%s took partition %d from position %d", self.name, partition, engine.applied)

    def _score_all(self) -> None:
        """The scoring thread: every message handed over, in order, until None."""
        while (item := self._inbox.get()) is not None:
            owned, sequence, body = item
            try:
                self._score(owned.engine, sequence, body)
            except Exception:  # the sink's trouble must not stop the scoring of the rest
                log.exception("%s: scoring partition %d position %d failed", self.name,
                              owned.engine.partition, sequence)

    def _score(self, engine: PartitionEngine, sequence: int, body: bytes) -> None:
        try:
            message = decode_message(body)
        except InvalidInput as e:  # a foreign message on our subject: skip it, once
            log.warning("partition %d position %d: %s", engine.partition, sequence, e.detail)
            message = []
        if isinstance(message, Finding):
            engine.forgive(sequence, message)
            return
        events = message
        findings = engine.apply(sequence, events)
        if findings is not None:
            self.events_applied += len(events)
        if findings:
            self._sink.report(findings)

    async def _load(self, partition: int) -> PartitionEngine:
        assert self._snapshots is not None
        try:
            found = await read_object(self._snapshots, self._key(partition))
        except ObjectNotFoundError:
            return PartitionEngine.fresh(partition, learning_seconds=self._learning,
                                         modes=self._modes, zones=self._zones)
        return PartitionEngine.restore(json.loads(found.data or b"{}"), modes=self._modes,
                                       zones=self._zones)

    async def _save(self, owned: Owned) -> None:
        assert self._snapshots is not None
        state = owned.engine.snapshot()
        owned.saved_at = asyncio.get_running_loop().time()
        body = await asyncio.to_thread(lambda: json.dumps(state, separators=(",", ":")).encode())
        await self._snapshots.put(self._key(owned.engine.partition), body)

    async def release(self, partition: int) -> None:
        """Stop reading a partition, snapshot it, and give its lease up."""
        assert self._leases is not None
        owned = self.owned.pop(partition)
        if owned.subscription is not None:
            await owned.subscription.unsubscribe()
        owned.engine.close()  # what is still queued for it is its next owner's
        await self._save(owned)
        await self._leases.delete(self._key(partition), last=owned.revision)
        log.info("%s released partition %d at position %d", self.name, partition,
                 owned.engine.applied)

    async def _drop(self, partition: int) -> None:
        owned = self.owned.pop(partition, None)
        if owned is None:
            return
        owned.engine.close()
        if owned.subscription is not None:
            await owned.subscription.unsubscribe()

    async def close(self) -> None:
        """Release every partition and disconnect (a graceful stop)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            for partition in list(self.owned):
                await self.release(partition)
            if self._workers is not None:
                await self._workers.delete(self.name)
        except (IamError, NatsError, TimeoutError, OSError) as e:
            log.warning("%s stopped without releasing its partitions (%s): their leases "
                        "expire instead", self.name, e)
        try:
            await (client.drain() if client.is_connected else client.close())
        except (NatsError, TimeoutError, OSError) as e:
            log.warning("%s: the event stream connection did not drain: %s", self.name, e)

    @staticmethod
    def _key(partition: int) -> str:
        return f"p{partition}"
