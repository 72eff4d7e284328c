"""Defects an outside review of issue 13 found, each reproduced over the API.

Every test here states what a user must get; each failed on the reviewed main (bb27948).
"""

from __future__ import annotations

import json

from expect import assert_problem

from api.tenants import Tenants
from conftest import Installation

IMPORTS = "/v1/discovery/imports"
ADOPT = "/v1/discovery/adoptions"
ASSETS = "/v1/discovery/assets"

NMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<nmaprun scanner="nmap" args="nmap -sT -Pn -p 80 -oX scan.xml 10.1.0.5" start="1772359200"
 version="7.93" xmloutputversion="1.05">
<host starttime="1772359200" endtime="1772359201"><status state="up" reason="user-set"/>
<address addr="10.1.0.5" addrtype="ipv4"/>
<ports><port protocol="tcp" portid="80"><state state="open" reason="syn-ack"/></port></ports>
</host>
<runstats><finished time="1772359201"/></runstats>
</nmaprun>
"""


def jsonl(*records: dict[str, object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def test_fail_same_hostname_two_macs_counted_as_one_asset(installation: Installation) -> None:
    """Two boxes with their own MAC and address but the vendor's default host name
    ("raspberrypi", "localhost", "ESP_...") are two devices: counting them as one hides
    every unmanaged device behind a common name (issue 13: count every device)."""
    api = installation.api()
    answer = api.post(IMPORTS, params={"source": "jsonl", "site": "plant"}, content=jsonl(
        {"seen_at": 1772359200, "hostname": "raspberrypi", "mac": "02:00:00:aa:01:01",
         "ip": "10.9.1.1"},
        {"seen_at": 1772359201, "hostname": "raspberrypi", "mac": "02:00:00:aa:01:02",
         "ip": "10.9.1.2"}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["new_assets"] == 2
    page = api.get(ASSETS).json()
    assert page["total"] == 2
    assert sorted(a["mac"] for a in page["items"]) == ["02:00:00:aa:01:01", "02:00:00:aa:01:02"]


def test_fail_same_hostname_at_two_sites_counted_as_one_asset(installation: Installation) -> None:
    """The same default host name at two sites, no other identifier in common."""
    api = installation.api()
    for n, site in enumerate(("plant-a", "plant-b"), start=1):
        answer = api.post(IMPORTS, params={"source": "jsonl", "site": site}, content=jsonl(
            {"seen_at": 1772359200, "hostname": "localhost", "ip": f"10.9.2.{n}",
             "mac": f"02:00:00:aa:02:0{n}"}))
        assert answer.status_code == 200, answer.text
    assert api.get(ASSETS).json()["total"] == 2


def test_fail_adopt_asset_whose_name_is_taken_elsewhere(tenants: Tenants) -> None:
    """An asset whose host name is some other tenant's device id can never be adopted:
    the proposal takes the host name, the registration refuses it ("choose another"),
    and the adoption has no way to choose another id."""
    installation = tenants.installation
    acme = installation.api(tenants.token("acme", "operator"))
    answer = acme.post(IMPORTS, params={"source": "jsonl", "site": "hq"}, content=jsonl(
        {"seen_at": 1772359200, "hostname": "globex-d1", "mac": "02:00:00:aa:03:01"}))
    assert answer.status_code == 200, answer.text
    (asset,) = acme.get(ASSETS).json()["items"]
    done = acme.post(ADOPT, json={"assets": [asset["id"]], "type": "sensor"})
    assert done.status_code == 200, done.text
    (item,) = done.json()["items"]
    assert item["ok"] is True, item
    assert item["device"] != "globex-d1"


def test_fail_adopted_asset_still_unmanaged_in_register(installation: Installation) -> None:
    """After adoption the register (refreshed for the new device as the refresher does on
    its DeviceChanged) must no longer list the asset as unmanaged; it stayed until the
    next full hourly rebuild, and the summary kept counting it."""
    api = installation.api()
    assert api.post(IMPORTS, params={"source": "jsonl", "site": "lab"}, content=jsonl(
        {"seen_at": 1772359200, "hostname": "plc-7", "mac": "02:00:5e:10:20:07"})
    ).status_code == 200
    assert api.post("/v1/risk/rebuild").status_code == 200
    (asset,) = api.get(ASSETS).json()["items"]
    done = api.post(ADOPT, json={"assets": [asset["id"]], "type": "sensor"}).json()
    assert done["adopted"] == 1
    installation.services.risk.refresh_devices([done["items"][0]["device"]])
    unmanaged = api.get("/v1/risk/entries", params={"factor": "unmanaged"}).json()
    assert asset["id"] not in {e["subject_id"] for e in unmanaged["items"]}
    assert api.get("/v1/risk/summary").json()["unmanaged"] == 0


def test_fail_jsonl_accepts_year_9999(installation: Installation) -> None:
    """Every other source refuses a time past 2200 as implausible (``_common.epoch``); the
    jsonl source took 9999-12-31, and the asset's last_seen stays there for ever."""
    api = installation.api()
    answer = api.post(IMPORTS, params={"source": "jsonl"}, content=jsonl(
        {"seen_at": "9999-12-31T23:59:59Z", "mac": "02:00:00:aa:04:01"}))
    assert_problem(answer, 400)
    assert api.get(ASSETS).json()["total"] == 0


