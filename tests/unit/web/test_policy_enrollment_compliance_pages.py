"""The policies, enrollment and compliance pages: each reads and acts through the
services the API uses, as the signed-in person, within that person's subtree (G9)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from api.tenants import Tenants
from enrollment.zerotouch import (
    csr_for,
    device_client,
    manufacturer_ca,
    register_manufacturer,
    simpleenroll,
)
from markupsafe import escape

from iotiam.kernel import SYSTEM
from iotiam.testing.console import Console

Browsers = Callable[[str | None], Console]
GLOBEX_POLICY = """\
name: globex-telemetry
version: 1
statements:
  - sid: telemetry
    effect: allow
    actions: [mqtt:publish]
    topics: ["globex/${device.id}/telemetry"]
"""
GUARDRAIL = """\
name: no-firmware-writes
version: 1
guardrail: true
statements:
  - sid: no-writes
    effect: deny
    actions: [mqtt:publish]
    topics: ["firmware/#"]
"""


def _policy(tenants: Tenants, source: str, owner: str | None = None) -> None:
    answer = tenants.installation.api().put(
        "/v1/policies", params={"owner": owner} if owner else None, content=source,
        headers={"Content-Type": "application/yaml"})
    assert answer.status_code == 201, answer.text


def policy_names(html: str) -> set[str]:
    return set(re.findall(r'href="/console/policies/([^"?/]+)"', html))


# -- policies --------------------------------------------------------------------------


def test_ok_policies_filter_sort_and_total(tenants: Tenants, console: Console) -> None:
    _policy(tenants, GLOBEX_POLICY, owner="globex")
    _policy(tenants, GUARDRAIL)
    page = console.page("/console/policies")
    assert {"globex-telemetry", "no-firmware-writes", "iotiam-default-device"} \
        <= policy_names(page.text)
    guardrails = console.page("/console/policies", kind="guardrail")
    assert policy_names(guardrails.text) - {"simulate", "who-can"} == {"no-firmware-writes"}
    assert "1 policy matches." in guardrails.text
    named = console.page("/console/policies", name="globex", sort="newest")
    assert policy_names(named.text) - {"simulate", "who-can"} == {"globex-telemetry"}
    assert console.page("/console/policies", sort="sideways").status_code == 400


def test_ok_policy_detail_shows_source_lint_and_attachments(console: Console,
                                                            tenants: Tenants) -> None:
    _policy(tenants, GLOBEX_POLICY, owner="globex")
    page = console.page("/console/policies/globex-telemetry")
    assert page.status_code == 200
    for part in ("Lint findings", "Attachments", "Source", "globex/${device.id}/telemetry"):
        assert part in page.text, part


def test_ok_attach_and_detach_with_csrf_and_audit(tenants: Tenants, console: Console) -> None:
    _policy(tenants, GLOBEX_POLICY, owner="globex")
    console.page("/console/policies/globex-telemetry")
    refused = console.post("/console/policies/globex-telemetry/attach",
                           {"kind": "group", "id": "globex-g"}, csrf=False)
    assert refused.status_code == 403
    services = tenants.installation.services
    assert services.policies.describe(SYSTEM, "globex-telemetry").attachments == ()
    answer = console.post("/console/policies/globex-telemetry/attach",
                          {"kind": "group", "id": "globex-g"})
    assert answer.status_code == 303, answer.text
    attached = services.policies.describe(SYSTEM, "globex-telemetry").attachments
    assert [(str(a.target.kind), a.target.id) for a in attached] == [("group", "globex-g")]
    assert "Policy attached." in console.page(answer.headers["location"]).text
    assert console.post("/console/policies/globex-telemetry/detach",
                        {"kind": "group", "id": "globex-g"}).status_code == 303
    assert services.policies.describe(SYSTEM, "globex-telemetry").attachments == ()


def test_ok_simulator_answers_with_its_explanation(console: Console) -> None:
    allowed = console.page("/console/policies/simulate", device="acme-d1",
                           action="mqtt:publish", topic="devices/acme-d1/temp")
    assert re.search(r'id="decision">permit<', allowed.text)
    assert "iotiam-default-device" in allowed.text and "own-namespace" in allowed.text
    denied = console.page("/console/policies/simulate", device="acme-d1",
                          action="mqtt:publish", topic="devices/globex-d1/temp")
    assert re.search(r'id="decision">deny<', denied.text)
    assert 'id="explanation"' in denied.text
    assert console.page("/console/policies/simulate", device="acme-d1", action="mqtt:*",
                        topic="x").status_code == 400


def test_ok_who_can_lists_the_holders(console: Console) -> None:
    page = console.page("/console/policies/who-can", action="mqtt:publish",
                        topic="devices/acme-d1/temp")
    assert page.status_code == 200
    assert re.findall(r'href="/console/devices/([^"?/]+)"', page.text) == ["acme-d1"]
    assert "1 of 4 devices scanned may do it." in page.text


def test_fail_a_tenant_admin_sees_only_its_subtree_policies(
        tenants: Tenants, browsers: Browsers) -> None:
    _policy(tenants, GLOBEX_POLICY, owner="globex")
    acme = browsers(tenants.token("acme", "admin"))
    assert "globex-telemetry" not in policy_names(acme.page("/console/policies").text)
    assert acme.page("/console/policies/globex-telemetry").status_code == 404
    assert acme.page("/console/policies/simulate", device="globex-d1",
                     topic="devices/globex-d1/x").status_code == 404
    page = acme.page("/console/policies/who-can", topic="devices/globex-d1/x")
    assert "/console/devices/globex-d1" not in page.text
    assert "0 of 2 devices scanned may do it." in page.text


# -- enrollment ------------------------------------------------------------------------


def _held(tenants: Tenants, device_id: str) -> str:
    answer = simpleenroll(device_client(tenants.installation), csr_for(device_id),
                          forwarded_for="203.0.113.5")
    assert answer.status_code == 202, answer.text
    request_id: str = answer.json()["request"]
    return request_id


def test_ok_queue_filters_and_approves_with_csrf(tenants: Tenants, console: Console) -> None:
    first, second = _held(tenants, "meter-1"), _held(tenants, "meter-2")
    queue = console.page("/console/enrollment")
    assert first in queue.text and second in queue.text and "2 requests match." in queue.text
    one = console.page("/console/enrollment", device="meter-2", sort="newest")
    assert second in one.text and first not in one.text
    assert console.page("/console/enrollment", status="nope").status_code == 400
    console.page(f"/console/enrollment/requests/{first}")
    answer = console.post(f"/console/enrollment/requests/{first}/approve",
                          {"type": "sensor", "org": "acme"})
    assert answer.status_code == 303, answer.text
    device = tenants.installation.services.inventory.get_device(SYSTEM, "meter-1")
    assert (device.org_unit_id, str(device.state)) == ("acme", "active")
    assert "approved" in console.page(answer.headers["location"]).text
    assert first not in console.page("/console/enrollment").text
    rejected = console.post(f"/console/enrollment/requests/{second}/reject",
                            {"reason": "not ours"})
    assert rejected.status_code == 303
    assert str(tenants.installation.services.enrollment_queue.get(SYSTEM, second).status) \
        == "rejected"


def test_fail_a_tenant_admin_sees_no_unscoped_request(tenants: Tenants,
                                                      browsers: Browsers) -> None:
    request_id = _held(tenants, "meter-3")
    acme = browsers(tenants.token("acme", "admin"))
    assert request_id not in acme.page("/console/enrollment").text
    assert acme.page(f"/console/enrollment/requests/{request_id}").status_code == 404
    assert acme.post(f"/console/enrollment/requests/{request_id}/approve",
                     {"type": "sensor"}).status_code == 404


def test_ok_manufacturers_manifest_and_claims(tenants: Tenants, console: Console) -> None:
    register_manufacturer(tenants.installation, manufacturer_ca(tenants.installation),
                          org="acme")
    page = console.page("/console/enrollment")
    assert "acme-devices" in page.text
    console.page("/console/enrollment/manufacturers/acme-devices")
    imported = console.post("/console/enrollment/manufacturers/acme-devices/manifest",
                            {"serials": "SN-1\nSN-2\n\nbad serial!"})
    assert imported.status_code == 200
    assert re.search(r'id="manifest-size">2 serials', imported.text)
    assert imported.text.count(">imported<") == 2
    assert tenants.installation.api().post(
        "/v1/devices", json={"id": "new-1", "type": "sensor", "org": "acme"}).status_code == 201
    claim = console.post("/console/enrollment/claims", {"device": "new-1", "minutes": "60"})
    assert claim.status_code == 200 and 'id="claim-token"' in claim.text
    assert console.post("/console/enrollment/claims",
                        {"device": "new-1", "minutes": "61"}).status_code == 400


def test_fail_a_viewer_cannot_issue_a_claim(tenants: Tenants, browsers: Browsers) -> None:
    assert tenants.installation.api().post(
        "/v1/devices", json={"id": "new-2", "type": "sensor", "org": "acme"}).status_code == 201
    viewer = browsers(tenants.token("acme", "viewer"))
    viewer.page("/console/enrollment")
    answer = viewer.post("/console/enrollment/claims", {"device": "new-2"})
    assert answer.status_code == 403 and "claim-token" not in answer.text


# -- compliance ------------------------------------------------------------------------


def test_ok_compliance_page_filters_and_links_its_evidence(
        tenants: Tenants, console: Console) -> None:
    tenants.installation.services.risk.rebuild()
    page = console.page("/console/compliance")
    assert page.status_code == 200
    for clause in ("5.1-1", "5.5-8", "Device Identification", "Part I (2)(d)", "Part II (2)"):
        assert clause in page.text, clause
    assert 'href="/console/risk?factor=shared-credential"' in page.text
    etsi = console.page("/console/compliance", framework="ETSI EN 303 645")
    assert "Part II (2)" not in etsi.text and "5.10-1" in etsi.text
    met = console.page("/console/compliance", status="met", sort="status")
    assert "status-not-met" not in met.text
    assert console.page("/console/compliance", status="fine").status_code == 400


def test_ok_compliance_export_is_one_self_contained_file(console: Console) -> None:
    answer = console.page("/console/compliance/export")
    assert answer.status_code == 200
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    html = answer.text
    assert "<style>" in html and "5.1-1" in html and "NIST IR 8259A" in html
    for external in ("<link", "<script", "src=", "href=", "@import", "url("):
        assert external not in html, external
    # every requirement is a heading (a printed PDF's outline lists them); printing starts
    # each framework on a new page and never cuts a requirement in two
    report = tenants_report(console)
    for r in report["requirements"]:
        heading = f'<span class="mono">{escape(r["clause"])}</span> · {escape(r["title"])}</h3>'
        assert heading in html, r
    assert "@media print" in html and ".framework + .framework { break-before: page; }" in html
    assert ".requirement { break-inside: avoid; }" in html


def tenants_report(console: Console) -> dict[str, Any]:
    """The report the API answers the console's signed-in person."""
    answer = console.http.get("/v1/compliance/report",
                              headers={"Authorization": f"Bearer {console.token}"})
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_fail_a_tenant_report_counts_its_subtree_only(tenants: Tenants,
                                                      browsers: Browsers) -> None:
    acme = browsers(tenants.token("acme", "viewer"))
    page = acme.page("/console/compliance")
    assert "/root/acme/ · 2 devices" in page.text
    assert "/root/acme/" in acme.page("/console/compliance/export").text


def test_fail_a_guardrail_refuses_an_attachment_and_stores_nothing(
        tenants: Tenants, console: Console) -> None:
    _policy(tenants, GUARDRAIL)
    assert tenants.installation.api().post(
        "/v1/policies/no-firmware-writes/attachments",
        json={"kind": "org-unit", "id": "acme"}).status_code == 201
    _policy(tenants, GLOBEX_POLICY.replace("globex-telemetry", "firmware-push").replace(
        "globex/${device.id}/telemetry", "firmware/${device.id}"), owner="acme")
    console.page("/console/policies/firmware-push")
    answer = console.post("/console/policies/firmware-push/attach",
                          {"kind": "device", "id": "acme-d1"})
    assert answer.status_code == 403 and "no-firmware-writes" in answer.text
    assert tenants.installation.services.policies.describe(
        SYSTEM, "firmware-push").attachments == ()
