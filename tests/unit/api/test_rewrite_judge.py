"""Defects an outside review found after the rewrite of the import write path, the
parsers, the register rebuild and the API edges (main at 5c7eea5), each reproduced over
the API. Each states what a user must get; all were fixed in the same session.
"""

from __future__ import annotations

import json

import pytest
from expect import assert_problem

from api.tenants import build_tenants
from conftest import Installation
from iotiam.kernel import SYSTEM

IMPORTS = "/v1/discovery/imports"
ASSETS = "/v1/discovery/assets"
ENTRIES = "/v1/risk/entries"
RAW = {"Content-Type": "application/octet-stream"}


def jsonl(*records: dict[str, object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.mark.parametrize("cursor", ["99999999999999999999.x", "9223372036854775808.x"])
def test_fail_risk_cursor_with_a_huge_score_is_a_400(installation: Installation,
                                                     cursor: str) -> None:
    """`after` is `score.id`; a score no entry can have is not a cursor this API
    returned: a 400 problem, never a 5xx (G10)."""
    api = installation.api()
    for params in ({}, {"factor": "unmanaged"}, {"site": "hq"}):
        answer = api.get(ENTRIES, params={**params, "after": cursor})
        assert_problem(answer, 400)


def test_fail_risk_cursor_not_returned_by_the_api_is_a_400(installation: Installation
                                                           ) -> None:
    """docs/risk-register.md: 'An `after` that is not a cursor this API returned is a
    400.' Entry ids are `<subject>-<20 hex digits>`; `x` is none."""
    answer = installation.api().get(ENTRIES, params={"after": "1.x"})
    assert_problem(answer, 400)


def test_fail_refresh_after_a_psk_is_revoked_writes_what_a_rebuild_writes(
        installation: Installation) -> None:
    """docs/risk-register.md: what `refresh_devices` writes equals what a rebuild writes
    for them. Change a device (revoke its PSK, as decommissioning does), refresh it as
    the change feed would, then rebuild: the register must not move."""
    api = installation.api()
    assert api.post("/v1/devices", json={"id": "d2", "type": "sensor"}).status_code == 201
    created = api.post("/v1/devices/d2/psk", json={})
    assert created.status_code == 201, created.text
    now = installation.clock.now().timestamp()
    answer = api.post(IMPORTS, params={"source": "jsonl", "site": "hq"}, headers=RAW,
                      content=jsonl(
                          {"seen_at": now - 600, "psk_identity": "d2",
                           "mac": "02:00:00:05:00:02", "ip": "10.5.0.2"},
                          {"seen_at": now - 300, "psk_identity": "d2",
                           "mac": "02:00:00:05:00:03", "ip": "10.5.0.3"}))
    assert answer.status_code == 200 and answer.json()["added"] == 2, answer.text
    installation.services.risk.rebuild(SYSTEM)
    shared = [e for e in installation.risk_entries().values()
              if e.subject == "psk" and e.subject_id == "d2"]
    assert [h.factor.value for e in shared for h in e.factors] == ["shared-credential"]

    revoked = api.post("/v1/devices/d2/psk/revoke", json={})
    assert revoked.status_code in (200, 204), revoked.text
    installation.services.risk.refresh_devices(["d2"])
    refreshed = installation.risk_entries()
    installation.services.risk.rebuild(SYSTEM)
    assert installation.risk_entries() == refreshed


def test_fail_same_sightings_imported_by_two_tenants_stored_for_each(
        installation: Installation) -> None:
    """G9: an import can never reveal another tenant's asset. Two tenants' scanners see
    the same box (one MAC, one time): each tenant gets its own asset, and neither
    learns from `duplicates` what the other imported."""
    world = build_tenants(installation)
    line = jsonl({"seen_at": 1764000000, "mac": "02:00:00:0b:00:01", "ip": "10.11.0.1"})
    reports = {}
    for tenant in ("acme", "globex"):
        api = installation.api(world.token(tenant, "operator"))
        answer = api.post(IMPORTS, params={"source": "jsonl", "site": "s"}, headers=RAW,
                          content=line)
        assert answer.status_code == 200, answer.text
        reports[tenant] = answer.json()
        assert api.get(ASSETS).json()["total"] == 1, tenant
    assert reports["globex"]["added"] == 1 and reports["globex"]["duplicates"] == 0


def test_fail_address_handed_on_within_a_day_names_its_new_holder(
        installation: Installation) -> None:
    """docs/discovery.md: a sighting takes the holder of its address seen nearest to it
    (exact to within an hour); an address seen with another MAC was handed on and is
    re-bound to the new holder. Box 1 leases 10.14.0.1 at 00:00, box 2 at 03:00 the
    same day, and a flow from the address at 03:01 is box 2's."""
    api = installation.api()
    t = 1764892800  # 2025-12-05T00:00:00Z
    for record in ({"seen_at": t, "mac": "02:00:00:0e:00:01", "ip": "10.14.0.1"},
                   {"seen_at": t + 3 * 3600, "mac": "02:00:00:0e:00:02", "ip": "10.14.0.1"},
                   {"seen_at": t + 3 * 3600 + 60, "ip": "10.14.0.1"}):
        answer = api.post(IMPORTS, params={"source": "jsonl", "site": "hq"}, headers=RAW,
                          content=jsonl(record))
        assert answer.status_code == 200 and answer.json()["added"] == 1, answer.text
    assets = {a["mac"]: a for a in api.get(ASSETS).json()["items"]}
    assert sorted(assets) == ["02:00:00:0e:00:01", "02:00:00:0e:00:02"]
    assert assets["02:00:00:0e:00:01"]["sightings"] == 1
    assert assets["02:00:00:0e:00:02"]["sightings"] == 2


def test_fail_same_import_option_twice_is_a_400(installation: Installation) -> None:
    """docs/discovery.md: a query parameter given twice is a 400 naming it, never one of
    the two kept silently, and an option that would map every record wrongly is refused
    before a byte is read. `option` repeats for different keys; the same key twice with
    two values is that ambiguity."""
    api = installation.api()
    answer = api.post(IMPORTS, headers=RAW, params=[
        ("source", "cmdb"), ("site", "opt"), ("option", "map.mac=MAC"),
        ("option", "map.mac=Mac2"), ("option", "map.ip=IP")],
        content=b"MAC,Mac2,IP\n02:00:00:0a:0a:01,02:00:00:0a:0a:02,10.10.10.1\n")
    problem = assert_problem(answer, 400)
    assert "map.mac" in json.dumps(problem)
    assert api.get(ASSETS).json()["total"] == 0


@pytest.mark.parametrize("field", ["vendor", "client_id", "psk_identity", "issuer"])
def test_fail_lone_surrogate_in_a_text_field_is_one_refused_line(
        installation: Installation, field: str) -> None:
    """docs/discovery.md: bad values are refused with their line number and why, and
    the rest is read; never a 5xx (G10). `\\ud800` is valid JSON but no UTF-8 text."""
    api = installation.api()
    bad: dict[str, object] = {"seen_at": 1764000000, "mac": "02:00:00:19:00:02",
                              field: "a\ud800b"}
    if field == "issuer":
        bad["serial"] = "1"
    answer = api.post(IMPORTS, params={"source": "jsonl", "site": "sur"}, headers=RAW,
                      content=jsonl({"seen_at": 1764000000, "mac": "02:00:00:19:00:01"})
                      + json.dumps(bad).encode() + b"\n")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert (report["added"], report["refused"]) == (1, 1), report
    assert report["refusals"][0]["line"] == 2


#: one record each whose text holds a lone surrogate escape, as the sources read them
SURROGATE_RECORDS = {
    "suricata": b'{"timestamp":"2026-12-06T10:00:00.000000+0000","event_type":"tls",'
                b'"src_ip":"10.5.9.30","src_port":5000,"dest_ip":"10.5.9.31",'
                b'"dest_port":8883,"proto":"TCP","tls":{"subject":"CN=a\\ud800",'
                b'"issuerdn":"CN=x\\ud800","serial":"01","version":"TLS 1.3"}}\n',
    "zeek": b'{"ts":1796551200.0,"_path":"mqtt_connect","id.orig_h":"10.30.5.1",'
            b'"id.orig_p":1,"id.resp_h":"10.30.5.2","id.resp_p":1883,'
            b'"client_id":"c\\ud800","connect_status":"ok"}\n',
    "emqx": b'{"data":[{"clientid":"e\\ud800","username":"u","ip_address":"10.30.6.1",'
            b'"connected":true}],"meta":{"page":1,"limit":100,"hasnext":false}}',
}


@pytest.mark.parametrize("source", sorted(SURROGATE_RECORDS))
def test_fail_lone_surrogate_in_other_sources_is_no_5xx(installation: Installation,
                                                        source: str) -> None:
    """Hostile input (G10): a 2xx report with the record refused, or a 4xx problem;
    never a 5xx, and nothing stored."""
    api = installation.api()
    answer = api.post(IMPORTS, params={"source": source, "site": "s"}, headers=RAW,
                      content=SURROGATE_RECORDS[source])
    assert answer.status_code < 500, answer.text
    assert api.get(ASSETS).json()["total"] == 0


def test_fail_adoption_with_a_lone_surrogate_device_id_is_a_400(
        installation: Installation) -> None:
    """G10: a device id no device can have is a 400 problem, even in a dry run."""
    api = installation.api()
    answer = api.post(IMPORTS, params={"source": "jsonl", "site": "hq"}, headers=RAW,
                      content=jsonl({"seen_at": 1764000000, "mac": "02:00:00:19:00:09"}))
    assert answer.status_code == 200, answer.text
    (asset,) = api.get(ASSETS).json()["items"]
    answer = api.post("/v1/discovery/adoptions",
                      content=json.dumps({  # json escapes the surrogate as \\ud800
                          "assets": [asset["id"]], "type": "sensor", "dry_run": True,
                          "device_ids": {asset["id"]: "x\ud800"}}).encode(),
                      headers={"Content-Type": "application/json"})
    assert_problem(answer, 400)
