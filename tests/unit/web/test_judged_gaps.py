"""What an outside reading of issue 14 found missing from the console, now there: the
overview's devices by site, the audit export, detection modes with what monitor mode
would have done, and accepting a risk on several register entries at once."""

from __future__ import annotations

import json
from collections.abc import Callable

from api.tenants import Tenants

from iotiam.detection.models import Finding, FindingType, Severity
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
