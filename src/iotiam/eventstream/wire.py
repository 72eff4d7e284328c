"""The stream's names, its configuration and how a batch of events is written on it.

No NATS client here: ``config.py`` builds an ``EventStreamConfig`` without importing one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from iotiam.detection.models import OPTIONAL_FIELDS, Event
from iotiam.errors import InvalidInput

#: how many partitions the stream has unless configured (a worker owns whole partitions,
#: so this bounds how many workers share the load)
DEFAULT_PARTITIONS = 16
MAX_PARTITIONS = 1024
#: a message holds at most this many events (a batch of JSON well under NATS's 1 MB)
EVENTS_PER_MESSAGE = 1000


@dataclass(frozen=True)
class EventStreamConfig:
    """Where the event stream is and how it is cut (the same in every process)."""

    url: str
    partitions: int = DEFAULT_PARTITIONS
    #: the JetStream stream holding the events
    stream: str = "IOTIAM_EVENTS"
    #: subjects are ``<prefix>.<partition>``
    subject_prefix: str = "iotiam.events"
    #: how long an event is kept: a partition whose snapshot is older loses the gap
    retention_seconds: float = 7 * 86400.0
    #: a worker that stops renewing its partitions loses them after this long
    lease_seconds: float = 3.0
    #: a partition's baselines are saved at least this often while events arrive
    snapshot_seconds: float = 5.0
    #: JetStream's publish-side dedupe window (``Nats-Msg-Id``)
    duplicate_window_seconds: float = 120.0

    def subject(self, partition: int) -> str:
        """The subject of one partition."""
        return f"{self.subject_prefix}.{partition}"

    @property
    def leases_bucket(self) -> str:
        """KV bucket: partition -> the worker that owns it (entries expire)."""
        return f"{self.stream}_leases"

    @property
    def workers_bucket(self) -> str:
        """KV bucket: the live workers, each renewing its own entry."""
        return f"{self.stream}_workers"

    @property
    def snapshots_bucket(self) -> str:
        """Object store: each partition's baselines and the position they include."""
        return f"{self.stream}_baselines"

    @property
    def description(self) -> str:
        """Recorded on the stream, so a process cut differently is refused."""
        return f"iotiam detection events; partitions={self.partitions}"


def encode_events(events: Sequence[Event]) -> bytes:
    """One message's body: a JSON array of events (time as epoch seconds, exact)."""
    rows = []
    for event in events:
        row: dict[str, object] = {"kind": event.kind.value, "ts": event.at}
        if event.device_id is not None:
            row["device_id"] = event.device_id
        for name in OPTIONAL_FIELDS:
            value = getattr(event, name)
            if value is not None:
                row[name] = value
        rows.append(row)
    return json.dumps(rows, separators=(",", ":")).encode()


def decode_events(body: bytes) -> list[Event]:
    """Inverse of ``encode_events``; ``InvalidInput`` if the body is not one."""
    try:
        rows = json.loads(body)
    except ValueError as e:
        raise InvalidInput("an event message is not JSON") from e
    if not isinstance(rows, list):
        raise InvalidInput("an event message must be a JSON array")
    return [Event.from_json(row) for row in rows]
