"""The stream's names, its configuration and how a batch of events is written on it.

No NATS client here: ``config.py`` builds an ``EventStreamConfig`` without importing one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Any

from iotiam.detection.models import (
    OPTIONAL_FIELDS,
    Event,
    EventKind,
    Finding,
    FindingType,
    Severity,
)
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


#: the layout of a message. Version 3 (written): columns, ``[3, kinds, times, devices,
#: {field: column}]``, each column one value per event in order; an optional field (or
#: ``batch``, the upload the event came in, so that the findings it raises in a worker
#: are linked to it) that is None for every event of the message is left out. Read as a
#: whole column at once, a batch costs a third of the CPU of rows. Versions 1 and 2
#: (``[v, row, row, ...]``, a row an event's values in ``Event`` field order, version 1
#: without the batch) are still read: upgrade the workers before the publishers.
WIRE_VERSION = 3
_ROW = 4 + len(OPTIONAL_FIELDS)
_ROW_V1 = _ROW - 1
_KINDS = {kind.value: kind for kind in EventKind}
_INTS = frozenset({"size", "qos", "dst_port", "src_port", "bytes", "packets"})
#: for each optional field (and the batch), the one type its value may have besides None
_TYPES_V1 = tuple(int if name in _INTS else str for name in OPTIONAL_FIELDS)
_TYPES = (*_TYPES_V1, str)
#: the optional columns of version 3, in ``Event`` field order, and the types they hold
_COLUMNS = (*OPTIONAL_FIELDS, "batch")
_COLUMN_TYPES: dict[str, frozenset[type]] = {
    name: frozenset({wanted, type(None)}) for name, wanted in zip(_COLUMNS, _TYPES, strict=True)}
_GETTERS = tuple((name, attrgetter(name)) for name in _COLUMNS)
_STR: frozenset[type] = frozenset({str})
_TIME: frozenset[type] = frozenset({int, float})
_DEVICE: frozenset[type] = frozenset({str, type(None)})


def encode_events(events: Sequence[Event]) -> bytes:
    """One message's body: version 3's columns (time as epoch seconds, exact)."""
    optional = {}
    for name, get in _GETTERS:
        column = list(map(get, events))
        if column.count(None) != len(column):
            optional[name] = column
    body = [WIRE_VERSION, [event.kind.value for event in events],
            [event.at for event in events], [event.device_id for event in events], optional]
    return json.dumps(body, separators=(",", ":")).encode()


def encode_false_positive(finding: Finding) -> bytes:
    """A message telling a partition's engine that ``finding`` was a false positive."""
    return json.dumps({"false_positive": {
        "type": finding.type.value, "severity": int(finding.severity), "at": finding.at,
        "device_id": finding.device_id, "summary": finding.summary,
        "detector": finding.detector, "evidence": dict(finding.evidence),
        "device_type": finding.device_type}}, separators=(",", ":")).encode()


def decode_message(body: bytes) -> list[Event] | Finding:
    """A message's events, or the false positive it carries."""
    if not body.startswith(b"{"):
        return decode_events(body)
    try:
        data = json.loads(body)["false_positive"]
        return Finding(FindingType(data["type"]), Severity(data["severity"]),
                       float(data["at"]), data["device_id"], str(data["summary"]),
                       str(data["detector"]), dict(data["evidence"]), data["device_type"])
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput(f"not a false positive message: {e!r}") from e


def decode_events(body: bytes) -> list[Event]:
    """Inverse of ``encode_events``; ``InvalidInput`` if the body is not one.

    The events were checked in full when they were admitted (``Event.from_json``); this
    checks each value's type only (half the cost of scoring, otherwise), so a message
    forged on the subject cannot hand a detector a value of the wrong type.
    """
    try:
        rows = json.loads(body)
    except ValueError as e:
        raise InvalidInput("an event message is not JSON") from e
    if not isinstance(rows, list) or not rows or type(rows[0]) is not int \
            or rows[0] not in (1, 2, WIRE_VERSION):
        raise InvalidInput(f"an event message must be an array of version {WIRE_VERSION}")
    if rows[0] == WIRE_VERSION:
        return _columns(rows)
    size = _ROW if rows[0] == 2 else _ROW_V1
    return [_event(row, size) for row in rows[1:]]


def _columns(body: list[Any]) -> list[Event]:
    """Version 3's events, each column's types checked at once."""
    if len(body) != 5 or not isinstance(body[4], dict):
        raise InvalidInput("an event message of version 3 needs kinds, times, devices and "
                           "a map of optional columns")
    _, kinds, times, devices, optional = body
    count = len(kinds) if isinstance(kinds, list) else -1
    _check(kinds, count, _STR, "kinds")
    _check(times, count, _TIME, "times")
    _check(devices, count, _DEVICE, "devices")
    found = list(map(_KINDS.get, kinds))
    if None in found:
        raise InvalidInput("an event message holds an unknown event kind")
    columns: list[Iterable[Any]] = []
    for name in _COLUMNS:
        column = optional.pop(name, None)
        if column is None:
            columns.append(repeat(None, count))
        else:
            _check(column, count, _COLUMN_TYPES[name], name)
            columns.append(column)
    if optional:
        raise InvalidInput(f"an event message holds unknown columns: {sorted(optional)}")
    return list(map(Event, found, map(float, times), devices, *columns))


def _check(column: object, count: int, types: frozenset[type], name: str) -> None:
    if not isinstance(column, list) or len(column) != count \
            or not types.issuperset(map(type, column)):
        raise InvalidInput(f"an event message's {name} must be a list of {count} values of "
                           f"type {' or '.join(sorted(t.__name__ for t in types))}")


def _event(row: object, size: int) -> Event:
    if not isinstance(row, list) or len(row) != size:
        raise InvalidInput(f"an event row must be an array of {size} values")
    kind, at, device_id, *values = row
    kind = _KINDS.get(kind) if isinstance(kind, str) else None
    if kind is None or isinstance(at, bool) or not isinstance(at, int | float) \
            or not (device_id is None or isinstance(device_id, str)):
        raise InvalidInput("an event row needs a kind, a time and a device id or null")
    for value, wanted in zip(values, _TYPES if size == _ROW else _TYPES_V1, strict=True):
        if value is not None and (type(value) is not wanted):
            raise InvalidInput(f"an event row holds {value!r} where a {wanted.__name__} "
                               "belongs")
    return Event(kind, float(at), device_id, *values)
