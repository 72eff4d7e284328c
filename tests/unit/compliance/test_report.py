"""The compliance report of fleets built on the in-memory fakes: the evidence comes from
the real services (inventory, risk register, policies, findings, audit) and each
tenant's report covers its own subtree only (G9)."""

from __future__ import annotations

import json
from datetime import timedelta

from fleet import add_device, add_org_unit, issue

from conftest import Installation
from iotiam.compliance.models import ComplianceReport, Framework, Status
from iotiam.credentials.models import Psk, PskStatus
from iotiam.kernel import SYSTEM, Principal, Role

ACME = Principal("acme-admin", Role.ADMIN, "acme", "/root/acme/")


def _fleet(installation: Installation) -> None:
    api = installation.api()
    for tenant in ("acme", "globex"):
        add_org_unit(api, tenant, "tenant")
    for device_id, org in (("acme-1", "acme"), ("acme-2", "acme"), ("globex-1", "globex"),
                           ("globex-2", "globex")):
        add_device(api, device_id, org=org)


def _status(report: ComplianceReport, framework: Framework, clause: str) -> Status:
    return next(j.status for j in report.judgements
                if j.requirement.framework is framework and j.requirement.clause == clause)


def _report(installation: Installation, who: Principal = SYSTEM) -> ComplianceReport:
    installation.services.risk.rebuild()
    return installation.services.compliance.report(who)


def test_ok_unique_certificates_meet_5_1_1(memory_installation: Installation) -> None:
    _fleet(memory_installation)
    api = memory_installation.api()
    for device_id in ("acme-1", "acme-2", "globex-1", "globex-2"):
        issue(api, device_id)
    report = _report(memory_installation)
    assert report.fleet.devices == 4
    assert _status(report, Framework.ETSI_EN_303_645, "5.1-1") is Status.MET
    assert _status(report, Framework.NIST_IR_8259A, "Device Identification") is Status.MET


def test_fail_a_psk_used_from_two_places_breaks_5_1_1(
        memory_installation: Installation) -> None:
    _fleet(memory_installation)
    api = memory_installation.api()
    assert api.post("/v1/devices/globex-1/psk", json={}).status_code == 201
    now = memory_installation.clock.now().timestamp()
    sightings = b"".join(json.dumps(r).encode() + b"\n" for r in (
        {"seen_at": now - 600, "psk_identity": "globex-1", "mac": "02:00:00:05:00:02",
         "ip": "10.5.0.2"},
        {"seen_at": now - 300, "psk_identity": "globex-1", "mac": "02:00:00:05:00:03",
         "ip": "10.5.0.3"}))
    imported = api.post("/v1/discovery/imports", params={"source": "jsonl", "site": "hq"},
                        headers={"Content-Type": "application/octet-stream"},
                        content=sightings)
    assert imported.status_code == 200, imported.text
    report = _report(memory_installation)
    assert report.fleet.factor("shared-credential") >= 1
    assert _status(report, Framework.ETSI_EN_303_645, "5.1-1") is Status.NOT_MET
    assert _status(report, Framework.EU_CRA_ANNEX_I, "Part I (2)(b)") is Status.NOT_MET
    # acme's admin sees acme's subtree only: globex's shared key is not acme's problem
    issue(api, "acme-1")
    issue(api, "acme-2")
    acme = memory_installation.services.compliance.report(ACME)
    assert acme.fleet.devices == 2 and acme.fleet.factor("shared-credential") == 0
    assert _status(acme, Framework.ETSI_EN_303_645, "5.1-1") is Status.MET
    assert acme.fleet.checkpoint_size is None  # it counts every tenant's records


def test_fail_a_default_psk_identity_breaks_5_1_1(memory_installation: Installation) -> None:
    _fleet(memory_installation)
    issue(memory_installation.api(), "acme-1")
    now = memory_installation.clock.now()
    memory_installation.services.database.uow.psks.add(Psk(  # type: ignore[attr-defined]
        "psk-default", "Client_identity", "acme-2", "/root/acme/", b"", PskStatus.ACTIVE,
        now, None))
    report = _report(memory_installation)
    assert report.fleet.factor("default-credential") == 1
    assert _status(report, Framework.ETSI_EN_303_645, "5.1-1") is Status.NOT_MET


def test_fail_certificates_left_to_expire_are_partly_managed(
        memory_installation: Installation) -> None:
    _fleet(memory_installation)
    api = memory_installation.api()
    for device_id in ("acme-1", "acme-2"):
        issue(api, device_id)
    assert _status(_report(memory_installation), Framework.ETSI_EN_303_645, "5.5-8") \
        is Status.MET
    memory_installation.clock.advance(timedelta(days=45))
    report = _report(memory_installation)
    assert report.fleet.by_credential["expired"] == 2
    assert _status(report, Framework.ETSI_EN_303_645, "5.5-8") is Status.PARTLY


def test_ok_the_api_serves_the_report_within_the_callers_subtree(
        memory_installation: Installation) -> None:
    _fleet(memory_installation)
    memory_installation.services.risk.rebuild()
    root = memory_installation.api().get("/v1/compliance/report")
    assert root.status_code == 200, root.text
    body = root.json()
    assert body["devices"] == 4 and sum(body["counts"].values()) == len(body["requirements"])
    first = body["requirements"][0]
    assert (first["framework"], first["clause"]) == ("ETSI EN 303 645", "5.1-1")
    assert first["evidence"][1]["route"] == "/v1/risk/entries"
    viewer = memory_installation.token("viewer", "acme")
    scoped = memory_installation.api(viewer).get("/v1/compliance/report")
    assert scoped.status_code == 200 and scoped.json()["devices"] == 2
    assert scoped.json()["org_path"] == "/root/acme/"
    assert memory_installation.api("not-a-token").get(
        "/v1/compliance/report").status_code == 401


def test_ok_psk_and_client_holders_count_as_credentialed(
        memory_installation: Installation) -> None:
    """Identification counts a device whose only credential is a PSK or an OAuth client
    as one holding a credential, not as one without."""
    _fleet(memory_installation)
    api = memory_installation.api()
    issue(api, "acme-1")
    assert api.post("/v1/devices/acme-2/psk", json={}).status_code == 201
    assert api.post("/v1/oauth/clients", json={"device": "globex-1"}).status_code == 201
    report = _report(memory_installation)
    judged = next(j for j in report.judgements
                  if j.requirement.framework is Framework.NIST_IR_8259A
                  and j.requirement.clause == "Device Identification")
    values = {e.label: e.value for e in judged.evidence}
    assert values["devices without a credential"] == 1  # globex-2 only
    assert judged.status is Status.PARTLY
    assert judged.summary.startswith("1 devices hold no credential")
