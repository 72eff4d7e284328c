"""The edges of ``/v1/discovery`` and ``/v1/risk`` (G10): a single-valued query parameter
sent twice, an import body that is a form instead of the file, a cursor that is no
cursor. Each is a 4xx problem+json that stores nothing; the list parameter (``option``)
still takes several values."""

from __future__ import annotations

import json
import re

import pytest
from expect import assert_problem

from conftest import Installation
from iotiam.discovery.models import is_asset_id
from iotiam.discovery.service import new_asset_id

from .test_discovery_api import body, stored

IMPORTS = "/v1/discovery/imports"
ASSETS = "/v1/discovery/assets"


@pytest.mark.parametrize(("path", "params"), [
    (ASSETS, [("source", "nmap"), ("source", "jsonl")]),
    (ASSETS, [("site", "hq"), ("site", "lab")]),
    (ASSETS, [("status", "unmanaged"), ("status", "adopted")]),
    (ASSETS, [("limit", "1"), ("limit", "2")]),
    ("/v1/risk/entries", [("factor", "weak-key"), ("factor", "unmanaged")]),
    ("/v1/risk/entries", [("site", "hq"), ("site", "lab")]),
    ("/v1/risk/entries", [("min_score", "1"), ("min_score", "90")]),
    ("/v1/risk/export", [("factor", "weak-key"), ("factor", "unmanaged")]),
    ("/v1/risk/export", [("format", "csv"), ("format", "json")]),
    ("/v1/risk/trend", [("limit", "1"), ("limit", "2")]),
], ids=["assets-source", "assets-site", "assets-status", "assets-limit", "entries-factor",
        "entries-site", "entries-min-score", "export-factor", "export-format", "trend-limit"])
def test_query_fail_single_value_repeated(memory_installation: Installation, path: str,
                                          params: list[tuple[str, str]]) -> None:
    answer = memory_installation.api().get(path, params=params)
    assert_problem(answer, 400, f"query parameter {params[0][0]!r} is given more than once")


def test_query_ok_each_given_once(memory_installation: Installation) -> None:
    api = memory_installation.api()
    for path, params in ((ASSETS, {"source": "jsonl", "site": "hq", "limit": "5"}),
                         ("/v1/risk/entries", {"factor": "weak-key", "site": "hq"}),
                         ("/v1/risk/trend", {"limit": "3"})):
        assert api.get(path, params=params).status_code == 200, path


def test_import_fail_repeated_source_stores_nothing(memory_installation: Installation) -> None:
    answer = memory_installation.api().post(
        IMPORTS, params=[("source", "jsonl"), ("source", "nmap")], content=body(2))
    assert_problem(answer, 400, "'source' is given more than once")
    assert stored(memory_installation) == 0


def test_import_ok_option_takes_several_values(memory_installation: Installation) -> None:
    csv = b"Asset;MAC Address\nprinter;02:00:00:00:00:01\n"
    answer = memory_installation.api().post(
        IMPORTS, params=[("source", "cmdb"), ("option", "delimiter=;"),
                         ("option", "map.mac=MAC Address"), ("option", "map.hostname=Asset")],
        content=csv)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["added"], answer.json()["refused"]) == (1, 0)


@pytest.mark.parametrize("upload", ["multipart", "urlencoded"])
def test_import_fail_body_not_the_raw_file(memory_installation: Installation,
                                           upload: str) -> None:
    api = memory_installation.api()
    params = {"source": "jsonl"}
    if upload == "multipart":
        answer = api.post(IMPORTS, params=params, files={"file": ("seen.jsonl", body(2))})
    elif upload == "urlencoded":
        answer = api.post(IMPORTS, params=params, data={"file": body(2).decode()})
    else:
        raise AssertionError(upload)
    problem = assert_problem(answer, 415, "application/octet-stream")
    assert problem["type"] == "urn:iotiam:problem:unsupported-media-type"
    assert stored(memory_installation) == 0


@pytest.mark.parametrize("content_type", [None, "application/octet-stream",
                                          "Application/Octet-Stream; charset=binary",
                                          "application/x-ndjson", "text/plain; charset=utf-8",
                                          "application/json"])
def test_import_ok_raw_body(memory_installation: Installation, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    answer = memory_installation.api().post(IMPORTS, params={"source": "jsonl"},
                                            content=body(2), headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["added"] == 2


@pytest.mark.parametrize("after", ["garbage", "as-", "as-XYZ", "as-00000000000000000",
                                   "AS-0000000000000000", "as-000000000000000G"])
def test_assets_fail_after_is_not_an_asset_id(memory_installation: Installation,
                                              after: str) -> None:
    answer = memory_installation.api().get(ASSETS, params={"after": after})
    assert_problem(answer, 400, "'after' is not a cursor")


def test_assets_ok_after_pages(installation: Installation) -> None:
    api = installation.api()
    assert api.post(IMPORTS, params={"source": "jsonl"}, content=body(3)).status_code == 200
    first = api.get(ASSETS, params={"limit": 2}).json()
    rest = api.get(ASSETS, params={"after": first["next"]}).json()
    ids = [a["id"] for a in first["items"] + rest["items"]]
    assert len(ids) == len(set(ids)) == 3 and ids == sorted(ids)
    last = api.get(ASSETS, params={"after": "as-ffffffffffffffff"}).json()
    assert (last["items"], last["next"]) == ([], None)


def test_assets_ok_cursor_shape_is_the_shape_ids_are_made_in() -> None:
    assert all(is_asset_id(new_asset_id()) for _ in range(100))


def single_valued_queries(installation: Installation) -> list[tuple[str, str, str]]:
    """(method, path with its path parameters filled, first single-valued query parameter)
    of every GET and DELETE operation the API's OpenAPI document describes."""
    document = installation.api().get("/openapi.json").json()
    found = []
    for path, operations in document["paths"].items():
        for method in ("get", "delete"):
            parameters = operations.get(method, {}).get("parameters", [])
            single = [p["name"] for p in parameters if p["in"] == "query"
                      and "array" not in json.dumps(p.get("schema", {}))]
            if single:
                found.append((method.upper(), re.sub(r"\{[^}]+\}", "x-1", path), single[0]))
    return found


def test_query_fail_repeated_on_every_route(memory_installation: Installation) -> None:
    # not only discovery and risk: Starlette would keep the last value anywhere
    routes = single_valued_queries(memory_installation)
    assert any(path == "/v1/devices" for _, path, _ in routes), routes
    api = memory_installation.api()
    for method, path, name in routes:
        answer = api.request(method, path, params=[(name, "1"), (name, "2")])
        assert_problem(answer, 400, f"query parameter {name!r} is given more than once")
