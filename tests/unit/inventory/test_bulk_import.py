"""Bulk import: good rows land, bad rows are reported by row number, nothing half-made;
and the CSV / JSON / JSON-lines readers behind ``iotiam device import``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from expect import assert_problem, audit_records, row_counts
from fleet import add_device, add_org_unit

from conftest import Installation
from iotiam.errors import InvalidInput
from iotiam.inventory.bulk_import import parse_csv, parse_json, parse_jsonl, read_rows
from iotiam.inventory.models import DeviceDraft


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Bulk import is a use case: it runs on the memory stores."""
    return memory_installation

#: the tail of every "id not available" answer (docs/tenancy.md)
TAKEN = ": ids are unique across the whole installation; choose another"

#: (row number, data, expected error or None when the row must land)
MIXED: list[tuple[int, dict[str, Any], str | None]] = [
    (2, {"id": "imp-1", "type": "sensor"}, None),
    (3, {"id": "imp-1", "type": "gateway"}, "device id 'imp-1' is not available" + TAKEN),
    (4, {"id": "imp-3", "type": "toaster"}, "unknown device type 'toaster'"),
    (5, {"id": "imp-4", "type": "sensor", "org": "nosuch"}, "org unit 'nosuch' not found"),
    (6, {"id": "bad id!", "type": "sensor"}, "device id 'bad id!' is not valid"),
    (7, {"__invalid__": 42}, "row is not a JSON object"),
    (8, {"id": "imp-7", "type": "sensor", "__extra_columns__": ["x", "y"]},
     "row has more columns than the header"),
    (9, {"id": "imp-8", "type": "gateway", "org": "acme", "site": " hall 3 ",
         "attributes": {"fw": "2.1"}, "attr.hw": "rev-b"}, None),
    (10, {"id": "admin", "type": "sensor"}, "device id 'admin' is reserved"),
    (11, {"id": "imp-10"}, "missing 'type'"),
    (12, {"type": "sensor"}, "missing 'id'"),
    (13, {"id": "imp-12", "type": "sensor", "attributes": {"1bad": "x"}},
     "attribute name '1bad' is not valid"),
    (14, {"id": "imp-13", "type": "sensor", "attributes": "fw=1"},
     "'attributes' must be an object"),
    (15, {"id": "existing", "type": "sensor"}, "device id 'existing' is not available" + TAKEN),
    (16, {"id": "imp-15", "type": "sensor", "site": "x" * 300},
     "site is too long or has a NUL byte"),
]


def import_rows(api: Any, rows: list[tuple[int, dict[str, Any]]]) -> Any:
    return api.post("/v1/devices/import",
                    json={"rows": [{"row": n, "data": d} for n, d in rows]})


@pytest.fixture
def fleet(installation: Installation) -> Installation:
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    add_device(api, "existing")
    return installation


def test_import_ok_mixed_rows(fleet: Installation) -> None:
    api = fleet.api()
    devices_before = row_counts(fleet)["devices"]
    answer = import_rows(api, [(n, d) for n, d, _ in MIXED])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    good = [n for n, _, error in MIXED if error is None]
    assert (body["imported"], body["failed"]) == (len(good), len(MIXED) - len(good))
    for (number, _, error), result in zip(MIXED, body["results"], strict=True):
        assert result["row"] == number
        assert result["ok"] is (error is None), result
        if error is None:
            assert result["error"] is None
        else:
            assert error in result["error"], (error, result)
    assert [r["device"] for r in body["results"][:6]] == [
        "imp-1", "imp-1", "imp-3", "imp-4", "bad id!", None]
    # only the good rows landed, whole
    assert row_counts(fleet)["devices"] == devices_before + len(good)
    first = api.get("/v1/devices/imp-1").json()
    assert (first["type"], first["org"], first["attributes"]) == ("sensor", "root", {})
    eighth = api.get("/v1/devices/imp-8").json()
    assert (eighth["org"], eighth["site"], eighth["attributes"]) == (
        "acme", "hall 3", {"fw": "2.1", "hw": "rev-b"})
    for device_id in ("imp-3", "imp-4", "imp-7", "imp-10", "imp-12", "imp-13", "imp-15"):
        assert api.get(f"/v1/devices/{device_id}").status_code == 404


def test_import_ok_audited_once(fleet: Installation) -> None:
    api = fleet.api()
    import_rows(api, [(n, d) for n, d, _ in MIXED])
    record = audit_records(api)[-1]
    assert (record["tag"], record["subject"], record["outcome"]) == (
        "admin:device:imported", "import:2-devices", "success")
    assert record["details"]["devices"] == ["imp-1", "imp-8"]
    assert record["details"]["failed"] == len(MIXED) - 2
    assert [f["row"] for f in record["details"]["failed_rows"]] == [
        n for n, _, error in MIXED if error is not None]
    # one record for the whole import, none per device
    assert not [r for r in audit_records(api) if r["subject"] == "device:imp-1"]


