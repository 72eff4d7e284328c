"""What a gateway reports for its children (sightings, events), taken the same way
whether it came over HTTPS (``POST /v1/gateways/self/sightings|events``, the gateway
authenticated by its certificate) or over MQTT (its own report topic on the managed
broker, the gateway authenticated by the broker's ACL): docs/gateways.md."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from iotiam.errors import IamError, InvalidInput
from iotiam.gateways.models import REPORT_KINDS
from iotiam.gateways.service import MAX_SIGHTINGS, Gateways
from iotiam.inventory.models import Device
from iotiam.untrusted import load_json

#: most events one report may carry (as ``POST /v1/events`` takes in one call)
MAX_EVENTS = 1000


class Ingested(Protocol):
    """What the event ingest answers (``detection.ingest.IngestReport``)."""

    def to_json(self) -> dict[str, Any]:
        """The answer of ``POST /v1/events``: accepted, rejected with reasons, findings."""
        ...


class EventRecords(Protocol):
    """The event ingest (``detection.ingest.EventIngest``) as gateway reports use it."""

    def ingest_records(self, records: Iterable[tuple[int, object]], *,
                       org_path: str | None = None, batch: str | None = None) -> Ingested:
        """Parse numbered JSON values into events (bad ones reported), then ingest."""
        ...


class GatewayReports:
    """A gateway's sightings and events, judged as ``Gateways`` judges what it says."""

    def __init__(self, gateways: Gateways, ingest: EventRecords) -> None:
        self._gateways = gateways
        self._ingest = ingest

    def sightings(self, gateway: Device, child_ids: Sequence[str]) -> dict[str, Any]:
        """Each child accepted or refused with the reason (a child the gateway may not
        speak for is audited and raised as a ``gateway_mismatch`` finding)."""
        results = self._gateways.sightings_from(gateway, child_ids)
        return {"results": [{"child": r.child_id, "accepted": r.accepted, "reason": r.reason}
                            for r in results]}

    def events(self, gateway: Device, events: Sequence[object]) -> dict[str, Any]:
        """Score the events as the devices' own; an event about a device the gateway may
        not speak for is refused (numbered from 1), audited and raised as a finding."""
        named = {n: e.get("device_id") if isinstance(e, dict) else None
                 for n, e in enumerate(events, start=1)}
        others = sorted({d for d in named.values() if isinstance(d, str) and d != gateway.id})
        judged = {r.child_id: r for r in self._gateways.sightings_from(gateway, others)}
        refused, records = [], []
        for number, event in enumerate(events, start=1):
            device = named[number]
            if not isinstance(device, str):
                refused.append({"event": number, "reason": "an event must name its device_id"})
            elif device != gateway.id and not judged[device].accepted:
                refused.append({"event": number, "reason": judged[device].reason})
            else:
                records.append((number, event))
        report = self._ingest.ingest_records(records, org_path=gateway.org_path)
        return {**report.to_json(), "refused": refused}

    def take(self, gateway_id: str, kind: str, payload: bytes, *, max_bytes: int
             ) -> dict[str, Any]:
        """A report a gateway published on its own topic (``models.report_topic``): the
        answer the HTTPS endpoint gives, under ``"report"``; a refused report raises
        (``IamError``: not a gateway any more, not JSON, not the schema, too large)."""
        if kind not in REPORT_KINDS:
            raise InvalidInput(f"unknown report {kind!r}; gateways report "
                               + " and ".join(REPORT_KINDS))
        gateway = self._gateways.named(gateway_id, kind)
        body = load_json(payload, what=f"the {kind} report", max_bytes=max_bytes)
        if kind == "sightings":
            return {"report": kind, **self.sightings(gateway, sightings_of(body))}
        return {"report": kind, **self.events(gateway, events_of(body))}


def sightings_of(body: object) -> list[str]:
    """The children of a sightings report, ``{"children": [...]}`` (the HTTPS schema)."""
    children = _field(body, "children")
    if not isinstance(children, list) or len(children) > MAX_SIGHTINGS:
        raise InvalidInput(f"children must be a list of at most {MAX_SIGHTINGS} device ids")
    if not all(isinstance(c, str) for c in children):
        raise InvalidInput("each child must be a device id (a string)")
    return list(children)


def events_of(body: object) -> list[object]:
    """The events of an events report, ``{"events": [...]}`` (the HTTPS schema)."""
    events = _field(body, "events")
    if not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInput(f"events must be a list of 1 to {MAX_EVENTS} events")
    return list(events)


def _field(body: object, name: str) -> object:
    if not isinstance(body, dict):
        raise InvalidInput(f"a report must be a JSON object with {name!r}")
    extra = sorted(set(body) - {name})
    if extra:  # as the HTTPS bodies, which forbid unknown fields
        raise InvalidInput(f"unknown field(s) in the report: {', '.join(extra)[:200]}")
    if name not in body:
        raise InvalidInput(f"the report has no {name!r}")
    return body[name]


def refusal_answer(kind: str, error: IamError) -> dict[str, Any]:
    """The answer to a report refused whole (the problem fields of an HTTPS answer)."""
    return {"report": kind, "error": {"type": error.kind, "title": error.title,
                                      "detail": error.detail}}
