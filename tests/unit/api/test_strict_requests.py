"""G10 at the HTTP edge (issue 12 items 8 and 9): every integer is bounded, every JSON body
is decoded once by ``iotiam.untrusted.load_json`` (duplicate keys, depth, NaN refused), and
numbers and booleans are not coerced from one another."""

from __future__ import annotations

from typing import Any

import pytest
from expect import assert_problem, row_counts
from fleet import add_device

from conftest import Installation
from iotiam.api.schemas import MAX_JSON_INT

TOO_BIG = [2**63, 2**64, 10**30]


def device_type(installation: Installation) -> dict[str, Any]:
    answer = installation.api().get("/v1/device-types")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = next(t for t in answer.json()["items"] if t["name"] == "sensor")
    return body


# -- item 8: integers past 64 bits -------------------------------------------------------


@pytest.mark.parametrize("value", TOO_BIG, ids=["2^63", "2^64", "10^30"])
@pytest.mark.parametrize("field", ["certificate_lifetime_seconds", "grace_seconds",
                                   "max_credential_age_seconds"])
def test_rotation_fail_integer_too_big(installation: Installation, field: str,
                                       value: int) -> None:
    before = device_type(installation)
    answer = installation.api().put("/v1/device-types/sensor/rotation", json={field: value})
    assert_problem(answer, 400, field)
    assert device_type(installation) == before


def test_rotation_ok_longest_duration(installation: Installation) -> None:
    longest = {"certificate_lifetime_seconds": 825 * 86400, "grace_seconds": 90 * 86400,
               "max_credential_age_seconds": 3650 * 86400}
    answer = installation.api().put("/v1/device-types/sensor/rotation", json=longest)
    assert answer.status_code == 200, answer.text
    assert answer.json()["rotation"] == longest


@pytest.mark.parametrize(("path", "name"), [
    ("/v1/audit/records", "after"),
    ("/v1/certificates", "offset"),
    ("/v1/findings", "limit"),
    ("/v1/policies/who-can", "limit"),
])
@pytest.mark.parametrize("value", [*TOO_BIG, 2**53, -(2**63) - 1],
                         ids=["2^63", "2^64", "10^30", "2^53", "-2^63-1"])
def test_query_fail_integer_too_big(installation: Installation, path: str, name: str,
                                    value: int) -> None:
    answer = installation.api().get(path, params={name: str(value), "topic": "t"})
    assert_problem(answer, 400, name)


@pytest.mark.parametrize(("path", "name"), [("/v1/audit/records", "after"),
                                            ("/v1/certificates", "offset")])
