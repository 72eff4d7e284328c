"""Device registration rules, keyset pagination of the device list, and groups."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from expect import assert_problem, audit_records, row_counts
from fleet import add_device, add_org_unit

from conftest import Installation
from iotiam.inventory.models import Device, DeviceState


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Registration, listing and groups are use cases: they run on the memory stores."""
    return memory_installation

REGISTRATION_REFUSED = "admin:device:registration-refused"


def test_register_ok(installation: Installation) -> None:
    api = installation.api()
    created = api.post("/v1/devices", json={
        "id": "dev-1", "type": "gateway", "site": "hall 3", "location": "52.52,13.40",
        "attributes": {"fw": "1.2.3", "vendor.model": "X-1", "serial_no": "A-9"}})
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("id", "type", "org", "state", "site", "location")} == {
        "id": "dev-1", "type": "gateway", "org": "root", "state": "pending",
        "site": "hall 3", "location": "52.52,13.40"}
    assert api.get("/v1/devices/dev-1").json()["attributes"] == {
        "fw": "1.2.3", "vendor.model": "X-1", "serial_no": "A-9"}
    record = audit_records(api)[-1]
    assert (record["tag"], record["subject"], record["org_path"], record["details"]) == (
        "admin:device:registered", "device:dev-1", "/root/", {"type": "gateway"})


