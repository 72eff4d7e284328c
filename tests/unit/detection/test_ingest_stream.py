"""Ingestion with an event stream: it admits (attributes, checks tenancy) and publishes;
it scores nothing itself. Without one it scores in process, as before."""

from __future__ import annotations

from dataclasses import replace

import pytest

from iotiam.detection.ingest import EventIngest
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity
from iotiam.errors import StreamUnavailable
from iotiam.testing.fakes.event_stream import RecordingEventPublisher

from .test_ingest_sightings import AT, REFUSED, Devices, Engine, Findings

KNOWN = Event(EventKind.PUBLISH, AT, device_id="dev-1", topic="devices/dev-1/t", size=1)
UNKNOWN = Event(EventKind.PUBLISH, AT, device_id="dev-9", topic="devices/dev-9/t", size=1)


class CountingEngine(Engine):
    def __init__(self) -> None:
        self.seen: list[Event] = []

    def process(self, event: Event) -> list[Finding]:
        self.seen.append(event)
        return super().process(event)


def test_ingest_ok_published_with_the_inventory_type_and_not_scored_here() -> None:
    engine, findings, publisher = CountingEngine(), Findings(), RecordingEventPublisher()
    ingest = EventIngest(engine, findings, Devices(), publisher=publisher)
    report = ingest.ingest([KNOWN, REFUSED])
    assert publisher.batches == [[replace(KNOWN, device_type="sensor"), REFUSED]]
    assert (report.accepted, report.findings, ingest.events_seen) == (2, 0, 2)
    assert engine.seen == [] and findings.found == []


def test_ingest_ok_tenant_upload_publishes_only_its_own_devices() -> None:
    publisher = RecordingEventPublisher()
    ingest = EventIngest(Engine(), Findings(), Devices(), publisher=publisher)
    report = ingest.ingest([KNOWN, UNKNOWN], org_path="/root/acme/")
    assert [e.device_id for e in publisher.batches[0]] == ["dev-1"]
    assert (report.accepted, report.rejected) == (1, 1)


def test_ingest_fail_stream_down_is_refused_and_nothing_counted() -> None:
    ingest = EventIngest(Engine(), Findings(), Devices(),
                         publisher=RecordingEventPublisher(down=True))
    with pytest.raises(StreamUnavailable):
        ingest.ingest([KNOWN])
    assert ingest.events_seen == 0


def test_ingest_ok_without_a_stream_scores_in_process() -> None:
    engine, findings = CountingEngine(), Findings()
    report = EventIngest(engine, findings, Devices()).ingest([REFUSED])
    assert engine.seen == [REFUSED] and len(findings.found) == report.findings == 1


def test_close_ok_lets_go_of_the_stream() -> None:
    publisher = RecordingEventPublisher()
    EventIngest(Engine(), Findings(), Devices(), publisher=publisher).close()
    assert publisher.closed


def test_false_positive_ok_sent_through_the_stream_not_to_the_local_engine() -> None:
    publisher = RecordingEventPublisher()
    finding = Finding(FindingType.RATE_CHANGE, Severity.HIGH, AT, "dev-1", "s", "rate_change")
    EventIngest(Engine(), Findings(), Devices(), publisher=publisher).false_positive(finding)
    assert publisher.forgiven == [finding]


def test_false_positive_ok_stream_down_is_logged_not_raised() -> None:
    finding = Finding(FindingType.RATE_CHANGE, Severity.HIGH, AT, "dev-1", "s", "rate_change")
    EventIngest(Engine(), Findings(), Devices(),
                publisher=RecordingEventPublisher(down=True)).false_positive(finding)


def test_ingest_ok_published_events_carry_their_upload() -> None:
    publisher = RecordingEventPublisher()
    ingest = EventIngest(Engine(), Findings(), Devices(), publisher=publisher)
    ingest.ingest([KNOWN, REFUSED], batch="bat-1")
    assert [e.batch for e in publisher.batches[0]] == ["bat-1", "bat-1"]
