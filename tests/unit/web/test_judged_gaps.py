"""What an outside reading of issue 14 found missing from the console, now there: the
overview's devices by site, the audit export, detection modes with what monitor mode
would have done, and accepting a risk on several register entries at once."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from api.tenants import Tenants

from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.kernel import SYSTEM
from iotiam.testing.console import Console


def test_ok_overview_draws_devices_by_site_with_links(tenants: Tenants,
                                                      console: Console) -> None:
    api = tenants.installation.api()
    for n, site in enumerate(("hall 1", "hall 1", "hall 2")):
        assert api.post("/v1/devices", json={"id": f"acme-s{n}", "type": "sensor",
                                             "org": "acme", "site": site}).status_code == 201
    page = console.page("/console/").text
    assert "Devices by site" in page
    assert '<a href="/console/devices?site=hall+1">hall 1</a>: 2' in page
    assert "(no site): 4" in page  # the tenants' four devices have none
    assert '<a href="/console/devices?credential=active">active</a>: 4' in page


def test_ok_audit_export_is_the_subtree_as_json_lines(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    root = browsers(None)
    assert "/console/audit/export" in root.page("/console/audit").text
    everything = root.page("/console/audit/export")
    assert everything.status_code == 200
    assert everything.headers["content-disposition"].startswith("attachment; filename=")
    lines = [json.loads(line) for line in everything.text.splitlines()]
    assert any("globex" in json.dumps(line) for line in lines)
    acme = browsers(tenants.token("acme", "admin"))
    mine = [json.loads(line) for line in acme.page("/console/audit/export").text.splitlines()]
    assert mine and len(mine) < len(lines)
    assert not any("globex" in json.dumps(line) for line in mine)  # G9


def test_ok_detection_modes_set_and_monitor_counts(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    console = browsers(None)
    page = console.page("/console/detection")
    assert page.status_code == 200 and "Set mode" in page.text
    assert console.post("/console/detection/modes",
                        {"device_type": "sensor", "mode": "monitor"}).status_code == 303
    services = tenants.installation.services
    assert str(services.response.mode_of("sensor")) == "monitor"
    services.response.handle([Finding(
        type=FindingType.RATE_CHANGE, severity=Severity.HIGH,
        at=tenants.installation.clock.now().timestamp(), device_id="acme-d1",
        summary="rate up 60x", detector="test-detector", evidence={"observed": 60})])
    shown = console.page("/console/detection", days="1").text
    assert "<td>sensor</td><td>monitor</td>" in shown
    assert f"<td>{FindingType.RATE_CHANGE}</td><td>1</td>" in shown
    bad = console.post("/console/detection/modes", {"device_type": "sensor", "mode": "off"})
    assert bad.status_code == 400
    assert console.page("/console/detection", days="5").status_code == 400
    acme = browsers(tenants.token("acme", "admin"))
    assert "Set mode" not in acme.page("/console/detection").text
    refused = acme.post("/console/detection/modes", {"device_type": "sensor",
                                                     "mode": "enforce"})
    assert refused.status_code == 404  # a business unit's admin sets no global mode (G9)
    assert str(services.response.mode_of("sensor")) == "monitor"


def test_ok_accept_a_risk_on_several_entries_at_once(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    installation = tenants.installation
    with installation.services.database.reading() as uow:
        cert = next(iter(uow.certificates.iter_device_certificates(org_path="/root/")))
    installation.clock.set(cert.not_before + (cert.not_after - cert.not_before) * 0.8)
    installation.services.risk.rebuild(SYSTEM)
    console = browsers(None)
    listed = console.page("/console/risk", factor="expiring-no-renewal", subject="certificate")
    assert "4 entries match." in listed.text
    assert "Accept a risk on the chosen entries" in listed.text
    chosen = re.findall(r'name="entry" value="([^"]+)"', listed.text)[:2]
    other = console.page("/console/risk", factor="", subject="device").text
    without = [e for e in re.findall(r'name="entry" value="([^"]+)"', other)
               if e not in chosen][:1]  # a device entry: no expiring-no-renewal factor
    refused = console.post("/console/risk/accept", {"entry": chosen, "reason": "",
                                                    "factor": "expiring-no-renewal",
                                                    "days": "7"})
    assert refused.status_code == 400  # no reason: nothing accepted
    assert "4 entries match." in console.page("/console/risk", factor="expiring-no-renewal",
                                              subject="certificate").text
    done = console.post("/console/risk/accept", {
        "entry": [*chosen, *without], "factor": "expiring-no-renewal",
        "reason": "replaced next week", "days": "7"})
    assert done.status_code == 200
    assert f"on 2 of {2 + len(without)} entries" in done.text
    assert "2 entries match." in console.page("/console/risk", factor="expiring-no-renewal",
                                              subject="certificate").text
    acme = browsers(tenants.token("acme", "operator"))
    acme.page("/console/risk")
    assert acme.post("/console/risk/accept", {
        "entry": chosen, "factor": "expiring-no-renewal", "reason": "r",
        "days": "7"}).status_code == 403  # admins accept risks
