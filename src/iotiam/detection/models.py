"""Detection value types: the events iotiam watches and the findings it raises.

The event schema is documented, with examples, in ``docs/events.md``. Metric names
follow AWS IoT Device Defender where the two overlap (messages sent, message size,
authorization failures, source IP, connection attempts, disconnects, destination IPs,
listening ports).

Time inside the detection pipeline is a float of seconds since the epoch (UTC): tens of
thousands of events a second go through it, and datetime arithmetic would be most of
the cost. The JSON form carries ISO 8601 (``ts``) and accepts epoch seconds too.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotiam.errors import InvalidInput


class EventKind(enum.StrEnum):
    """What happened."""

    CONNECT = "connect"
    DISCONNECT = "disconnect"
    #: a connection attempt refused at TLS or CONNECT (bad certificate, key, password)
    AUTH_FAILURE = "auth_failure"
    #: a publish or subscribe the broker refused by ACL (Device Defender: authorization
    #: failures); ``action`` says which, ``topic`` what it was aimed at
    AUTHZ_FAILURE = "authz_failure"
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    #: a network flow seen by a gateway, firewall or flow exporter
    FLOW = "flow"
    ENROLL = "enroll"
    ATTESTATION = "attestation"


#: the name events with no device type are set under (an unknown client's auth failures,
#: the managed broker's, which carry only an address): not a device type of the inventory
UNKNOWN_TYPE = "_unknown"


class DetectionMode(enum.StrEnum):
    """How the pipeline treats a device type (per type; new types start in ``learn``,
    events with no type in ``monitor``: ``UNKNOWN_TYPE``)."""

    #: baselines learn, no findings
    LEARN = "learn"
    #: findings and alerts, no action
    MONITOR = "monitor"
    #: findings, alerts and the playbook's actions (quarantine, revoke)
    ENFORCE = "enforce"


class FindingType(enum.StrEnum):
    """Every kind of finding; each detector raises one or two of them."""

    RATE_CHANGE = "rate_change"
    MESSAGE_SIZE = "message_size"
    NEW_DESTINATION = "new_destination"
    LATERAL_MOVEMENT = "lateral_movement"
    TOPIC_PROBING = "topic_probing"
    AUTH_FAILURE_BURST = "auth_failure_burst"
    UNUSUAL_SOURCE = "unusual_source"
    UNUSUAL_TIME = "unusual_time"
    FIRMWARE_DRIFT = "firmware_drift"
    MASS_REREGISTRATION = "mass_reregistration"
    FIRMWARE_NONCOMPLIANT = "firmware_noncompliant"
    ATTESTATION_FAILED = "attestation_failed"
    #: a child seen through a gateway it is not registered under (raised by the gateway
    #: API, not by a detector: docs/gateways.md)
    GATEWAY_MISMATCH = "gateway_mismatch"


class Severity(enum.IntEnum):
    """How bad a finding is; ordered, so playbooks can say "high and above"."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """Lower-case name, as in the API."""
        return self.name.lower()

    @staticmethod
    def parse(text: str) -> Severity:
        """``high`` -> ``Severity.HIGH``."""
        try:
            return Severity[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in Severity)
            raise InvalidInput(f"unknown severity {text!r}; one of {names}") from None


#: a finding folds into a live one of its subject and type only while their events are
#: less than this apart (unless the engine knows the device's own rhythm: ``episode_gap``)
DEFAULT_EPISODE_GAP = 600.0


class FindingState(enum.StrEnum):
    """A finding's lifecycle: open -> acknowledged -> resolved | false_positive."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


FINDING_TRANSITIONS: dict[FindingState, frozenset[FindingState]] = {
    FindingState.OPEN: frozenset({FindingState.ACKNOWLEDGED, FindingState.RESOLVED,
                                  FindingState.FALSE_POSITIVE}),
    FindingState.ACKNOWLEDGED: frozenset({FindingState.RESOLVED, FindingState.FALSE_POSITIVE}),
    FindingState.RESOLVED: frozenset(),
    FindingState.FALSE_POSITIVE: frozenset(),
}

#: event fields besides kind, device and time, in the order the docs list them
OPTIONAL_FIELDS = ("device_type", "source_ip", "client_id", "topic", "action", "size",
                   "qos", "dst_ip", "dst_port", "src_port", "protocol", "bytes", "packets",
                   "firmware_version", "firmware_hash", "reason")
_INT_FIELDS = frozenset({"size", "qos", "dst_port", "src_port", "bytes", "packets"})
_IP_FIELDS = frozenset({"source_ip", "dst_ip"})
MAX_TEXT = 1024