def test_import_ok_all_bad_rows_store_nothing(fleet: Installation) -> None:
    before = row_counts(fleet)
    # row 3 is bad only because row 2 came first
    bad = [(n, d) for n, d, error in MIXED if error is not None and n != 3]
    body = import_rows(fleet.api(), bad).json()
    assert (body["imported"], body["failed"]) == (0, len(bad))
    assert row_counts(fleet) == before


def test_import_ok_tenant_scope(fleet: Installation) -> None:
    add_org_unit(fleet.api(), "globex", "tenant")
    api = fleet.api(fleet.token("operator", "acme"))
    body = import_rows(api, [(1, {"id": "a-1", "type": "sensor"}),
                             (2, {"id": "g-1", "type": "sensor", "org": "globex"}),
                             (3, {"id": "r-1", "type": "sensor", "org": "root"})]).json()
    assert [(r["row"], r["ok"], r["error"]) for r in body["results"]] == [
        (1, True, None),
        (2, False, "org unit 'globex' not found"),
        (3, False, "org unit 'root' not found"),
    ]
    assert fleet.api().get("/v1/devices/a-1").json()["org"] == "acme"


def test_import_fail_viewer(fleet: Installation) -> None:
    viewer = fleet.api(fleet.token("viewer"))
    before = row_counts(fleet)
    answer = import_rows(viewer, [(1, {"id": "v", "type": "sensor"})])
    assert_problem(answer, 403, "importing devices needs the operator role")
    assert row_counts(fleet) == before


def test_import_fail_too_many_rows(fleet: Installation) -> None:
    rows = [(i, {"id": f"d{i}", "type": "sensor"}) for i in range(5001)]
    before = row_counts(fleet)
    assert_problem(import_rows(fleet.api(), rows), 400, "rows")
    assert row_counts(fleet) == before


def test_import_ok_empty(fleet: Installation) -> None:
    body = import_rows(fleet.api(), []).json()
    assert body == {"imported": 0, "failed": 0, "results": []}


# -- file readers ----------------------------------------------------------------------


def test_parse_csv_ok_columns_and_line_numbers() -> None:
    text = (
        "id,type,org,site,location,attr.fw,colour\n"
        "d1,sensor,acme,hall 3,,1.2,red\n"
        "d2,gateway\n"
        "\n"
        "d3,sensor,,,roof,,\n"
    )
    rows = parse_csv(text)
    assert [n for n, _ in rows] == [2, 3, 5]
    assert rows[0][1] == {"id": "d1", "type": "sensor", "org": "acme", "site": "hall 3",
                          "location": "", "attr.fw": "1.2", "colour": "red"}
    assert DeviceDraft.from_mapping(rows[0][1]) == DeviceDraft(
        id="d1", type_name="sensor", org_unit_id="acme", site="hall 3", location=None,
        attributes={"fw": "1.2", "colour": "red"})
    # a short row: missing cells are empty, not an error of the reader
    assert rows[1][1] == {"id": "d2", "type": "gateway", "org": "", "site": "",
                          "location": "", "attr.fw": "", "colour": ""}
    assert DeviceDraft.from_mapping(rows[2][1]).location == "roof"


def test_parse_csv_ok_quoted_cells() -> None:
    rows = parse_csv('id,type,site\n"d,1",sensor,"hall ""A""\nnorth"\n')
    assert rows[0][1] == {"id": "d,1", "type": "sensor", "site": 'hall "A"\nnorth'}


def test_parse_csv_ok_extra_columns_marked() -> None:
    rows = parse_csv("id,type\nd1,sensor,surplus,more\n")
    assert rows == [(2, {"id": "d1", "type": "sensor",
                         "__extra_columns__": ["surplus", "more"]})]
    with pytest.raises(InvalidInput, match="row has more columns than the header"):
        DeviceDraft.from_mapping(rows[0][1])


@pytest.mark.parametrize("text", ["", "type,org\nsensor,acme\n"], ids=["empty", "no-id"])
def test_parse_csv_fail_header(text: str) -> None:
    with pytest.raises(InvalidInput, match="CSV needs a header row with at least 'id'"):
        parse_csv(text)