def test_fail_unknown_option_silently_ignored(installation: Installation) -> None:
    """A misspelt option must be refused as the cmdb source does: the project's own
    synthetic network sent dnsmasq ``lease_seconds`` for ``lease-time`` and every lease
    was dated 23 h late without a word (commit 804104e)."""
    api = installation.api()
    answer = api.post(IMPORTS, params=[("source", "nmap"), ("option", "lease_seconds=3600")],
                      content=NMAP)
    assert_problem(answer, 400)
    leases = b"1772362800 02:00:5e:10:20:08 10.20.0.8 cam-8 *\n"
    answer = api.post(IMPORTS, params=[("source", "dnsmasq"),
                                       ("option", "lease_seconds=3600")], content=leases)
    assert_problem(answer, 400)
    assert api.get(ASSETS).json()["total"] == 0


def test_fail_evidence_times_are_not_iso(installation: Installation) -> None:
    """The asset answers ISO 8601 times; the same asset's evidence in the register (and in
    ``iotiam risk show`` and the export) gave raw epoch floats such as 1796588908.615989."""
    api = installation.api()
    assert api.post(IMPORTS, params={"source": "jsonl", "site": "lab"}, content=jsonl(
        {"seen_at": 1772359200, "hostname": "cam-9", "mac": "02:00:5e:10:20:09"})
    ).status_code == 200
    assert api.post("/v1/risk/rebuild").status_code == 200
    (asset,) = api.get(ASSETS).json()["items"]
    (entry,) = api.get("/v1/risk/entries", params={"subject": "asset"}).json()["items"]
    evidence = entry["factors"][0]["evidence"]
    assert (evidence["first_seen"], evidence["last_seen"]) == (
        asset["first_seen"], asset["last_seen"])


def test_fail_dnsmasq_lease_dated_after_the_import(installation: Installation) -> None:
    """dnsmasq writes a lease's expiry; with a 12 h lease (a common ``dhcp-range``) and no
    ``lease-time`` option, expiry minus the assumed hour is 11 h after the import: the
    device is recorded as seen in the future (a file cannot report a renewal that has not
    happened), so its last_seen outlives it and dormancy starts 11 h late."""
    api = installation.api()
    now = installation.clock.now().timestamp()
    leases = f"{int(now) + 12 * 3600} 02:00:5e:10:20:08 10.20.0.8 cam-8 *\n".encode()
    answer = api.post(IMPORTS, params={"source": "dnsmasq", "site": "lab"}, content=leases)
    assert answer.status_code == 200, answer.text
    (asset,) = api.get(ASSETS).json()["items"]
    imported = installation.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
    assert asset["last_seen"][:19] <= imported, (asset["last_seen"], imported)