@dataclass(frozen=True, slots=True)
class Event:
    """One observation about one device (or one unknown client, ``device_id`` None)."""

    kind: EventKind
    at: float
    device_id: str | None = None
    #: filled from the inventory at ingestion when the source does not know it
    device_type: str | None = None
    source_ip: str | None = None
    #: the MQTT client id or username the broker saw (auth failures of unknown clients)
    client_id: str | None = None
    topic: str | None = None
    #: ``publish`` / ``subscribe`` for authorization failures
    action: str | None = None
    #: message payload size in bytes (never the payload)
    size: int | None = None
    qos: int | None = None
    dst_ip: str | None = None
    dst_port: int | None = None
    src_port: int | None = None
    protocol: str | None = None
    bytes: int | None = None
    packets: int | None = None
    firmware_version: str | None = None
    firmware_hash: str | None = None
    reason: str | None = None
    #: the upload the event came in (``POST /v1/events`` answers its id); not part of
    #: the JSON schema: ingestion sets it, the findings the event raises carry it
    batch: str | None = None

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Event:
        """Parse one JSON-lines record; ``InvalidInput`` names the bad field."""
        if not isinstance(data, Mapping):
            raise InvalidInput("an event must be a JSON object")
        unknown = set(data) - {"kind", "ts", "device_id", *OPTIONAL_FIELDS}
        if unknown:
            raise InvalidInput(f"unknown event field(s): {', '.join(sorted(unknown))}")
        try:
            kind = EventKind(str(data.get("kind")))
        except ValueError:
            kinds = ", ".join(k.value for k in EventKind)
            raise InvalidInput(f"'kind' must be one of {kinds}") from None
        values: dict[str, Any] = {}
        for name in OPTIONAL_FIELDS:
            value = data.get(name)
            if value is None:
                continue
            if name in _INT_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise InvalidInput(f"'{name}' must be a non-negative integer")
            else:
                if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
                    raise InvalidInput(f"'{name}' must be a non-empty string "
                                       f"of at most {MAX_TEXT} characters")
                if name in _IP_FIELDS:
                    try:
                        ipaddress.ip_address(value)
                    except ValueError:
                        raise InvalidInput(f"'{name}' {value!r} is not an IP address") from None
            values[name] = value
        device_id = data.get("device_id")
        if device_id is not None and (not isinstance(device_id, str) or not device_id
                                      or len(device_id) > MAX_TEXT):
            raise InvalidInput("'device_id' must be a non-empty string")
        if device_id is None and kind is not EventKind.AUTH_FAILURE:
            raise InvalidInput(f"a {kind} event needs a 'device_id'")
        if kind is EventKind.FLOW and ("dst_ip" not in values or "dst_port" not in values):
            raise InvalidInput("a flow event needs 'dst_ip' and 'dst_port'")
        if kind in (EventKind.PUBLISH, EventKind.SUBSCRIBE, EventKind.AUTHZ_FAILURE) \
                and "topic" not in values:
            raise InvalidInput(f"a {kind} event needs a 'topic'")
        return Event(kind=kind, at=parse_timestamp(data.get("ts")), device_id=device_id,
                     **values)

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines form (fields that are None are left out)."""
        data: dict[str, Any] = {"kind": self.kind.value, "ts": format_timestamp(self.at)}
        if self.device_id is not None:
            data["device_id"] = self.device_id
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


def parse_timestamp(value: object) -> float:
    """ISO 8601 with a zone, or epoch seconds, to epoch seconds."""
    if isinstance(value, bool) or value is None:
        raise InvalidInput("'ts' is required: ISO 8601 with a time zone, or epoch seconds")
    if isinstance(value, int | float):
        if not 0 <= value < 32503680000:  # year 3000
            raise InvalidInput("'ts' is out of range")
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"'ts' {value[:64]!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise InvalidInput("'ts' needs a time zone (e.g. 'Z' or '+00:00')")
        return moment.timestamp()
    raise InvalidInput("'ts' must be an ISO 8601 string or a number")


def format_timestamp(at: float) -> str:
    """Epoch seconds to ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector concluded about one device (or, ``device_id`` None, the fleet)."""

    type: FindingType
    severity: Severity
    #: the time of the event that raised it (simulated time in replays and scenarios)
    at: float
    device_id: str | None
    summary: str
    #: the detector that raised it
    detector: str
    #: numbers and values behind it (JSON-safe): observed vs baseline, peers, topics …
    evidence: Mapping[str, Any] = field(default_factory=dict)
    device_type: str | None = None
    #: how long a quiet spell ends this finding's episode: the engine scales it to the
    #: device's own message interval (None: ``DEFAULT_EPISODE_GAP``)
    episode_gap: float | None = None
    #: the batch of the event that raised it (``Event.batch``)
    batch: str | None = None

    @property
    def subject(self) -> str:
        """Who the finding is about, the key its episodes fold under (with its type): the
        device; with none, the source address it names; else the fleet."""
        if self.device_id is not None:
            return f"device:{self.device_id}"
        source = self.evidence.get("source_ip")
        return f"source:{source}" if source else "fleet"

    def to_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "type": self.type.value,
            "severity": self.severity.label,
            "at": format_timestamp(self.at),
            "device_id": self.device_id,
            "device_type": self.device_type,
            "summary": self.summary,
            "detector": self.detector,
            "evidence": dict(self.evidence),
        }
