"""``POST /v1/discovery/adoptions``: discovered assets become pending devices with claims."""

from __future__ import annotations

import json
from typing import Any

from expect import assert_problem
from fastapi.testclient import TestClient

from conftest import Installation

IMPORTS = "/v1/discovery/imports"
ADOPT = "/v1/discovery/adoptions"


def sighting(n: int, **extra: object) -> bytes:
    return json.dumps({"seen_at": 1772359200 + n, "mac": f"02:00:00:00:01:{n:02x}",
                       "ip": f"10.9.0.{n}", "hostname": f"cam-{n}.plant.example",
                       **extra}).encode() + b"\n"


def assets(inst: Installation, count: int) -> list[dict[str, object]]:
    api = inst.api()
    data = b"".join(sighting(n) for n in range(1, count + 1))
    assert api.post(IMPORTS, params={"source": "jsonl", "site": "plant-a"},
                    content=data).status_code == 200
    items: list[dict[str, object]] = api.get("/v1/discovery/assets").json()["items"]
    assert len(items) == count
    return items


def audit_records(api: TestClient) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after = None
    while True:
        page = api.get("/v1/audit/records", params={"limit": 1000, **(
            {"after": after} if after is not None else {})}).json()
        records += page["items"]
        after = page["next"]
        if after is None:
            return records


def audit_tags(api: TestClient) -> list[str]:
    return [r["tag"] for r in audit_records(api)]


def test_adopt_ok_dry_run_then_devices_with_claims(installation: Installation) -> None:
    api = installation.api()
    found = assets(installation, 3)
    ids = [str(a["id"]) for a in found]
    audit_before = audit_tags(api)

    proposals = api.post(ADOPT, json={"assets": ids, "type": "sensor", "dry_run": True})
    assert proposals.status_code == 200, proposals.text
    proposed = {p["asset"]: p for p in proposals.json()["items"]}
    first = next(a for a in found if a["hostname"] == "cam-1.plant.example")
    assert proposed[first["id"]]["device"] == "cam-1"
    assert proposed[first["id"]]["site"] == "plant-a"
    assert proposed[first["id"]]["attributes"]["mac"] == "02:00:00:00:01:01"
    # a dry run stores nothing
    assert api.get("/v1/devices/cam-1").status_code == 404
    assert api.get("/v1/discovery/assets", params={"status": "unmanaged"}).json()["total"] == 3

    done = api.post(ADOPT, json={"assets": ids, "type": "sensor", "claim_ttl_seconds": 3600})
    assert done.status_code == 200, done.text
    answer = done.json()
    assert answer["adopted"] == 3
    assert all(i["ok"] and i["claim"]["token"] for i in answer["items"])
    device = api.get("/v1/devices/cam-1").json()
    assert (device["state"], device["site"]) == ("pending", "plant-a")
    assert device["attributes"]["discovered-as"] == first["id"]
    shown = api.get(f"/v1/discovery/assets/{first['id']}").json()
    assert (shown["status"], shown["device_id"]) == ("adopted", "cam-1")
    assert api.get("/v1/discovery/assets", params={"status": "unmanaged"}).json()["total"] == 0
    tags = audit_tags(api)[len(audit_before):]
    assert "admin:discovery-asset:adopted" in tags and "admin:device:imported" in tags

    # the next sighting of it, by MAC alone, is the device's now
    again = api.post(IMPORTS, params={"source": "jsonl", "site": "plant-a"},
                     content=json.dumps({"seen_at": 1772400000,
                                         "mac": "02:00:00:00:01:01"}).encode()).json()
    assert (again["matched"], again["new_assets"]) == (1, 0)


