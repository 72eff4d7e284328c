"""Gateways' reports over MQTT as the control plane takes them, on the in-memory fakes:
the report use case the HTTPS endpoints share (``GatewayReports.take``), the consumer's
answer to each report (``broker.gateway_reports``), and the broker's rule for the
namespace kept for reports (``Gateways.decide_report_topic``)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotiam.audit.models import AuditTag
from iotiam.broker.gateway_reports import GatewayReportConsumer, Report, answer_of
from iotiam.detection.models import FindingType
from iotiam.errors import InvalidInput, PayloadTooLarge, Unauthenticated
from iotiam.gateways.models import answers_topic, report_of_topic, report_topic
from iotiam.gateways.reports import GatewayReports
from iotiam.inventory.models import DeviceDraft, DeviceState
from iotiam.kernel import SYSTEM
from iotiam.policy.actions import PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.testing.builders import make_csr, make_key
from iotiam.testing.fakes.services import MemoryServices, memory_services

MAX_BYTES = 64 * 1024


@pytest.fixture
def services() -> MemoryServices:
    """gw-1 (certified) with child tag-1; gw-2 (certified); loner under nobody."""
    services = memory_services()
    for gateway in ("gw-1", "gw-2"):
        services.inventory.add_device(SYSTEM, DeviceDraft(id=gateway, type_name="gateway"))
        services.pki.issue_certificate(SYSTEM, device_id=gateway,
                                       csr_data=make_csr(gateway, make_key()))
    services.inventory.add_device(SYSTEM, DeviceDraft(id="tag-1", type_name="sensor",
                                                      via="gw-1"))
    services.inventory.add_device(SYSTEM, DeviceDraft(id="loner", type_name="sensor"))
    services.pki.issue_certificate(SYSTEM, device_id="loner",
                                   csr_data=make_csr("loner", make_key()))
    return services


def take(services: MemoryServices, gateway: str, kind: str, body: Any) -> dict[str, Any]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return GatewayReports(services.gateways, services.ingest).take(
        gateway, kind, payload, max_bytes=MAX_BYTES)


def findings(services: MemoryServices) -> list[tuple[str | None, FindingType]]:
    return [(f.finding.device_id, f.finding.type)
            for f in services.uow.findings.findings.values()]


def audited(services: MemoryServices, tag: AuditTag) -> list[Any]:
    with services.database.reading() as uow:
        return [r for r in uow.audit.records if r.tag == tag]


def test_topics_ok() -> None:
    assert report_topic("gw-1", "events") == "gateways/gw-1/reports/events"
    assert report_of_topic("gateways/gw-1/reports/sightings") == ("gw-1", "sightings")
    assert answers_topic("gw-1") == "gateways/gw-1/answers"
    for other in ("gateways/gw-1/reports/other", "gateways/gw-1/answers",
                  "gateways//reports/events", "devices/gw-1/reports/events",
                  "gateways/gw-1/reports/events/x"):
        assert report_of_topic(other) is None, other


def test_take_sightings_ok_and_mismatch_raises_finding(services: MemoryServices) -> None:
    answer = take(services, "gw-1", "sightings", {"children": ["tag-1", "loner"]})
    assert answer["report"] == "sightings"
    assert answer["results"][0] == {"child": "tag-1", "accepted": True, "reason": ""}
    assert answer["results"][1]["accepted"] is False
    assert "not a child of gateway 'gw-1'" in answer["results"][1]["reason"]
    # as over HTTPS: audited, and a gateway_mismatch finding about the gateway
    assert ("gw-1", FindingType.GATEWAY_MISMATCH) in findings(services)
    assert [r.subject for r in audited(services, AuditTag.GATEWAY_SIGHTING_REFUSED)] == [
        "device:loner"]


def test_take_events_ok_and_foreign_refused(services: MemoryServices) -> None:
    events = [{"kind": "connect", "device_id": "tag-1", "ts": 1_760_000_000.0},
              {"kind": "connect", "device_id": "gw-1", "ts": 1_760_000_001.0},
              {"kind": "connect", "device_id": "loner", "ts": 1_760_000_002.0},
              {"kind": "connect", "ts": 1_760_000_003.0}]
    answer = take(services, "gw-1", "events", {"events": events})
    assert answer["report"] == "events"
    assert answer["accepted"] == 2
    assert [r["event"] for r in answer["refused"]] == [3, 4]
    assert answer["refused"][1]["reason"] == "an event must name its device_id"
    assert ("gw-1", FindingType.GATEWAY_MISMATCH) in findings(services)


@pytest.mark.parametrize(("kind", "payload", "error", "message"), [
    ("sightings", b"{not json", InvalidInput, "not valid JSON"),
    ("sightings", b"[]", InvalidInput, "JSON object"),
    ("sightings", b'{"children": "tag-1"}', InvalidInput, "must be a list"),
    ("sightings", b'{"children": [1]}', InvalidInput, "device id"),
    ("sightings", b'{"children": [], "x": 1}', InvalidInput, "unknown field"),
    ("sightings", json.dumps({"children": ["t"] * 1001}).encode(), InvalidInput,
     "at most 1000"),
    ("events", b'{"events": []}', InvalidInput, "1 to 1000"),
    ("events", b'{}', InvalidInput, "no 'events'"),
    ("sightings", b" " * (MAX_BYTES + 1), PayloadTooLarge, "larger than"),
    ("other", b"{}", InvalidInput, "unknown report"),
], ids=["fail/not-json", "fail/not-object", "fail/not-list", "fail/not-string",
        "fail/unknown-field", "fail/too-many", "fail/no-events", "fail/missing",
        "fail/too-large", "fail/unknown-kind"])
def test_take_fail_bad_report(services: MemoryServices, kind: str, payload: bytes,
                              error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        take(services, "gw-1", kind, payload)
    assert findings(services) == []


@pytest.mark.parametrize(("gateway", "message"), [
    ("loner", "is not a gateway"),
    ("nobody", "no longer exists"),
    ("gw 1", "gateway id"),
], ids=["fail/not-a-gateway", "fail/unknown", "fail/malformed"])
def test_take_fail_not_a_gateway(services: MemoryServices, gateway: str, message: str
                                 ) -> None:
    with pytest.raises((Unauthenticated, InvalidInput), match=message):
        take(services, gateway, "sightings", {"children": ["tag-1"]})


def test_take_fail_gateway_suspended_or_revoked(services: MemoryServices) -> None:
    services.inventory.set_state(SYSTEM, "gw-1", DeviceState.SUSPENDED)
    with pytest.raises(Unauthenticated, match="suspended"):
        take(services, "gw-1", "sightings", {"children": ["tag-1"]})
    (record,) = [c for c in services.uow.certificates.certificates.values()
                 if c.device_id == "gw-2"]
    services.pki.revoke_certificate(SYSTEM, format(record.serial, "x"), "keyCompromise")
    services.subjects.forget("gw-2")
    with pytest.raises(Unauthenticated, match="no live credential"):
        take(services, "gw-2", "sightings", {"children": []})
    # each refusal audited as the HTTPS path audits a refused gateway
    refused = [r for r in audited(services, AuditTag.GATEWAY_CHILDREN_DELIVERED)
               if r.reason]
    assert {r.subject for r in refused} >= {"device:gw-1", "device:gw-2"}


def test_consumer_answers_each_report_alone(services: MemoryServices) -> None:
    taker = GatewayReports(services.gateways, services.ingest)
    bad = answer_of(taker, Report("gw-1", "sightings", b"nope", b"c1"), MAX_BYTES)
    assert bad["report"] == "sightings"
    assert bad["error"]["type"] == "malformed-document"
    good = answer_of(taker, Report("gw-1", "sightings", b'{"children": ["tag-1"]}', None),
                     MAX_BYTES)
    assert good["results"] == [{"child": "tag-1", "accepted": True, "reason": ""}]


class Exploding:
    """A taker with a bug."""

    def take(self, gateway_id: str, kind: str, payload: bytes, *, max_bytes: int
             ) -> dict[str, Any]:
        raise RuntimeError("bug")


def test_consumer_fail_bug_is_a_refusal_not_a_crash() -> None:
    consumer = GatewayReportConsumer("127.0.0.1", 1, "u", "p", Exploding(), max_bytes=10)
    answer = consumer.take(Report("gw-1", "events", b"{}", b"x"))
    assert answer["error"]["detail"] == ("the report could not be taken; the server "
                                         "logged why")
    assert (consumer.counts.refused, consumer.counts.taken) == (1, 0)


@pytest.mark.parametrize(("device", "action", "topic", "allowed"), [
    ("gw-1", PUBLISH, "gateways/gw-1/reports/sightings", True),
    ("gw-1", PUBLISH, "gateways/gw-1/reports/events", True),
    ("gw-1", SUBSCRIBE, "gateways/gw-1/answers", True),
    ("gw-1", RECEIVE, "gateways/gw-1/answers", True),
    ("gw-1", PUBLISH, "gateways/gw-2/reports/events", False),
    ("gw-1", PUBLISH, "gateways/gw-1/answers", False),
    ("gw-1", SUBSCRIBE, "gateways/gw-1/reports/+", False),
    ("gw-1", PUBLISH, "gateways/gw-1/reports/other", False),
    ("loner", PUBLISH, "gateways/loner/reports/events", False),
    ("loner", SUBSCRIBE, "gateways/gw-1/answers", False),
    ("tag-1", PUBLISH, "gateways/gw-1/reports/events", False),
], ids=["ok/sightings", "ok/events", "ok/subscribe-answers", "ok/receive-answers",
        "fail/other-gateway", "fail/publish-answers", "fail/read-reports",
        "fail/unknown-kind", "fail/not-a-gateway", "fail/others-answers",
        "fail/child"])
def test_decide_report_topic(services: MemoryServices, device: str, action: str,
                             topic: str, allowed: bool) -> None:
    decision = services.gateways.decide_report_topic(device, action, topic)
    assert decision.allowed is allowed, decision


def test_decide_report_topic_fail_suspended_gateway(services: MemoryServices) -> None:
    services.inventory.set_state(SYSTEM, "gw-1", DeviceState.SUSPENDED)
    decision = services.gateways.decide_report_topic(
        "gw-1", PUBLISH, "gateways/gw-1/reports/sightings")
    assert not decision.allowed and "suspended" in decision.reason
