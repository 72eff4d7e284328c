"""The event pipeline hands discovery what events show of unmanaged identities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from iotiam.detection.ingest import EventIngest
from iotiam.detection.models import Event, EventKind, Finding, FindingType, Severity
from iotiam.discovery.models import Sighting
from iotiam.testing.fakes.sightings import RecordingSightingSink

AT = 1_800_000_000.0
REFUSED = Event(EventKind.AUTH_FAILURE, AT, source_ip="10.0.0.9", dst_port=8883,
                reason="tls: certificate verify failed")


class Engine:
    """Raises one finding per auth failure; knows nothing else."""

    def process(self, event: Event) -> list[Finding]:
        if event.kind is not EventKind.AUTH_FAILURE:
            return []
        return [Finding(FindingType.AUTH_FAILURE_BURST, Severity.LOW, event.at, None, "s", "d")]

    def false_positive(self, finding: Finding) -> None:
        """Nothing learned."""

    def snapshot(self) -> dict[str, Any]:
        return {}


class Findings:
    def __init__(self) -> None:
        self.found: list[Finding] = []

    def report(self, findings: Sequence[Finding]) -> None:
        self.found.extend(findings)


class Devices:
    def types_and_paths(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        return {d: ("sensor", "/root/acme/") for d in device_ids if d == "dev-1"}


class BrokenSink:
    def observe(self, sightings: Sequence[Sighting]) -> None:
        raise RuntimeError("discovery is down")


def pipeline(sink: Any) -> tuple[EventIngest, Findings]:
    findings = Findings()
    return EventIngest(Engine(), findings, Devices(), sightings=sink), findings


def test_ingest_sightings_ok_broker_delivery_is_source_broker() -> None:
    sink = RecordingSightingSink()
    ingest, _ = pipeline(sink)
    ingest.deliver([REFUSED,
                    Event(EventKind.CONNECT, AT, device_id="ghost", client_id="g-1",
                          source_ip="10.0.0.7"),
                    Event(EventKind.CONNECT, AT, device_id="dev-1", client_id="d-1",
                          source_ip="10.0.0.8")])
    assert [(s.source, s.ip, s.client_id, s.username) for s in sink.sightings] == [
        ("broker", "10.0.0.9", None, None), ("broker", "10.0.0.7", "g-1", "ghost")]
    assert sink.calls == 1  # one hand-over per batch


def test_ingest_sightings_ok_uploaded_events_are_source_events() -> None:
    sink = RecordingSightingSink()
    ingest, _ = pipeline(sink)
    report = ingest.ingest_records([
        (1, {"kind": "flow", "ts": AT, "device_id": "dev-1", "dst_ip": "10.1.1.1",
             "dst_port": 502}),
        (2, {"kind": "flow", "ts": AT, "device_id": "dev-1", "dst_ip": "1.1.1.1",
             "dst_port": 443})], org_path="/root/")
    assert report.accepted == 2
    assert [(s.source, s.ip, s.open_ports) for s in sink.sightings] == [
        ("events", "10.1.1.1", (502,))]


def test_ingest_sightings_fail_tenant_upload_adds_nothing_to_the_root() -> None:
    sink = RecordingSightingSink()
    ingest, _ = pipeline(sink)
    report = ingest.ingest_records([(1, REFUSED.to_json())], org_path="/root/acme/")
    assert report.accepted == 1
    assert sink.sightings == []


def test_ingest_sightings_ok_a_retry_loop_is_one_sighting() -> None:
    sink = RecordingSightingSink()
    ingest, _ = pipeline(sink)
    for second in range(5):
        ingest.deliver([Event(EventKind.AUTH_FAILURE, AT + second, source_ip="10.0.0.9",
                              dst_port=8883, reason="tls: certificate verify failed")])
    assert len(sink.sightings) == 1


@pytest.mark.filterwarnings("ignore")
def test_ingest_sightings_fail_broken_sink_costs_detection_nothing() -> None:
    ingest, findings = pipeline(BrokenSink())
    report = ingest.ingest([REFUSED])
    assert (report.accepted, report.findings, len(findings.found)) == (1, 1, 1)