def test_parse_json_ok_list_and_object() -> None:
    devices = [{"id": "d1", "type": "sensor"}, "d2", {"id": "d3", "type": "gateway"}]
    expected = [(1, devices[0]), (2, {"__invalid__": "d2"}), (3, devices[2])]
    assert parse_json(json.dumps(devices)) == expected
    assert parse_json(json.dumps({"devices": devices})) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"id": "d1",\n  "type": }]',
         r"the file is not valid JSON: Expecting value \(line 2 column 11\)"),
        ('{"things": []}', r'JSON import needs a list of devices or \{"devices": \[...\]\}'),
        ('"d1"', "JSON import needs a list"),
        ("", r"the file is not valid JSON: Expecting value \(line 1 column 1\)"),
    ],
    ids=["broken", "no-devices-key", "scalar", "empty"],
)
def test_parse_json_fail(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_json(text)


def test_parse_jsonl_ok_broken_lines_become_failing_rows() -> None:
    text = '{"id": "d1", "type": "sensor"}\n\nnot json\n[1, 2]\n{"id": "d5", "type": "x"}\n'
    rows = parse_jsonl(text)
    assert rows == [
        (1, {"id": "d1", "type": "sensor"}),
        (3, {"__unreadable__": "the line is not valid JSON: Expecting value (line 1 column 1)"}),
        (4, {"__invalid__": [1, 2]}),
        (5, {"id": "d5", "type": "x"}),
    ]
    with pytest.raises(InvalidInput, match="the line is not valid JSON"):
        DeviceDraft.from_mapping(rows[1][1])
    with pytest.raises(InvalidInput, match="row is not a JSON object"):
        DeviceDraft.from_mapping(rows[2][1])


def test_read_rows_ok_by_suffix(tmp_path: Path) -> None:
    csv_file = tmp_path / "fleet.csv"
    csv_file.write_text("\ufeffid,type\nd1,sensor\n", encoding="utf-8")  # Excel's BOM
    json_file = tmp_path / "fleet.JSON"
    json_file.write_text('[{"id": "d1", "type": "sensor"}]')
    lines_file = tmp_path / "fleet.ndjson"
    lines_file.write_text('{"id": "d1", "type": "sensor"}\n')
    expected = {"id": "d1", "type": "sensor"}
    assert read_rows(csv_file) == [(2, expected)]
    assert read_rows(json_file) == [(1, expected)]
    assert read_rows(lines_file) == [(1, expected)]
    assert read_rows(csv_file.rename(tmp_path / "fleet.txt"), "csv") == [(2, expected)]


def test_read_rows_fail(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"cannot read .*missing\.csv"):
        read_rows(tmp_path / "missing.csv")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("id,type\nd\xe9,sensor\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match="is not UTF-8 text"):
        read_rows(latin)
    unknown = tmp_path / "fleet.xlsx"
    unknown.write_text("id,type\n")
    with pytest.raises(InvalidInput, match=r"cannot tell the format .* use --format"):
        read_rows(unknown)


def test_import_ok_from_csv_file(fleet: Installation, tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text("id,type,org,fw\nc-1,sensor,acme,1.0\nc-2,toaster,acme,\nc-3,gateway,,2.0,x\n")
    rows = read_rows(path)
    body = import_rows(fleet.api(), rows).json()
    assert [(r["row"], r["device"], r["ok"]) for r in body["results"]] == [
        (2, "c-1", True), (3, "c-2", False), (4, "c-3", False)]
    assert fleet.api().get("/v1/devices/c-1").json()["attributes"] == {"fw": "1.0"}


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 1000 + "]" * 1000, "the file is nested more than 32 deep"),
    ('[{"id": "d1", "type": "sensor", "attributes": ' + '{"a": ' * 500 + "1" + "}" * 500
     + "}]", "the file is nested more than 32 deep"),
    ('[{"id": "d1", "id": "d2", "type": "sensor"}]', "the file has the key 'id' twice"),
], ids=["fail/deep", "fail/deep-attributes", "fail/duplicate-id"])
def test_parse_json_fail_hostile(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_json(text)


def test_parse_jsonl_fail_hostile_lines_alone() -> None:
    text = "\n".join(['{"id": "d1", "type": "sensor"}', "[" * 1000 + "]" * 1000,
                      '{"state": "active", "state": "decommissioned", "id": "d3"}',
                      '{"id": "d4", "type": "sensor"}'])
    rows = parse_jsonl(text)
    assert [number for number, _ in rows] == [1, 2, 3, 4]
    assert rows[0][1] == {"id": "d1", "type": "sensor"}
    assert rows[3][1] == {"id": "d4", "type": "sensor"}
    with pytest.raises(InvalidInput, match="nested more than 32 deep"):
        DeviceDraft.from_mapping(rows[1][1])
    with pytest.raises(InvalidInput, match="the key 'state' twice"):
        DeviceDraft.from_mapping(rows[2][1])
