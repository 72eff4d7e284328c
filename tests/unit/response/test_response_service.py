"""Findings in, playbook actions out, and every action undone exactly (on the memory
stores, which tests/unit/storage/test_store_contracts.py holds to the SQL ones)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fleet import add_device, add_org_unit, issue

from conftest import Installation
from iotiam.audit.models import AuditTag
from iotiam.changes import (
    CertificateRevoked,
    CredentialRevoked,
    DetectionModeChanged,
    DeviceChanged,
    Published,
)
from iotiam.detection.engine import DetectionEngine
from iotiam.detection.models import DetectionMode, Finding, FindingState, FindingType, Severity
from iotiam.errors import Conflict, NotFound
from iotiam.inventory.models import DeviceState
from iotiam.kernel import SYSTEM
from iotiam.policy.actions import PUBLISH
from iotiam.response.alerts import AlertDispatcher
from iotiam.response.scoring import TrustRefresher
from iotiam.testing.fakes.changes import MemoryFleetReads


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Response is a use case: it runs on the memory stores."""
    return memory_installation


class RecordingChannel:
    """An alert channel that keeps what it was given."""

    name = "recording"

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []

    def deliver(self, alert: Any) -> None:
        self.alerts.append(dict(alert))


def finding(device_id: str | None, kind: FindingType = FindingType.RATE_CHANGE,
            severity: Severity = Severity.HIGH) -> Finding:
    return Finding(type=kind, severity=severity, at=1_772_366_400.0, device_id=device_id,
                   summary=f"{kind} on {device_id}", detector="test-detector",
                   evidence={"observed": 60, "baseline": 1})


@pytest.fixture
def channel(installation: Installation) -> RecordingChannel:
    recording = RecordingChannel()
    dispatcher = AlertDispatcher([recording])
    installation.services.response._alerts = dispatcher  # the one seam tests need
    installation.services.alerts = dispatcher
    return recording


def allowed(installation: Installation, device_id: str, topic: str) -> bool:
    device = installation.services.inventory.get_device(SYSTEM, device_id)
    subject = installation.services.subjects.subject_of(device)
    return installation.services.decisions.decide(subject, PUBLISH, topic).allowed


def audit_tags(installation: Installation) -> list[str]:
    return [r.tag for r in installation.services.audit.iter_all(SYSTEM)]


def test_ok_learn_mode_stores_but_neither_alerts_nor_acts(
        installation: Installation, channel: RecordingChannel) -> None:
    add_device(installation.api(), "s1")
    (stored,) = installation.services.response.handle([finding("s1")])
    installation.services.alerts.flush()
    assert stored.mode is DetectionMode.LEARN and stored.state is FindingState.OPEN
    assert channel.alerts == []
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.PENDING
    assert AuditTag.FINDING_RAISED in audit_tags(installation)


def test_ok_monitor_mode_alerts_only(installation: Installation,
                                     channel: RecordingChannel) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    installation.services.response.set_mode(SYSTEM, "sensor", "monitor")
    (stored,) = installation.services.response.handle([finding("s1")])
    installation.services.alerts.flush()
    assert [a["finding_id"] for a in channel.alerts] == [stored.id]
    assert channel.alerts[0]["evidence"] == {"observed": 60, "baseline": 1}
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.ACTIVE


def test_ok_repeats_are_counted_not_duplicated(installation: Installation) -> None:
    add_device(installation.api(), "s1")
    response = installation.services.response
    first = response.handle([finding("s1")])
    again = response.handle([finding("s1"), finding("s1")])
    assert len(first) == 1 and again == []
    (only,) = response.list_findings(SYSTEM, device_id="s1")
    assert only.repeats == 2


def test_ok_enforce_quarantines_and_lifting_restores_exactly(
        installation: Installation, channel: RecordingChannel) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    assert allowed(installation, "s1", "devices/s1/telemetry")
    response = installation.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    (stored,) = response.handle([finding("s1")])
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.QUARANTINED
    assert not allowed(installation, "s1", "devices/s1/telemetry")
    assert allowed(installation, "s1", "quarantine/s1/report")
    assert response.get_finding(SYSTEM, stored.id).actions == ("alert", "quarantine")
    (mitigation,) = response.mitigations(SYSTEM, "s1")
    assert mitigation.previous_state is DeviceState.ACTIVE
    installation.clock.advance(timedelta(seconds=1))
    response.lift_quarantine(SYSTEM, "s1")
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.ACTIVE
    assert allowed(installation, "s1", "devices/s1/telemetry")
    assert response.mitigations(SYSTEM, "s1") == []
    tags = audit_tags(installation)
    assert AuditTag.MITIGATION_APPLIED in tags and AuditTag.MITIGATION_LIFTED in tags
    with pytest.raises(Conflict, match="no quarantine"):
        response.lift_quarantine(SYSTEM, "s1")


