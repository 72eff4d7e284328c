"""``/v1/discovery``: streamed imports, asset pages, hostile input, roles and tenants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from expect import assert_problem
from sqlalchemy import func, select

from conftest import Installation
from iotiam.storage.tables import discovery
from iotiam.testing.fakes.unit_of_work import MemoryDatabase

IMPORTS = "/v1/discovery/imports"


def body(count: int, start: int = 0, **extra: Any) -> bytes:
    return b"".join(json.dumps({
        "seen_at": 1772359200 + n, "mac": f"02:00:00:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:"
        f"{n & 255:02x}", "ip": f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
        "hostname": f"host-{n}", **extra}).encode() + b"\n" for n in range(start, start + count))


def stored(inst: Installation) -> int:
    database = inst.services.database
    if isinstance(database, MemoryDatabase):
        return len(database.uow.discovery.digests)
    with database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(discovery.sighting_digests))
                   .scalar_one())


def chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def test_import_ok_large_streamed_body_twice(installation: Installation) -> None:
    api = installation.api()
    data = body(6000, detail="d" * 150)
    assert len(data) > installation.settings.max_body_bytes  # over the JSON bodies' bound
    answer = api.post(IMPORTS, params={"source": "jsonl", "site": "hq"},
                      content=chunks(data))
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert {k: report[k] for k in ("read", "added", "new_assets", "refused")} == {
        "read": 6000, "added": 6000, "new_assets": 6000, "refused": 0}
    again = api.post(IMPORTS, params={"source": "jsonl", "site": "hq"}, content=data).json()
    assert (again["added"], again["duplicates"]) == (0, 6000)
    assert stored(installation) == 6000
    page = api.get("/v1/discovery/assets", params={"limit": 2}).json()
    assert page["total"] == 6000 and len(page["items"]) == 2 and page["next"]
    first = page["items"][0]
    assert first["site"] == "hq" and first["sources"] == ["jsonl"]
    assert first["last_seen"].endswith("Z")
    assert {i["kind"] for i in first["identifiers"]} == {"mac", "hostname", "ip"}
    shown = api.get(f"/v1/discovery/assets/{first['id']}").json()
    assert shown == first
    nxt = api.get("/v1/discovery/assets", params={"limit": 2, "after": page["next"]}).json()
    assert nxt["items"][0]["id"] > page["next"]


def test_import_fail_hostile_input_stores_nothing(memory_installation: Installation) -> None:
    api = memory_installation.api()
    for params, data, status, detail in (
        ({"source": "nosuch"}, body(2), 400, "known sources: arp, cmdb, dhcpd"),
        ({"source": "jsonl", "option": "novalue"}, body(2), 400, "key=value"),
        ({"source": "jsonl"}, b"\x00\xff garbage\n<xml>\n", 400, "no jsonl record"),
        ({"source": "jsonl"}, b"{" + b"x" * 200_000 + b"\n", 400, "no jsonl record"),
        ({"source": "jsonl"}, b"", 400, "empty"),
        ({"source": "jsonl", "site": "x" * 300}, body(1), 400, None),
        ({}, body(1), 400, None),
    ):
        problem = assert_problem(api.post(IMPORTS, params=params, content=data), status, detail)
        if detail == "no jsonl record":
            assert problem["refusals"][0]["line"] == 1
    assert stored(memory_installation) == 0


def test_import_ok_refusals_listed_per_line(memory_installation: Installation) -> None:
    data = body(1) + b"not json\n" + body(1, start=5, mac="zz")
    report = memory_installation.api().post(IMPORTS, params={"source": "jsonl"},
                                            content=data).json()
    assert (report["added"], report["refused"]) == (1, 2)
    assert [r["line"] for r in report["refusals"]] == [2, 3]


def test_roles_and_tenants(memory_installation: Installation) -> None:
    inst = memory_installation
    root = inst.api()
    for unit in ("acme", "beta"):
        assert root.post("/v1/org-units", json={"id": unit, "name": unit, "kind": "tenant",
                                                "parent": "root"}).status_code == 201
    viewer = inst.api(inst.token("viewer"))
    assert_problem(viewer.post(IMPORTS, params={"source": "jsonl"}, content=body(1)), 403)
    assert stored(inst) == 0
    acme = inst.api(inst.token("operator", "acme"))
    beta = inst.api(inst.token("operator", "beta"))
    assert acme.post(IMPORTS, params={"source": "jsonl"}, content=body(1)).status_code == 200
    assert beta.post(IMPORTS, params={"source": "jsonl"},
                     content=body(1, start=7)).status_code == 200
    (mine,) = acme.get("/v1/discovery/assets").json()["items"]
    assert mine["org_path"] == "/root/acme/"
    (theirs,) = beta.get("/v1/discovery/assets").json()["items"]
    missing = acme.get("/v1/discovery/assets/as-0000000000000000")
    hidden = acme.get(f"/v1/discovery/assets/{theirs['id']}")
    assert_problem(missing, 404) and assert_problem(hidden, 404)
    assert hidden.json()["detail"].replace(theirs["id"], "X") == missing.json()[
        "detail"].replace("as-0000000000000000", "X")
    assert viewer.get("/v1/discovery/assets").json()["total"] == 2
    assert_problem(viewer.get("/v1/discovery/assets", params={"status": "lost"}), 400)
