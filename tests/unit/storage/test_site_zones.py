"""Each device's time zone comes from its site, and follows the change feed."""

from __future__ import annotations

from fleet import add_device

from conftest import Installation
from iotiam.changes import DeviceChanged, PolicyChanged, Published
from iotiam.storage.site_zones import SqlSiteZones


def test_site_zones_ok_follow_devices_and_sites(sql_installation: Installation) -> None:
    api = sql_installation.api()
    rows = [{"id": f"h-{n}", "type": "sensor", "site": ("berlin", "chicago")[n % 2]}
            for n in range(4)]
    answer = api.post("/v1/devices/import",
                      json={"rows": [{"row": n, "data": d} for n, d in enumerate(rows)]})
    assert answer.status_code == 200 and answer.json()["imported"], answer.text
    add_device(api, "no-site", "sensor")
    answer = api.put("/v1/sites/berlin", json={"timezone": "Europe/Berlin", "networks": []})
    assert answer.status_code in (200, 201), answer.text
    zones = SqlSiteZones(sql_installation.services.database.engine).load()
    assert zones.zone_of("h-0").key == "Europe/Berlin"
    assert zones.zone_of("h-1").key == "UTC"  # chicago is no known site yet
    assert zones.zone_of("no-site").key == "UTC"
    assert zones.zone_of(None).key == "UTC"
    answer = api.put("/v1/sites/chicago", json={"timezone": "America/Chicago",
                                                "networks": []})
    assert answer.status_code in (200, 201), answer.text
    zones.sites_changed(Published(1, PolicyChanged()))
    assert zones.zone_of("h-1").key == "America/Chicago"
    answer = api.post("/v1/devices/import", json={"rows": [
        {"row": 0, "data": {"id": "h-9", "type": "sensor", "site": "berlin"}}]})
    assert answer.status_code == 200 and answer.json()["imported"], answer.text
    assert zones.zone_of("h-9").key == "UTC"  # not read yet
    zones.devices_changed(Published(2, DeviceChanged(("h-9",))))
    assert zones.zone_of("h-9").key == "Europe/Berlin"
