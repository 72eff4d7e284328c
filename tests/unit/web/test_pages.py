"""Console pages and actions: each calls the API's services as the signed-in person,
within that person's subtree (G9), and every change is audited with their name."""

from __future__ import annotations

import re
from collections.abc import Callable

from api.tenants import ACME_DEVICES, DEVICES, Tenants

from iotiam.audit.search import AuditQuery
from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.kernel import SYSTEM
from iotiam.testing.console import Console


def last_record(tenants: Tenants) -> object:
    records = tenants.installation.services.audit.export(SYSTEM, limit=100000)
    return records[-1]


def device_ids(html: str) -> set[str]:
    return set(re.findall(r'href="/console/devices/([^"?/]+)"', html))


def raise_finding(tenants: Tenants, device_id: str) -> str:
    stored = tenants.installation.services.response.handle([Finding(
        type=FindingType.RATE_CHANGE, severity=Severity.HIGH, at=1_772_366_400.0,
        device_id=device_id, summary="rate up 60x", detector="test-detector",
        evidence={"observed": 60, "baseline": 1})])
    return stored[0].id


def test_ok_overview_counts_the_fleet(console: Console) -> None:
    page = console.page("/console/")
    assert page.status_code == 200
    assert re.search(r"<dt>Devices</dt><dd><a [^>]*>4</a>", page.text)
    assert "<svg" in page.text and "Devices by state" in page.text


def test_ok_inventory_pages_with_a_total_and_filters(console: Console) -> None:
    first = console.page("/console/devices", rows="25")
    assert device_ids(first.text) == set(DEVICES)
    assert "4 devices match." in first.text
    active = console.page("/console/devices", state="active", type="sensor")
    assert "4 devices match." in active.text
    none = console.page("/console/devices", state="suspended")
    assert "0 devices match." in none.text


def test_ok_inventory_filters_by_site_with_its_total_in_the_api_too(
        tenants: Tenants, console: Console) -> None:
    api = tenants.installation.api()
    for device_id, site in (("acme-h1", "hall 1"), ("acme-h2", "hall 1"), ("acme-h3", "hall 2")):
        assert api.post("/v1/devices", json={"id": device_id, "type": "sensor", "org": "acme",
                                             "site": site}).status_code == 201
    hall = console.page("/console/devices", site="hall 1")
    assert device_ids(hall.text) == {"acme-h1", "acme-h2"}
    assert "2 devices match." in hall.text and 'value="hall 1"' in hall.text
    later = console.page("/console/devices", site="hall 1", after="acme-h1")
    assert device_ids(later.text) == {"acme-h2"} and "2 devices match." in later.text
    assert "0 devices match." in console.page("/console/devices", site="hall 1",
                                              state="suspended").text
    body = api.get("/v1/devices", params={"site": "hall 2"}).json()
    assert [d["id"] for d in body["items"]] == ["acme-h3"] and body["total"] == 1


def test_ok_inventory_filters_by_credential_status(tenants: Tenants, console: Console) -> None:
    api = tenants.installation.api()
    assert api.post("/v1/devices", json={"id": "acme-bare", "type": "sensor",
                                         "org": "acme"}).status_code == 201
    active = console.page("/console/devices", credential="active", rows="25")
    assert device_ids(active.text) == set(DEVICES) and "4 devices match." in active.text
    bare = console.page("/console/devices", credential="none")
    assert device_ids(bare.text) == {"acme-bare"} and "1 device match." in bare.text
    narrowed = console.page("/console/devices", credential="active", type="sensor")
    assert device_ids(narrowed.text) == set(DEVICES)
    assert "Total not counted" in narrowed.text
    assert device_ids(console.page("/console/devices", credential="expired").text) == set()


def test_fail_bad_filters_are_a_400_page(console: Console) -> None:
    for params in ({"state": "on-fire"}, {"rows": "7"}, {"credential": "shiny"}):
        answer = console.page("/console/devices", **params)
        assert answer.status_code == 400 and 'role="alert"' in answer.text


def test_ok_device_page_shows_identity_credentials_policy_trust_and_trail(
        tenants: Tenants, console: Console) -> None:
    page = console.page("/console/devices/acme-d1")
    assert page.status_code == 200
    for part in ("Identity", "Certificates", "Effective policy", "Trust score", "Findings",
                 "Audit trail", tenants.serials["acme-d1"], "admin:device:registered"):
        assert part in page.text, part