def test_adopt_fail_refusals_store_nothing(memory_installation: Installation) -> None:
    inst = memory_installation
    api = inst.api()
    (asset,) = assets(inst, 1)
    for body, status in (
        ({"assets": [], "type": "sensor"}, 400),
        ({"assets": [asset["id"], asset["id"]], "type": "sensor"}, 400),
        ({"assets": ["as-0000000000000000"], "type": "sensor"}, 404),
        ({"assets": [asset["id"]]}, 400),
        ({"assets": [asset["id"]], "type": "sensor", "claim_ttl_seconds": 5}, 400),
        ({"assets": [asset["id"]], "type": "sensor", "dry_run": "yes"}, 400),
        ({"assets": [asset["id"]], "type": "sensor", "extra": 1}, 400),
    ):
        assert_problem(api.post(ADOPT, json=body), status)
    viewer = inst.api(inst.token("viewer"))
    assert_problem(viewer.post(ADOPT, json={"assets": [asset["id"]], "type": "sensor"}), 403)
    assert api.get("/v1/devices", params={"type": "sensor"}).json()["total"] == 0
    assert api.get("/v1/discovery/assets", params={"status": "unmanaged"}).json()["total"] == 1
    # every refused adoption is on the audit chain too, with why
    refused = [r for r in audit_records(api) if r["tag"] == "admin:discovery-asset:adopted"]
    assert {r["outcome"] for r in refused} == {"denied", "failure"}
    assert any("already" in (r["reason"] or "") or "twice" in (r["reason"] or "")
               for r in refused)


def test_adopt_fail_per_asset_errors_do_not_fail_the_others(
        memory_installation: Installation) -> None:
    inst = memory_installation
    api = inst.api()
    found = assets(inst, 3)
    by_host = {a["hostname"]: a for a in found}
    taken, named, guessed = (by_host[f"cam-{n}.plant.example"] for n in (1, 2, 3))
    assert api.post("/v1/devices", json={"id": "cam-1", "type": "sensor"}).status_code == 201
    assert api.post("/v1/devices", json={"id": "cam-3", "type": "sensor"}).status_code == 201
    answer = api.post(ADOPT, json={
        "assets": [a["id"] for a in found], "type": "sensor",
        # an id the admin names is kept or refused, never changed
        "device_ids": {taken["id"]: "cam-1", named["id"]: "hmi-2"}}).json()
    outcome = {i["asset"]: i for i in answer["items"]}
    assert not outcome[taken["id"]]["ok"] and "cam-1" in outcome[taken["id"]]["error"]
    assert (outcome[named["id"]]["ok"], outcome[named["id"]]["device"]) == (True, "hmi-2")
    # a guessed id that is taken is made unique with the asset's own id
    suffix = guessed["id"].rsplit("-", 1)[-1][:8]
    assert (outcome[guessed["id"]]["ok"], outcome[guessed["id"]]["device"]) == (
        True, f"cam-3-{suffix}")
    assert answer["adopted"] == 2
    assert api.get(f"/v1/discovery/assets/{taken['id']}").json()["status"] == "unmanaged"
    # adopted once: a second time is a conflict
    assert_problem(api.post(ADOPT, json={"assets": [named["id"]], "type": "sensor"}), 409)
    assert_problem(api.post(ADOPT, json={"assets": [taken["id"]], "type": "sensor",
                                         "device_ids": {"as-0": "x"}}), 400)


def test_adopt_fail_other_tenants_asset_not_found(memory_installation: Installation) -> None:
    inst = memory_installation
    root = inst.api()
    for unit in ("acme", "beta"):
        assert root.post("/v1/org-units", json={"id": unit, "name": unit, "kind": "tenant",
                                                "parent": "root"}).status_code == 201
    beta = inst.api(inst.token("operator", "beta"))
    assert beta.post(IMPORTS, params={"source": "jsonl"}, content=sighting(4)).status_code == 200
    (theirs,) = beta.get("/v1/discovery/assets").json()["items"]
    acme = inst.api(inst.token("operator", "acme"))
    assert_problem(acme.post(ADOPT, json={"assets": [theirs["id"]], "type": "sensor",
                                          "dry_run": True}), 404)
    assert_problem(acme.post(ADOPT, json={"assets": [theirs["id"]], "type": "sensor"}), 404)
    assert beta.get(f"/v1/discovery/assets/{theirs['id']}").json()["status"] == "unmanaged"