def test_ok_suspended_device_returns_to_suspended(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    installation.services.inventory.set_state(SYSTEM, "s1", DeviceState.SUSPENDED)
    response = installation.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    response.handle([finding("s1")])
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.QUARANTINED
    response.lift_quarantine(SYSTEM, "s1")
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.SUSPENDED


def test_ok_false_positive_lifts_its_quarantine_and_teaches(
        installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    response = installation.services.response
    taught: list[Finding] = []
    response.on_false_positive(taught.append)
    response.set_mode(SYSTEM, "sensor", "enforce")
    (stored,) = response.handle([finding("s1")])
    done = response.resolve(SYSTEM, stored.id, "expected burst", false_positive=True)
    assert done.state is FindingState.FALSE_POSITIVE
    assert [f.type for f in taught] == [FindingType.RATE_CHANGE]
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.ACTIVE
    with pytest.raises(Conflict, match="false_positive"):
        response.acknowledge(SYSTEM, stored.id)


def test_ok_revoke_action_is_final(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    serial = issue(api, "s1")["serial"]
    response = installation.services.response
    response.set_playbook(SYSTEM, {"rules": [
        {"finding_type": "lateral_movement", "min_severity": "high", "actions": ["revoke"]}]})
    response.set_mode(SYSTEM, "sensor", "enforce")
    response.handle([finding("s1", FindingType.LATERAL_MOVEMENT)])
    status = installation.public().get(f"/v1/certificates/{serial}")
    shown = api.get(f"/v1/certificates/{serial}").json()
    assert shown["status"] == "revoked", status.text


def test_ok_trust_score_follows_findings_into_policy(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    policy = ("name: trusted-only\nversion: 1\nstatements:\n  - effect: allow\n"
              "    actions: [mqtt:publish]\n    topics: [\"plant/${device.id}\"]\n"
              "    conditions:\n      min_trust_score: 60\n")
    put = api.put("/v1/policies", content=policy, headers={"Content-Type": "application/yaml"})
    assert put.status_code == 201, put.text
    attach = api.post("/v1/policies/trusted-only/attachments",
                      json={"kind": "device", "id": "s1"})
    assert attach.status_code in (200, 201), attach.text
    trust = installation.services.trust
    assert trust.explain(SYSTEM, "s1").score == 100
    assert allowed(installation, "s1", "plant/s1")
    installation.clock.advance(timedelta(seconds=1))
    response = installation.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    response.set_playbook(SYSTEM, {"rules": [{"finding_type": "*", "actions": ["alert"]}]})
    (a,) = response.handle([finding("s1", severity=Severity.HIGH)])
    (b,) = response.handle([finding("s1", FindingType.NEW_DESTINATION, Severity.MEDIUM)])
    score = trust.explain(SYSTEM, "s1")
    assert score.score == 55
    assert {f.detail.split(" finding ")[1].split(":")[0] for f in score.factors} == {a.id, b.id}
    assert not allowed(installation, "s1", "plant/s1")
    installation.clock.advance(timedelta(seconds=1))
    response.resolve(SYSTEM, a.id)
    assert trust.explain(SYSTEM, "s1").score == 85
    assert allowed(installation, "s1", "plant/s1")


def test_fail_other_tenant_cannot_see_or_touch_findings(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "globex", "tenant")
    add_device(api, "acme-1", org="acme")
    (stored,) = installation.services.response.handle([finding("acme-1")])
    globex = installation.api(installation.token("admin", "globex"))
    acme = installation.api(installation.token("operator", "acme"))
    assert globex.get(f"/v1/findings/{stored.id}").status_code == 404
    assert globex.post(f"/v1/findings/{stored.id}/ack", json={}).status_code == 404
    assert globex.get("/v1/findings").json()["items"] == []
    assert globex.get("/v1/devices/acme-1/trust").status_code == 404
    listed = acme.get("/v1/findings").json()["items"]
    assert [f["id"] for f in listed] == [stored.id]
    assert acme.post(f"/v1/findings/{stored.id}/ack", json={"note": "on it"}).json()[
        "state"] == "acknowledged"


def test_fail_fleet_findings_are_only_for_global_admins(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    (stored,) = installation.services.response.handle(
        [replace(finding(None, FindingType.MASS_REREGISTRATION), device_type="sensor")])
    acme = installation.api(installation.token("admin", "acme"))
    assert acme.get(f"/v1/findings/{stored.id}").status_code == 404
    assert api.get(f"/v1/findings/{stored.id}").json()["device_id"] is None


def test_fail_mode_changes_need_a_global_admin(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    acme = installation.api(installation.token("admin", "acme"))
    viewer = installation.api(installation.token("viewer"))
    for client in (acme, viewer):
        answer = client.put("/v1/detection/modes/sensor", json={"mode": "enforce"})
        assert answer.status_code in (403, 404), answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    bad = api.put("/v1/detection/modes/sensor", json={"mode": "panic"})
    assert bad.status_code == 400 and "learn, monitor, enforce" in bad.json()["detail"]
    assert api.put("/v1/detection/modes/toaster", json={"mode": "monitor"}).status_code == 404
    assert installation.services.response.mode_of("sensor") is DetectionMode.LEARN
    with pytest.raises(NotFound):
        installation.services.response.get_finding(SYSTEM, "fnd-nope")


def test_ok_modes_are_read_once_then_again_when_the_feed_says(
        installation: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine asks ``mode_of`` for every event: the store is read the first time
    and when a mode changes, never per call; a failed read keeps the modes in force."""
    services = installation.services
    response = services.response
    engine = services.ingest.engine
    assert isinstance(engine, DetectionEngine) and engine.modes is response
    store = services.database.uow.detection_settings
    reads: list[int] = []
    stored_modes = store.modes

    def counted() -> dict[str, DetectionMode]:
        reads.append(1)
        return stored_modes()

    monkeypatch.setattr(store, "modes", counted)
    for _ in range(1000):
        response.mode_of("sensor")
    assert len(reads) <= 1
    response.set_mode(SYSTEM, "sensor", "enforce")
    reads.clear()
    assert {response.mode_of(t) for t in ["sensor"] * 1000} == {DetectionMode.ENFORCE}
    assert response.mode_of("gateway") is DetectionMode.LEARN and reads == []

    def down() -> dict[str, DetectionMode]:
        raise ConnectionError("database down")

    monkeypatch.setattr(store, "modes", down)
    with pytest.raises(ConnectionError):
        response.settings_changed(Published(9, DetectionModeChanged("sensor", "monitor")))
    assert response.mode_of("sensor") is DetectionMode.ENFORCE


def test_ok_refresher_rescores_after_a_revocation(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    serial = issue(api, "s1")["serial"]
    trust = installation.services.trust
    assert trust.explain(SYSTEM, "s1").score == 100
    # serving.trust_scores_refresher, over the change log and feed of the memory stores
    refresher = TrustRefresher(trust, MemoryFleetReads(installation.services.database,
                                                      installation.clock), installation.clock)
    installation.services.changes.subscribe(
        (CertificateRevoked, CredentialRevoked, DeviceChanged), refresher.rescore_later)
    installation.clock.advance(timedelta(seconds=1))
    assert api.post(f"/v1/certificates/{serial}/revoke",
                    json={"reason": "keyCompromise"}).status_code == 200
    installation.clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() >= 1
    with installation.services.database.reading() as uow:
        (stored,) = uow.trust.for_devices(["s1"]).values()
    assert stored.score == 70
    assert installation.services.subjects.subject_of(
        installation.services.inventory.get_device(SYSTEM, "s1")).trust_score == 70


def test_ok_worse_repeat_escalates_and_asks_the_playbook_again(
        installation: Installation, channel: RecordingChannel) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    response = installation.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    (first,) = response.handle([finding("s1", FindingType.TOPIC_PROBING, Severity.MEDIUM)])
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.ACTIVE
    (escalated,) = response.handle([finding("s1", FindingType.TOPIC_PROBING, Severity.HIGH)])
    assert escalated.id == first.id
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.QUARANTINED
    stored = response.get_finding(SYSTEM, first.id)
    assert stored.finding.severity is Severity.HIGH and stored.repeats == 1
    assert response.handle([finding("s1", FindingType.TOPIC_PROBING, Severity.LOW)]) == []
    assert AuditTag.FINDING_ESCALATED in audit_tags(installation)


def test_ok_non_compliant_firmware_is_quarantined_in_enforce(
        installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    response = installation.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    attested = replace(finding("s1", FindingType.FIRMWARE_NONCOMPLIANT, Severity.MEDIUM),
                       detector="attestation")
    response.report([attested])
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.QUARANTINED


def test_ok_late_escalation_does_not_undo_an_admins_lift(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "s1")
    issue(api, "s1")
    response = installation.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    response.set_playbook(SYSTEM, {"rules": [
        {"finding_type": "topic_probing", "min_severity": "medium", "actions": ["quarantine"]}]})
    at = installation.clock.now().timestamp()
    probing = replace(finding("s1", FindingType.TOPIC_PROBING, Severity.MEDIUM), at=at)
    response.handle([probing])
    installation.clock.advance(timedelta(seconds=5))
    response.lift_quarantine(SYSTEM, "s1")
    # worse evidence from before the lift, delivered after it: no new quarantine
    response.handle([replace(probing, severity=Severity.HIGH, at=at + 1)])
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.ACTIVE
    # evidence from after the lift is a new matter
    installation.clock.advance(timedelta(seconds=5))
    response.handle([replace(probing, severity=Severity.CRITICAL, at=at + 9)])
    assert installation.services.inventory.get_device(SYSTEM, "s1").state \
        is DeviceState.QUARANTINED


def test_ok_refresher_scores_each_change_once_while_its_window_lasts(
        installation: Installation) -> None:
    # an import's devices stay in the refresher's look-back window for several passes
    # (OVERLAP); they are scored in the first, and again only when they change again
    api = installation.api()
    clock = installation.clock
    refresher = TrustRefresher(installation.services.trust,
                               MemoryFleetReads(installation.services.database, clock), clock)
    installation.services.changes.subscribe(
        (CertificateRevoked, CredentialRevoked, DeviceChanged), refresher.rescore_later)
    rows = [{"row": n, "data": {"id": f"m{n}", "type": "sensor"}} for n in range(1, 4)]
    assert api.post("/v1/devices/import", json={"rows": rows}).json()["imported"] == 3
    clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() == 3
    with installation.services.database.reading() as uow:
        assert set(uow.trust.for_devices(["m1", "m2", "m3"])) == {"m1", "m2", "m3"}
    clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() == 0  # its own touch of the new scores is no change
    assert api.post("/v1/devices/m2/state", json={"state": "active"}).status_code == 200
    clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() == 1
    with installation.services.database.reading() as uow:
        assert uow.trust.for_devices(["m2"])["m2"].computed_at == clock.now()
    clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() == 0


def test_fail_refresher_pass_that_fails_leaves_its_devices_for_the_next(
        installation: Installation, monkeypatch: pytest.MonkeyPatch) -> None:
    class NoUpdates:  # only the feed names devices: what a failed pass took must stay
        def unscored_changes(self, since: Any) -> list[Any]:
            return []

    api = installation.api()
    trust = installation.services.trust
    refresher = TrustRefresher(trust, NoUpdates(), installation.clock)
    installation.services.changes.subscribe((DeviceChanged,), refresher.rescore_later)
    add_device(api, "s1")

    def down(device_ids: Any, **options: Any) -> Any:
        raise ConnectionError("database down")

    with monkeypatch.context() as patch:
        patch.setattr(trust, "rescore", down)
        with pytest.raises(ConnectionError):
            refresher.refresh_once()
    assert refresher.refresh_once() == 1
    with installation.services.database.reading() as uow:
        assert set(uow.trust.for_devices(["s1"])) == {"s1"}


def test_ok_refresher_scores_a_new_device_when_the_feed_names_it(
        installation: Installation) -> None:
    # a policy's min_trust_score denies a device without a score: a device registered a
    # moment ago must not wait for the next full pass (every 2 s in serve) to get one
    api = installation.api()
    clock = installation.clock
    refresher = TrustRefresher(installation.services.trust,
                               MemoryFleetReads(installation.services.database, clock), clock,
                               every=3600.0)
    installation.services.changes.subscribe(
        (CertificateRevoked, CredentialRevoked, DeviceChanged), refresher.rescore_later)
    stop = threading.Event()
    loop = threading.Thread(target=refresher.run, args=(stop,), daemon=True)
    loop.start()
    try:
        add_device(api, "fresh-1")
        deadline = time.monotonic() + 30
        scored: dict[str, Any] = {}
        while "fresh-1" not in scored and time.monotonic() < deadline:
            time.sleep(0.02)
            with installation.services.database.reading() as uow:
                scored = uow.trust.for_devices(["fresh-1"])
        assert "fresh-1" in scored, "the device named by the feed was left for the full pass"
        assert scored["fresh-1"].score == 80  # pending, no credential yet
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()
    # the full pass that later reads its touch in the window does not score it again
    clock.advance(timedelta(seconds=1))
    assert refresher.refresh_once() == 0