def test_ok_revoke_from_the_device_page_is_final_and_audited_as_the_person(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    console = browsers(tenants.token("acme", "admin"))
    console.page("/console/devices/acme-d1")
    serial = tenants.serials["acme-d1"]
    answer = console.post(f"/console/devices/acme-d1/certificates/{serial}/revoke",
                          {"reason": "keyCompromise"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/devices/acme-d1?notice=revoked"
    services = tenants.installation.services
    record = services.pki.get_certificate(SYSTEM, serial)
    assert str(record.status) == "revoked" and str(record.revocation_reason) == "keyCompromise"
    revoked = last_record(tenants)
    assert revoked.tag == "device:certificate:revoked"  # type: ignore[attr-defined]
    assert revoked.actor.startswith("token:admin-")  # type: ignore[attr-defined]
    assert "Certificate revoked." in console.page(answer.headers["location"]).text


def test_fail_a_certificate_of_another_device_is_not_revoked_through_this_one(
        tenants: Tenants, console: Console) -> None:
    console.page("/console/devices/acme-d1")
    serial = tenants.serials["globex-d1"]
    answer = console.post(f"/console/devices/acme-d1/certificates/{serial}/revoke",
                          {"reason": "keyCompromise"})
    assert answer.status_code == 400
    assert str(tenants.installation.services.pki.get_certificate(SYSTEM, serial).status) \
        == "issued"


def test_ok_quarantine_lift_and_decommission(tenants: Tenants, console: Console) -> None:
    services = tenants.installation.services
    console.page("/console/devices/acme-d1")
    assert console.post("/console/devices/acme-d1/quarantine",
                        {"reason": "odd traffic"}).status_code == 303
    assert str(services.inventory.get_device(SYSTEM, "acme-d1").state) == "quarantined"
    assert console.post("/console/devices/acme-d1/lift").status_code == 303
    assert str(services.inventory.get_device(SYSTEM, "acme-d1").state) == "active"
    refused = console.post("/console/devices/acme-d1/decommission", {"confirm": "acme-d"})
    assert refused.status_code == 400
    assert str(services.inventory.get_device(SYSTEM, "acme-d1").state) == "active"
    assert console.post("/console/devices/acme-d1/decommission",
                        {"confirm": "acme-d1"}).status_code == 303
    assert str(services.inventory.get_device(SYSTEM, "acme-d1").state) == "decommissioned"
    serial = tenants.serials["acme-d1"]
    assert str(services.pki.get_certificate(SYSTEM, serial).status) == "revoked"


def test_fail_a_viewer_sees_but_cannot_act(tenants: Tenants,
                                           browsers: Callable[[str | None], Console]) -> None:
    console = browsers(tenants.token("acme", "viewer"))
    assert console.page("/console/devices/acme-d1").status_code == 200
    answer = console.post("/console/devices/acme-d1/quarantine")
    assert answer.status_code == 403 and "operator" in answer.text
    assert str(tenants.installation.services.inventory.get_device(SYSTEM, "acme-d1").state) \
        == "active"


def test_fail_an_org_admin_sees_only_its_subtree(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    console = browsers(tenants.token("acme", "admin"))
    assert device_ids(console.page("/console/devices").text) == ACME_DEVICES
    missing = console.page("/console/devices/no-such-device")
    other = console.page("/console/devices/globex-d1")
    assert other.status_code == missing.status_code == 404
    assert other.text.replace("globex-d1", "X") == missing.text.replace("no-such-device", "X")
    serial = tenants.serials["globex-d1"]
    answer = console.post(f"/console/devices/globex-d1/certificates/{serial}/revoke",
                          {"reason": "keyCompromise"})
    assert answer.status_code == 404
    assert "globex" not in console.page("/console/audit").text
    finding = raise_finding(tenants, "globex-d1")
    assert finding not in console.page("/console/findings").text
    assert console.page(f"/console/findings/{finding}").status_code == 404


def test_ok_findings_acknowledge_then_false_positive(tenants: Tenants, console: Console
                                                     ) -> None:
    finding = raise_finding(tenants, "acme-d1")
    listed = console.page("/console/findings", state="open")
    assert finding in listed.text
    console.page(f"/console/findings/{finding}")
    assert console.post(f"/console/findings/{finding}/ack", {"note": "looking"}
                        ).status_code == 303
    services = tenants.installation.services
    assert str(services.response.get_finding(SYSTEM, finding).state) == "acknowledged"
    assert finding not in console.page("/console/findings", state="open").text
    assert console.post(f"/console/findings/{finding}/resolve",
                        {"outcome": "false_positive", "note": "backup job"}).status_code == 303
    stored = services.response.get_finding(SYSTEM, finding)
    assert str(stored.state) == "false_positive" and stored.note == "backup job"


def test_ok_risk_register_filters_and_accepts(tenants: Tenants, console: Console) -> None:
    installation = tenants.installation
    with installation.services.database.reading() as uow:
        cert = next(iter(uow.certificates.iter_device_certificates(org_path="/root/")))
    installation.clock.set(cert.not_before + (cert.not_after - cert.not_before) * 0.8)
    installation.services.risk.rebuild(SYSTEM)
    console.page("/console/")  # the moved clock: the session was idle, sign in again
    console.sign_in()
    everything = console.page("/console/risk")
    expiring = console.page("/console/risk", factor="expiring-no-renewal",
                            subject="certificate")
    assert "4 entries match." in expiring.text
    assert "expiring-no-renewal" in everything.text
    entry_id = re.findall(r'href="/console/risk/([^"]+)"', expiring.text)[0]
    console.page(f"/console/risk/{entry_id}")
    answer = console.post(f"/console/risk/{entry_id}/accept", {
        "factor": "expiring-no-renewal", "reason": "replaced next week", "days": "7"})
    assert answer.status_code == 303
    assert "3 entries match." in console.page("/console/risk", factor="expiring-no-renewal",
                                              subject="certificate").text
    assert last_record(tenants).tag == "admin:risk-factor:accepted"  # type: ignore[attr-defined]
    bad = console.post(f"/console/risk/{entry_id}/accept", {
        "factor": "expiring-no-renewal", "reason": "x", "days": "9999"})
    assert bad.status_code == 400


def test_ok_audit_search_by_actor_tag_and_device(tenants: Tenants, console: Console) -> None:
    page = console.page("/console/audit", tag="admin:device:registered", device="acme-d1")
    rows = re.findall(r"<tr><td>(\d+)</td>", page.text)
    assert len(rows) == 1
    search = tenants.installation.services.audit.search(
        SYSTEM, AuditQuery(tag="admin:device:registered"))
    assert len(search.records) == len(DEVICES)
    assert [r.seq for r in search.records] == sorted((r.seq for r in search.records),
                                                     reverse=True)
    nobody = console.page("/console/audit", actor="nobody")
    assert "No record matches" in nobody.text
    verified = console.page("/console/audit", verify="yes")
    assert "The chain verifies" in verified.text


def test_ok_audit_search_pages_through_windows(tenants: Tenants) -> None:
    audit = tenants.installation.services.audit
    first = audit.search(SYSTEM, AuditQuery(), limit=3)
    second = audit.search(SYSTEM, AuditQuery(), limit=3, before_seq=first.before)
    assert len(first.records) == len(second.records) == 3
    assert first.records[-1].seq > second.records[0].seq
    narrow = audit.search(SYSTEM, AuditQuery(), limit=100, scan=2)
    assert len(narrow.records) == 2 and narrow.before == narrow.window[0]


HOSTILE = [
    ("/console/devices", {"state": "on-fire"}), ("/console/devices", {"type": "x" * 200}),
    ("/console/devices/%00", {}), ("/console/audit", {"before": "abc"}),
    ("/console/audit", {"since": "yesterday"}), ("/console/risk", {"min_score": "-1"}),
    ("/console/risk", {"factor": "zzz"}), ("/console/risk", {"after": "zzz"}),
    ("/console/findings", {"state": "zzz"}), ("/console/assets", {"after": "zzz"}),
    ("/console/assets", {"status": "zzz"}), ("/console/risk/nope", {}),
    ("/console/assets/nope", {}), ("/console/findings/nope", {}),
    ("/console/static/../app.py", {}),
]


def test_fail_hostile_page_requests_get_a_4xx_page(console: Console) -> None:
    """G10 for the console: a clear error page, never a 5xx."""
    for path, params in HOSTILE:
        answer = console.page(path, **params)
        assert 400 <= answer.status_code < 500, (path, params, answer.status_code)
        assert answer.headers["content-type"].startswith("text/html")


def test_fail_hostile_forms_change_nothing(tenants: Tenants, console: Console) -> None:
    before = len(tenants.installation.services.audit.export(SYSTEM, limit=100000))
    console.page("/console/")
    for path, form in (("/console/assets/adopt", {"asset": "nope", "type": "sensor"}),
                       ("/console/assets/adopt", {"type": "sensor"}),
                       ("/console/assets/adopt", {"asset": "a", "type": "sensor",
                                                  "claim_hours": "99999"}),
                       ("/console/risk/nope/accept", {"factor": "x", "reason": "y",
                                                      "days": "3"}),
                       ("/console/findings/nope/ack", {}),
                       ("/console/devices/acme-d1/quarantine", {"reason": "r" * 3000}),
                       ("/console/devices/acme-d1/certificates/00/revoke",
                        {"reason": "keyCompromise"})):
        answer = console.post(path, form)
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
    records = tenants.installation.services.audit.export(SYSTEM, after_seq=before,
                                                         limit=100000)
    assert all(r.outcome != "success" for r in records)
    assert str(tenants.installation.services.inventory.get_device(SYSTEM, "acme-d1").state) \
        == "active"


def daily_total(html: str, title: str) -> int:
    found = re.search(rf"<figcaption>{title}: (\d+) in the last 30 days</figcaption>", html)
    assert found, f"no {title} chart"
    return int(found.group(1))


def test_ok_overview_charts_revocations_and_enrollments_of_the_callers_subtree_only(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    services = tenants.installation.services
    for device_id in ("acme-berlin-d1", "globex-d1", "acme2-d1"):
        services.pki.revoke_certificate(SYSTEM, tenants.serials[device_id], "keyCompromise")
    services.activity.catch_up()
    root = browsers(None).page("/console/").text
    assert daily_total(root, "Revocations") == 3
    acme = browsers(tenants.token("acme", "admin")).page("/console/")
    assert acme.status_code == 200
    # G9: acme2's path starts like acme's but is not under it
    assert daily_total(acme.text, "Revocations") == 1
    assert daily_total(acme.text, "Enrollments") == 0
    day = services.clock.now().date().isoformat()
    assert f"<title>{day}: 1</title>" in acme.text
    assert f"<tr><td>{day}</td><td>1</td></tr>" in acme.text
