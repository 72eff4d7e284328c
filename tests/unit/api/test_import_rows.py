"""A bulk import row obeys the rule its one-at-a-time route obeys: ``POST /v1/devices``
refuses a number, list, object or null where a string goes, and so does each row of
``/v1/devices/import`` (and of a manufacturer's manifest), failing alone with the same
reason while the good rows land."""

from __future__ import annotations

from typing import Any

import pytest
from enrollment.zerotouch import manufacturer_ca, register_manufacturer
from expect import assert_problem

from conftest import Installation

NOT_TEXT: dict[str, Any] = {
    "list": [[[1]]], "object": {"q": None}, "null": None, "2^63": 2**63, "int": 7,
    "float": 1.5, "bool": True,
}


def import_rows(installation: Installation, *rows: dict[str, Any]) -> dict[str, Any]:
    """Import ``rows`` (numbered from 1); the per-row report."""
    answer = installation.api().post("/v1/devices/import", json={
        "rows": [{"row": n, "data": data} for n, data in enumerate(rows, start=1)]})
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def stored(installation: Installation, device_id: str) -> dict[str, Any] | None:
    """The device as the API shows it, or None when it was not stored."""
    answer = installation.api().get(f"/v1/devices/{device_id}")
    if answer.status_code == 404:
        return None
    assert answer.status_code == 200, answer.text
    device: dict[str, Any] = answer.json()
    return device


@pytest.mark.parametrize("value", list(NOT_TEXT.values()), ids=list(NOT_TEXT))
def test_import_fail_attribute_not_text_like_post(installation: Installation,
                                                   value: Any) -> None:
    refused = installation.api().post("/v1/devices", json={
        "id": "dev-posted", "type": "sensor", "attributes": {"x": value}})
    assert_problem(refused, 400, "attributes.x: Input should be a valid string")
    report = import_rows(installation,
                         {"id": "dev-good", "type": "sensor", "attributes": {"x": "1"}},
                         {"id": "dev-bad", "type": "sensor", "attributes": {"x": value}})
    assert report["imported"] == 1 and report["failed"] == 1, report
    bad = report["results"][1]
    assert bad["ok"] is False and bad["device"] == "dev-bad"
    assert bad["error"] == "attributes.x: Input should be a valid string"
    assert stored(installation, "dev-bad") is None
    good = stored(installation, "dev-good")
    assert good is not None and good["attributes"] == {"x": "1"}


@pytest.mark.parametrize("field", ["id", "type", "org", "site", "location", "serial"])
def test_import_fail_field_not_text(installation: Installation, field: str) -> None:
    row: dict[str, Any] = {"id": "dev-1", "type": "sensor", field: 2**63}
    report = import_rows(installation, row)
    assert report["imported"] == 0, report
    assert report["results"][0]["error"] == f"{field}: Input should be a valid string"
    assert installation.api().get("/v1/devices").json()["total"] == 0


def test_import_ok_text_and_empty_values(installation: Installation) -> None:
    report = import_rows(installation, {"id": "dev-1", "type": "sensor", "site": None,
                                        "serial": "", "batch": "b7",
                                        "attributes": {"y": "{'q': None}"}})
    assert report["imported"] == 1, report
    device = stored(installation, "dev-1")
    assert device is not None
    assert device["attributes"] == {"y": "{'q': None}", "batch": "b7"}
    assert device["site"] is None


@pytest.mark.parametrize("column", ["serial", "serial_number", "public_key_sha256"])
@pytest.mark.parametrize("value", [2**63, [[[1]]], {"q": None}], ids=["2^63", "list",
                                                                       "object"])
def test_manifest_fail_value_not_text(installation: Installation, column: str,
                                      value: Any) -> None:
    register_manufacturer(installation, manufacturer_ca(installation))
    bad: dict[str, Any] = {"serial": "SN-2", column: value}
    if column == "serial_number":
        bad.pop("serial")
    answer = installation.api().post("/v1/manufacturers/acme-devices/manifest", json={
        "rows": [{"row": 1, "data": {"serial": "SN-1"}}, {"row": 2, "data": bad}]})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["imported"] == 1 and report["failed"] == 1, report
    assert report["results"][1]["error"] == f"{column}: Input should be a valid string"
    shown = installation.api().get("/v1/manufacturers/acme-devices").json()
    assert shown["manifest_size"] == 1, shown