def test_query_ok_largest_json_int(installation: Installation, path: str, name: str) -> None:
    answer = installation.api().get(path, params={name: str(MAX_JSON_INT)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == []


def _integer_schemas(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        if node.get("type") == "integer":
            found.append((where, node))
        for key, child in node.items():
            found += _integer_schemas(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _integer_schemas(child, f"{where}/{i}")
    return found


def test_openapi_ok_every_integer_input_bounded(installation: Installation) -> None:
    """The mechanism, not the three fields the issue named: no integer a client sends
    (query, path, body) is without a minimum and a maximum that JSON holds exactly."""
    spec = installation.api().get("/openapi.json").json()
    inputs: list[tuple[str, dict[str, Any]]] = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            inputs += _integer_schemas(operation.get("parameters", []), f"{method} {path}")
    for name, model in spec["components"]["schemas"].items():
        if name.endswith("In") or name.startswith("Body_"):
            inputs += _integer_schemas(model, name)
    assert inputs, "no integer inputs found: the walk is broken"
    unbounded = [where for where, s in inputs
                 if abs(s.get("minimum", s.get("exclusiveMinimum", 2**64))) > MAX_JSON_INT
                 or abs(s.get("maximum", s.get("exclusiveMaximum", 2**64))) > MAX_JSON_INT]
    assert unbounded == []


# -- item 9: duplicate keys, deep bodies, strict types -----------------------------------


def test_add_device_fail_duplicate_key(installation: Installation) -> None:
    before = row_counts(installation)
    answer = installation.api().post(
        "/v1/devices", content=b'{"id":"dupA","id":"dupB","type":"sensor"}',
        headers={"content-type": "application/json"})
    assert_problem(answer, 400, "'id' twice")
    assert row_counts(installation) == before


def test_state_change_fail_duplicate_key(installation: Installation) -> None:
    add_device(installation.api(), "dev-1")
    answer = installation.api().post(
        "/v1/devices/dev-1/state",
        content=b'{"state":"active","state":"decommissioned"}',
        headers={"content-type": "application/json"})
    assert_problem(answer, 400, "'state' twice")
    assert installation.api().get("/v1/devices/dev-1").json()["state"] != "decommissioned"


def test_add_device_fail_duplicate_key_nested(installation: Installation) -> None:
    answer = installation.api().post(
        "/v1/devices", content=b'{"id":"d","type":"sensor","attributes":{"a":"1","a":"2"}}',
        headers={"content-type": "application/json"})
    assert_problem(answer, 400, "'a' twice")


@pytest.mark.parametrize("content_type", ["application/json", "application/merge-patch+json",
                                          None])
def test_body_fail_deep_json(installation: Installation, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    answer = installation.api().post("/v1/devices", content=b"[" * 50_000 + b"]" * 50_000,
                                     headers=headers)
    # without a content type the body is not taken for JSON at all
    assert_problem(answer, 400, "nested more than" if content_type else "body")


def test_body_fail_nan(installation: Installation) -> None:
    answer = installation.api().post(
        "/v1/decisions", content=b'{"device":"d","action":"publish","resource":"t",'
                                 b'"trust_score":NaN}',
        headers={"content-type": "application/json"})
    assert_problem(answer, 400, "NaN")


def test_body_fail_not_utf8(installation: Installation) -> None:
    answer = installation.api().post("/v1/devices", content=b'{"id":"\xff","type":"x"}',
                                     headers={"content-type": "application/json"})
    assert_problem(answer, 400)


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/device-types/sensor/rotation", {"grace_seconds": False}),
    ("/v1/device-types/sensor/rotation", {"grace_seconds": True}),
    ("/v1/device-types/sensor/rotation", {"grace_seconds": "3600"}),
    ("/v1/device-types/sensor/rotation", {"grace_seconds": 3600.0}),
    ("/v1/devices/import", {"rows": [{"row": True, "data": {"id": "d2", "type": "sensor"}}]}),
    ("/v1/tokens", {"name": "t", "role": "admin", "ttl_seconds": False}),
    ("/v1/decisions", {"device": "dev-1", "action": "mqtt:publish", "resource": "t",
                       "firmware_compliant": 0}),
    ("/v1/decisions", {"device": "dev-1", "action": "mqtt:publish", "resource": "t",
                       "firmware_compliant": "true"}),
    ("/v1/decisions", {"device": "dev-1", "action": "mqtt:publish", "resource": "t",
                       "trust_score": False}),
], ids=["int-false", "int-true", "int-string", "int-float", "import-row-true", "token-ttl-false",
        "bool-0", "bool-string", "number-false"])
def test_body_fail_coerced_scalar(installation: Installation, path: str,
                                  body: dict[str, Any]) -> None:
    add_device(installation.api(), "dev-1")
    before = row_counts(installation)
    method = "put" if path.endswith("rotation") else "post"
    answer = installation.api().request(method, path, json=body)
    assert_problem(answer, 400, next(iter(body.keys() - {"device", "action", "resource",
                                                          "name", "role"})))
    assert row_counts(installation) == before


def test_body_ok_enums_and_numbers_from_json(installation: Installation) -> None:
    add_device(installation.api(), "dev-1")
    answer = installation.api().post("/v1/decisions", json={
        "device": "dev-1", "action": "mqtt:publish", "resource": "t", "trust_score": 50,
        "firmware_compliant": True})
    assert answer.status_code == 200, answer.text
    answer = installation.api().post("/v1/devices/dev-1/state", json={"state": "active"})
    assert answer.status_code == 200, answer.text


# -- item 13: HTTP details ---------------------------------------------------------------


def test_405_ok_allow_header(installation: Installation) -> None:
    answer = installation.api().delete("/v1/devices")
    assert_problem(answer, 405)
    # HEAD wherever GET (RFC 9110 §9.3.2; test_http_methods.py)
    assert {m.strip() for m in answer.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}


def test_every_json_body_fail_duplicate_key(installation: Installation) -> None:
    """The mechanism: every operation documented with a JSON body refuses duplicate keys
    before anything runs (a route added without ``UntrustedJsonRoute`` fails here)."""
    api = installation.api()  # one app for every operation: building one per request cost ~0.3 s
    spec = api.get("/openapi.json").json()
    checked = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content or template.startswith("/v1/hooks/"):
                continue  # the EMQX hook answers allow/deny, never an HTTP error
            path = template.replace("{", "").replace("}", "")  # every parameter its name
            answer = api.request(
                method, path, content=b'{"a": 1, "a": 2}',
                headers={"content-type": "application/json"})
            # these read their raw bodies (NDJSON, playbooks), decoded by their own tests
            own_decoder = template in {"/v1/events", "/v1/detection/playbook"}
            assert_problem(answer, 400, None if own_decoder else "twice")
            checked.append(f"{method} {template}")
    assert len(checked) > 30, checked


def test_405_ok_allow_header_undocumented_route(installation: Installation) -> None:
    answer = installation.api().post("/docs")
    assert_problem(answer, 405)
    assert answer.headers["allow"] == "GET, HEAD"
