"""A bulk import is one batch per request (``inventory/bulk.py``): rows judged in order as
if registered one after another, one statement writing the good ones, one audit record
naming their count and digest. On the stores that hold the rows (SQLite, PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from expect import audit_records, row_counts
from fleet import add_device, add_org_unit

from conftest import Installation
from iotiam.inventory.bulk import AUDITED_IDS
from iotiam.inventory.models import Device, DeviceState, ImportRowResult
from iotiam.kernel import SYSTEM

TAKEN = "is not available: ids are unique across the whole installation; choose another"


def import_rows(installation: Installation, rows: list[tuple[int, dict[str, Any]]]
                ) -> list[ImportRowResult]:
    return installation.services.inventory.import_devices(SYSTEM, rows)


def outcome(results: list[ImportRowResult]) -> list[tuple[int, str | None, bool, bool]]:
    return [(r.row, r.device_id, r.ok, r.id_taken) for r in results]


def test_import_ok_duplicate_ids_within_batch(installation: Installation) -> None:
    results = import_rows(installation, [
        (1, {"id": "dup-a", "type": "toaster"}),   # fails: the next row may take the id
        (2, {"id": "dup-a", "type": "sensor"}),
        (3, {"id": "dup-a", "type": "gateway"}),
        (4, {"id": "dup-b", "type": "gateway", "site": "roof"}),
        (5, {"id": "dup-b", "type": "sensor"}),
    ])
    assert outcome(results) == [(1, "dup-a", False, False), (2, "dup-a", True, False),
                                (3, "dup-a", False, True), (4, "dup-b", True, False),
                                (5, "dup-b", False, True)]
    assert results[0].error == "unknown device type 'toaster'"
    assert results[2].error == f"device id 'dup-a' {TAKEN}"
    api = installation.api()
    assert api.get("/v1/devices/dup-a").json()["type"] == "sensor"
    stored_b = api.get("/v1/devices/dup-b").json()
    assert (stored_b["type"], stored_b["site"]) == ("gateway", "roof")


def test_import_ok_ids_taken_by_stored_devices(installation: Installation) -> None:
    api = installation.api()
    add_device(api, "kept", "gateway")
    results = import_rows(installation, [(1, {"id": "kept", "type": "sensor", "site": "x"}),
                                         (2, {"id": "fresh", "type": "sensor"})])
    assert outcome(results) == [(1, "kept", False, True), (2, "fresh", True, False)]
    kept = api.get("/v1/devices/kept").json()
    assert (kept["type"], kept["site"]) == ("gateway", None)


def test_import_ok_org_outside_subtree_and_unusable_names(installation: Installation) -> None:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_org_unit(api, "acme-plant", "site", parent="acme")
    add_org_unit(api, "globex", "tenant")
    operator = installation.api(installation.token("operator", "acme"))
    answer = operator.post("/v1/devices/import", json={"rows": [
        {"row": 1, "data": {"id": "o-1", "type": "sensor"}},
        {"row": 2, "data": {"id": "o-2", "type": "sensor", "org": "acme-plant"}},
        {"row": 3, "data": {"id": "o-3", "type": "sensor", "org": "globex"}},
        {"row": 4, "data": {"id": "o-4", "type": "sensor", "org": "no-such-unit"}},
        {"row": 5, "data": {"id": "o-5", "type": "sen\x00sor"}},
        {"row": 6, "data": {"id": "o-6", "type": "sensor", "org": "ac\x00me"}},
        {"row": 7, "data": {"id": "o-7", "type": "gateway", "org": "acme"}},
    ]})
    assert answer.status_code == 200, answer.text
    assert [(r["row"], r["ok"], r["error"]) for r in answer.json()["results"]] == [
        (1, True, None),
        (2, True, None),
        # another tenant's unit is as unknown as one that does not exist (G9)
        (3, False, "org unit 'globex' not found"),
        (4, False, "org unit 'no-such-unit' not found"),
        (5, False, "unknown device type 'sen\\x00sor'"),
        (6, False, "org unit 'ac\\x00me' not found"),
        (7, True, None),
    ]
    orgs = {d["id"]: d["org"] for d in api.get("/v1/devices").json()["items"]}
    assert orgs == {"o-1": "acme", "o-2": "acme-plant", "o-7": "acme"}


def rows_sha256(devices: list[dict[str, Any]]) -> str:
    """The digest ``docs/device-import.md`` defines, from devices as the API shows them."""
    content = [[d["id"], d["type"], d["org"], d["site"], d["location"], d["attributes"]]
               for d in devices]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def test_import_ok_audit_record_names_count_and_digest(installation: Installation) -> None:
    api = installation.api()
    good = AUDITED_IDS + 20
    rows = [(n, {"id": f"aud-{n:04d}", "type": "sensor", "site": f"s{n % 3}",
                 "attributes": {"fw": f"1.{n}", "label": "Kühlraum Ö"} if n % 2 else {}})
            for n in range(1, good + 1)]
    rows.insert(5, (999, {"id": "aud-bad", "type": "toaster"}))
    results = import_rows(installation, rows)
    assert sum(r.ok for r in results) == good
    records = [r for r in audit_records(api) if r["tag"] == "admin:device:imported"]
    assert len(records) == 1
    record = records[0]
    assert record["subject"] == f"import:{good}-devices"
    details = record["details"]
    ids = [f"aud-{n:04d}" for n in range(1, good + 1)]
    assert (details["imported"], details["failed"]) == (good, 1)
    assert details["devices"] == ids[:AUDITED_IDS]
    assert details["failed_rows"] == [{"row": 999, "error": "unknown device type 'toaster'"}]
    stored = [api.get(f"/v1/devices/{i}").json() for i in ids]
    assert details["rows_sha256"] == rows_sha256(stored)
    # a record per import, none per device
    assert not [r for r in audit_records(api) if r["subject"] == "device:aud-0001"]


def test_import_ok_concurrent_imports_of_the_same_ids(installation: Installation) -> None:
    """Two imports naming the same ids at once: each id lands once, the other import
    reports it taken; nobody gets an error (on PostgreSQL the second INSERT waits for the
    first and skips what it wrote; on SQLite the writers queue)."""
    ids = [f"race-{n:04d}" for n in range(2000)]
    results: dict[str, list[ImportRowResult]] = {}
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run(site: str) -> None:
        rows = [(n, {"id": i, "type": "sensor", "site": site}) for n, i in enumerate(ids, 1)]
        start.wait()
        try:
            results[site] = import_rows(installation, rows)
        except BaseException as e:  # reported below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(site,)) for site in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    for n, device_id in enumerate(ids):
        left, right = results["left"][n], results["right"][n]
        assert left.ok != right.ok, (left, right)
        loser = right if left.ok else left
        assert loser.id_taken and loser.error == f"device id {device_id!r} {TAKEN}"
    assert row_counts(installation)["devices"] == len(ids)
    imported = [r["details"]["imported"] for r in audit_records(installation.api())
                if r["tag"] == "admin:device:imported"]
    assert sorted(imported) != [] and sum(imported) == len(ids)


def test_add_new_ok_skips_and_names_taken_ids(installation: Installation) -> None:
    add_device(installation.api(), "held")
    now = installation.clock.now()
    devices = [Device(id=i, type_name="gateway", org_unit_id="root", org_path="/root/",
                      state=DeviceState.PENDING, site="new-site", location=None,
                      attributes={"fw": i}, created_at=now, updated_at=now)
               for i in ("held", "new-1", "new-2")]
    with installation.services.database() as uow:
        taken = uow.devices.add_new(devices)
    assert taken == {"held"}
    with installation.services.database.reading() as uow:
        stored = uow.devices.get_many(["held", "new-1", "new-2"])
    assert stored["new-1"] == devices[1] and stored["new-2"] == devices[2]
    # the stored device is left as it was
    assert (stored["held"].type_name, stored["held"].site) == ("sensor", None)


def test_add_new_ok_waits_for_a_concurrent_insert_and_skips_it(
        installation: Installation) -> None:
    """Another transaction inserted the id and has not committed yet: the write waits
    for it (a row lock on PostgreSQL, the writer on SQLite), then skips the id."""
    now = installation.clock.now()

    def new(device_id: str, site: str) -> Device:
        return Device(id=device_id, type_name="sensor", org_unit_id="root", org_path="/root/",
                      state=DeviceState.PENDING, site=site, location=None, attributes={},
                      created_at=now, updated_at=now)

    database = installation.services.database
    taken: list[set[str]] = []
    with database() as first:
        assert first.devices.add_new([new("contested", "first")]) == set()

        def second_writer() -> None:
            with database() as second:
                taken.append(second.devices.add_new([new("contested", "second"),
                                                     new("other", "second")]))

        writer = threading.Thread(target=second_writer)
        writer.start()
    writer.join(30)
    assert taken == [{"contested"}]
    with database.reading() as uow:
        stored = uow.devices.get_many(["contested", "other"])
    assert (stored["contested"].site, stored["other"].site) == ("first", "second")