def test_register_fail_duplicate(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    before = row_counts(installation)
    answer = api.post("/v1/devices", json={"id": "dev-1", "type": "gateway"})
    assert_problem(answer, 409, "device id 'dev-1' is not available")
    assert row_counts(installation) == before
    assert api.get("/v1/devices/dev-1").json()["type"] == "sensor"


@pytest.mark.parametrize("device_id", ["admin", "Admin", "ROOT", "iotiam", "system",
                                       "mosquitto", "broker", "iotiam-broker-admin",
                                       "IOTIAM-Broker-Admin", "iotiam-anything"])
def test_register_fail_reserved_id(installation: Installation, device_id: str) -> None:
    before = row_counts(installation)
    answer = installation.api().post("/v1/devices", json={"id": device_id, "type": "sensor"})
    assert_problem(answer, 400, f"device id {device_id!r} is reserved")
    assert row_counts(installation) == before
    record = audit_records(installation.api())[-1]
    assert (record["tag"], record["outcome"]) == (REGISTRATION_REFUSED, "failure")


def test_register_ok_names_that_only_contain_reserved_words(installation: Installation) -> None:
    for device_id in ("admin-1", "root.sensor", "broker2"):
        add_device(installation.api(), device_id)


@pytest.mark.parametrize("device_id", ["-dev", ".dev", "dev 1", "dév", "dev/1", "dev:1",
                                       "dev\u0000", "d" * 129, "admin\n", "dev-1\n"])
def test_register_fail_bad_id(installation: Installation, device_id: str) -> None:
    before = row_counts(installation)
    answer = installation.api().post("/v1/devices", json={"id": device_id, "type": "sensor"})
    assert answer.status_code == 400, answer.text
    assert_problem(answer, 400)
    assert row_counts(installation) == before


def test_register_fail_unknown_type(installation: Installation) -> None:
    answer = installation.api().post("/v1/devices", json={"id": "dev-1", "type": "toaster"})
    assert_problem(answer, 400, "unknown device type 'toaster'")


def test_register_fail_unknown_org(installation: Installation) -> None:
    answer = installation.api().post("/v1/devices", json={"id": "dev-1", "type": "sensor",
                                                          "org": "nosuch"})
    assert_problem(answer, 404, "org unit 'nosuch' not found")


@pytest.mark.parametrize(
    ("attributes", "detail"),
    [
        ({"1fw": "x"}, "attribute name '1fw' is not valid"),
        ({"fw version": "x"}, "attribute name 'fw version' is not valid"),
        ({"fw\n": "x"}, "attribute name 'fw\\n' is not valid"),
        ({"": "x"}, "attribute name '' is not valid"),
        ({"k" * 65: "x"}, "is not valid"),
        ({"fw": "x" * 1025}, "attribute 'fw' is too long or has a NUL byte"),
        ({"fw": "1.0\u0000"}, "attribute 'fw' is too long or has a NUL byte"),
        ({f"a{i}": "x" for i in range(65)}, "at most 64 attributes per device"),
    ],
    ids=["digit-first", "space", "newline", "empty-name", "long-name", "long-value", "nul",
         "too-many"],
)
def test_register_fail_attributes(installation: Installation, attributes: dict[str, str],
                                  detail: str) -> None:
    before = row_counts(installation)
    answer = installation.api().post("/v1/devices", json={"id": "dev-1", "type": "sensor",
                                                          "attributes": attributes})
    assert_problem(answer, 400, detail)
    assert row_counts(installation) == before


def test_register_ok_attribute_limits(installation: Installation) -> None:
    attributes = {f"a{i}": "x" * 1024 for i in range(64)}
    answer = installation.api().post("/v1/devices", json={"id": "dev-1", "type": "sensor",
                                                          "attributes": attributes})
    assert answer.status_code == 201, answer.text


@pytest.mark.parametrize("field", ["site", "location"])
def test_register_fail_nul_in_site(installation: Installation, field: str) -> None:
    answer = installation.api().post("/v1/devices", json={"id": "dev-1", "type": "sensor",
                                                          field: "hall\u00003"})
    assert_problem(answer, 400, f"{field} is too long or has a NUL byte")


# -- keyset pagination -----------------------------------------------------------------


def pages(api: Any, **params: Any) -> list[list[str]]:
    """Follow ``next`` until it is null; the ids of each page."""
    result: list[list[str]] = []
    after = None
    while True:
        query = {**params, **({"after": after} if after else {})}
        body = api.get("/v1/devices", params=query).json()
        result.append([d["id"] for d in body["items"]])
        after = body["next"]
        if after is None:
            return result
        assert after == body["items"][-1]["id"]


def test_list_ok_keyset_pages(installation: Installation) -> None:
    api = installation.api()
    ids = ["dev-07", "dev-03", "dev-01", "dev-05", "dev-02", "dev-06", "dev-04"]
    for device_id in ids:
        add_device(api, device_id)
    assert pages(api, limit=3) == [["dev-01", "dev-02", "dev-03"],
                                   ["dev-04", "dev-05", "dev-06"], ["dev-07"]]
    # a full last page is followed by an empty one, never by a repeat
    assert pages(api, limit=7) == [sorted(ids), []]


def test_list_ok_pages_stable_under_inserts(installation: Installation) -> None:
    """Keyset pages neither skip nor repeat when devices are added while paging."""
    api = installation.api()
    for device_id in ("b", "d", "f"):
        add_device(api, device_id)
    first = api.get("/v1/devices", params={"limit": 2}).json()
    add_device(api, "a")  # before the cursor: not seen in later pages
    add_device(api, "e")  # after it: seen
    second = api.get("/v1/devices", params={"limit": 2, "after": first["next"]}).json()
    assert [d["id"] for d in first["items"]] == ["b", "d"]
    assert [d["id"] for d in second["items"]] == ["e", "f"]


def test_list_ok_filters(installation: Installation) -> None:
    api = installation.api()
    for device_id, device_type in (("g-1", "gateway"), ("s-1", "sensor"), ("s-2", "sensor"),
                                   ("s-3", "sensor")):
        add_device(api, device_id, device_type)
    api.post("/v1/devices/s-2/state", json={"state": "active"})
    api.post("/v1/devices/s-3/state", json={"state": "decommissioned"})
    assert pages(api, type="sensor", limit=1) == [["s-1"], ["s-2"], ["s-3"], []]
    assert pages(api, state="pending") == [["g-1", "s-1"]]
    assert pages(api, type="sensor", state="active") == [["s-2"]]


# -- groups ----------------------------------------------------------------------------


@pytest.fixture
def sites(installation: Installation) -> Installation:
    """acme → berlin, paris (sites); a device at each level."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "berlin", "site", parent="acme")
    add_org_unit(api, "paris", "site", parent="acme")
    for device_id, org in (("hq-1", "acme"), ("ber-1", "berlin"), ("par-1", "paris"),
                           ("root-1", None)):
        add_device(api, device_id, org=org)
    return installation


def members(api: Any, group_id: str) -> list[str]:
    groups = {g["id"]: g for g in api.get("/v1/groups").json()["items"]}
    found: list[str] = groups[group_id]["members"]
    return found


def test_group_ok_members_from_subtree(sites: Installation) -> None:
    api = sites.api()
    assert api.post("/v1/groups", json={"id": "acme-all", "org": "acme"}).status_code == 201
    for device_id in ("hq-1", "ber-1", "par-1", "ber-1"):
        answer = api.post("/v1/groups/acme-all/members", json={"device": device_id})
        assert answer.status_code == 204, answer.text
    assert members(api, "acme-all") == ["ber-1", "hq-1", "par-1"]
    added = [r for r in audit_records(api) if r["tag"] == "admin:group:member-added"]
    assert [r["details"]["device"] for r in added] == ["hq-1", "ber-1", "par-1", "ber-1"]
    assert {r["org_path"] for r in added} == {"/root/acme/"}


@pytest.mark.parametrize("device_id", ["hq-1", "par-1", "root-1"])
def test_group_fail_device_outside_group_org(sites: Installation, device_id: str) -> None:
    api = sites.api()
    api.post("/v1/groups", json={"id": "berlin-only", "org": "berlin"})
    before = row_counts(sites)
    answer = api.post("/v1/groups/berlin-only/members", json={"device": device_id})
    assert_problem(answer, 400, f"device {device_id!r} is outside the group's org unit")
    assert row_counts(sites) == before
    assert members(api, "berlin-only") == []
    record = audit_records(api)[-1]
    assert (record["tag"], record["outcome"]) == ("admin:group:member-added", "failure")


def test_group_fail_unknown_device_or_group(sites: Installation) -> None:
    api = sites.api()
    api.post("/v1/groups", json={"id": "g", "org": "acme"})
    assert_problem(api.post("/v1/groups/g/members", json={"device": "ghost"}), 404,
                   "device 'ghost' not found")
    assert_problem(api.post("/v1/groups/nosuch/members", json={"device": "hq-1"}), 404,
                   "group 'nosuch' not found")


def test_group_fail_duplicate_id(sites: Installation) -> None:
    api = sites.api()
    api.post("/v1/groups", json={"id": "g", "org": "acme"})
    assert_problem(api.post("/v1/groups", json={"id": "g", "org": "berlin"}), 409,
                   "group id 'g' is not available")


def test_group_fail_viewer(sites: Installation) -> None:
    api = sites.api()
    api.post("/v1/groups", json={"id": "g", "org": "acme"})
    viewer = sites.api(sites.token("viewer"))
    assert_problem(viewer.post("/v1/groups", json={"id": "h"}), 403, "creating groups")
    assert_problem(viewer.post("/v1/groups/g/members", json={"device": "hq-1"}), 403,
                   "changing groups")
    assert members(api, "g") == []


def test_list_ok_total_counts_every_match_not_the_page(installation: Installation) -> None:
    api = installation.api()
    for device_id, device_type in (("g-1", "gateway"), ("s-1", "sensor"), ("s-2", "sensor"),
                                   ("s-3", "sensor")):
        add_device(api, device_id, device_type)
    first = api.get("/v1/devices", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["total"] == 4
    later = api.get("/v1/devices", params={"limit": 2, "after": first["next"]}).json()
    assert later["total"] == 4  # the whole selection, whichever page
    assert api.get("/v1/devices", params={"type": "sensor", "limit": 1}).json()["total"] == 3


def test_ok_touched_moves_only_updated_at() -> None:
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    device = Device("d1", "sensor", "root", "/root/", DeviceState.ACTIVE, "s", None,
                    {"fw": "1"}, at, at, at)
    later = at + timedelta(seconds=5)
    moved = device.touched(later)
    assert moved == dataclasses.replace(device, updated_at=later)
    assert device.updated_at == at and moved.updated_at == later
