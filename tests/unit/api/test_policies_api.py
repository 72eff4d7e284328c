"""The policy API: documents, attachments, guardrails, delegation, sites, decisions, the
questions about them and the EMQX authorization hook, on every backend."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from expect import assert_problem, audit_records, last_seq
from fastapi.testclient import TestClient
from fleet import add_device, issue

from api.tenants import Tenants
from conftest import Installation

YAML = {"Content-Type": "application/yaml"}
HOOK = "/v1/hooks/emqx/authz"

TELEMETRY = """\
name: plant-telemetry
version: {version}
description: Plant telemetry
statements:
  - sid: telemetry
    effect: allow
    actions: [mqtt:publish]
    topics: ["{topic}"]
"""

GUARD = """\
name: acme-guard
version: 1
guardrail: true
statements:
  - sid: no-secrets
    effect: deny
    actions: [mqtt:publish]
    topics: ["plants/+/secrets/#"]
"""


def put(api: TestClient, text: str, **params: str) -> httpx.Response:
    """``PUT /v1/policies`` with a YAML body."""
    return api.put("/v1/policies", content=text, headers=YAML, params=params)


def stored(api: TestClient, text: str, **params: str) -> dict[str, Any]:
    """Store a policy version, or fail the test."""
    answer = put(api, text, **params)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


def attach(api: TestClient, policy: str, kind: str, target: str, **extra: str
           ) -> httpx.Response:
    """``POST /v1/policies/{policy}/attachments``."""
    return api.post(f"/v1/policies/{policy}/attachments",
                    json={"kind": kind, "id": target, **extra})


def decide(api: TestClient, device: str, resource: str, action: str = "mqtt:publish",
           **extra: Any) -> dict[str, Any]:
    """``POST /v1/decisions``, or fail the test."""
    answer = api.post("/v1/decisions", json={"device": device, "action": action,
                                             "resource": resource, **extra})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def hook(api: TestClient, **fields: Any) -> httpx.Response:
    """EMQX's authorization request (its default JSON template)."""
    body = {"clientid": fields.get("username", "c1"), "peerhost": "10.1.2.3", "qos": "1",
            "retain": "false", "action": "publish", **fields}
    return api.post(HOOK, json=body)


def result(answer: httpx.Response) -> str:
    """The EMQX result of a hook answer (always a 200 JSON body)."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    verdict: str = answer.json()["result"]
    return verdict


# -- documents, versions, attachments, decisions ---------------------------------------


def test_write_attach_decide_ok(tenants: Tenants) -> None:
    api = tenants.installation.api()
    first = put(api, TELEMETRY.format(version=1, topic="plants/${device.org}/#"))
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/v1/policies/plant-telemetry?version=1"
    body = first.json()
    assert (body["name"], body["version"], body["owner_path"]) == ("plant-telemetry", 1,
                                                                   "/root/")
    assert body["findings"] == [] and body["diff"] == []
    attached = attach(api, "plant-telemetry", "org-unit", "acme")
    assert attached.status_code == 201, attached.text
    assert attached.json() == {"policy": "plant-telemetry",
                               "target": {"kind": "org-unit", "id": "acme"},
                               "scope": "/root/acme/"}

    permit = decide(api, "acme-berlin-d1", "plants/acme-berlin/temp")
    assert permit["decision"] == "permit"
    assert [(s["policy"], s["version"], s["statement"]) for s in permit["statements"]] == [
        ("plant-telemetry", 1, "telemetry")]
    assert "plant-telemetry" in permit["reason"]
    deny = decide(api, "acme-berlin-d1", "plants/acme/temp")
    assert deny["decision"] == "deny" and deny["statements"] == []
    assert "no policy allows mqtt:publish on 'plants/acme/temp'" in deny["reason"]
    assert decide(api, "globex-d1", "plants/globex/temp")["decision"] == "deny"

    second = stored(api, TELEMETRY.format(version=2, topic="plants/${device.org}/tele/#"))
    assert second["diff"] == [
        "- statement telemetry: topics: 'plants/${device.org}/#'",
        "+ statement telemetry: topics: 'plants/${device.org}/tele/#'"]
    assert decide(api, "acme-berlin-d1", "plants/acme-berlin/temp")["decision"] == "deny"
    assert decide(api, "acme-berlin-d1", "plants/acme-berlin/tele/t")["decision"] == "permit"

    listed = {p["name"]: p for p in api.get("/v1/policies").json()["items"]}
    assert set(listed) == {"iotiam-default-device", "plant-telemetry"}
    assert listed["plant-telemetry"]["versions"] == [1, 2]
    assert listed["plant-telemetry"]["attachments"] == [attached.json()]
    shown = api.get("/v1/policies/plant-telemetry", params={"version": 1}).json()
    assert shown["version"] == 1 and "plants/${device.org}/#" in shown["source"]
    assert shown["document"]["statements"][0]["sid"] == "telemetry"
    diff = api.get("/v1/policies/plant-telemetry/diff", params={"from": 1, "to": 2}).json()
    assert diff["lines"] == second["diff"]
    assert_problem(api.get("/v1/policies/plant-telemetry", params={"version": 7}), 404,
                   "has no version 7")

    assert api.delete("/v1/policies/plant-telemetry/attachments",
                      params={"kind": "org-unit", "id": "acme"}).status_code == 204
    assert decide(api, "acme-berlin-d1", "plants/acme-berlin/tele/t")["decision"] == "deny"
    tags = [r["tag"] for r in audit_records(api)]
    assert tags.count("admin:policy:written") == 3  # the default policy, then v1 and v2
    assert tags[-1] == "admin:policy:detached"


def test_write_ok_json_body_and_owner(tenants: Tenants) -> None:
    api = tenants.installation.api()
    document = {"name": "acme-json", "version": 1, "statements": [
        {"effect": "allow", "actions": ["mqtt:subscribe"], "topics": ["acme/#"]}]}
    answer = api.put("/v1/policies", content=json.dumps(document),
                     headers={"Content-Type": "application/json"}, params={"owner": "acme"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["owner_path"] == "/root/acme/"
    acme = tenants.installation.api(tenants.token("acme", "viewer"))
    assert acme.get("/v1/policies/acme-json").json()["document"] == document


def test_guardrail_deny_beats_child_allow(tenants: Tenants) -> None:
    root = tenants.installation.api()
    stored(root, TELEMETRY.format(version=1, topic="plants/#"), owner="acme-berlin")
    assert attach(root, "plant-telemetry", "org-unit", "acme-berlin").status_code == 201
    stored(root, GUARD, owner="acme")
    assert attach(root, "acme-guard", "org-unit", "acme").status_code == 201
    assert decide(root, "acme-berlin-d1", "plants/p1/telemetry")["decision"] == "permit"
    denied = decide(root, "acme-berlin-d1", "plants/p1/secrets/key")
    assert denied["decision"] == "deny"
    assert [(s["policy"], s["statement"], s["effect"]) for s in denied["statements"]] == [
        ("acme-guard", "no-secrets", "deny")]
    assert denied["statements"][0]["target"] == {"kind": "org-unit", "id": "acme"}
    # and what the device may do says so
    lines = root.get("/v1/devices/acme-berlin-d1/permissions").json()["lines"]
    assert lines[0].startswith("deny mqtt:publish on 'plants/+/secrets/#'")
    assert any("partly overridden by policy 'acme-guard'" in line for line in lines)


def test_delegated_admin_fail_escalation_beyond_guardrail(tenants: Tenants) -> None:
    installation = tenants.installation
    root = installation.api()
    stored(root, GUARD, owner="acme")
    assert attach(root, "acme-guard", "org-unit", "acme").status_code == 201
    berlin = installation.api(tenants.token("acme-berlin", "admin"))
    written = stored(berlin, TELEMETRY.format(version=1, topic="plants/+/#"))
    assert written["owner_path"] == "/root/acme/acme-berlin/"
    before = last_seq(installation)
    refused = attach(berlin, "plant-telemetry", "org-unit", "acme-berlin")
    body = assert_problem(refused, 403, "statement telemetry would allow mqtt:publish on "
                                        "'plants/+/#'")
    assert body["type"] == "urn:iotiam:problem:guardrail-violation"
    assert "policy 'acme-guard' v1 statement 'no-secrets'" in body["detail"]
    assert "guardrail at /root/acme/" in body["conflicts"][0]
    [record] = audit_records(root, after=before)
    assert (record["tag"], record["outcome"]) == ("admin:policy:refused", "denied")
    # narrower is fine; widening an attached policy is refused at write time
    stored(berlin, TELEMETRY.format(version=2, topic="plants/berlin/telemetry/#"))
    assert attach(berlin, "plant-telemetry", "org-unit", "acme-berlin").status_code == 201
    assert_problem(put(berlin, TELEMETRY.format(version=3, topic="plants/berlin/#")), 403,
                   "which policy 'acme-guard' v1 statement 'no-secrets'")
    assert root.get("/v1/policies/plant-telemetry").json()["version"] == 2
    # nor may the delegated admin reach above its scope or drop the guardrail
    assert_problem(attach(berlin, "plant-telemetry", "org-unit", "acme"), 403,
                   "outside your scope")
    assert_problem(put(berlin, TELEMETRY.format(version=1, topic="x").replace(
        "plant-telemetry", "mine"), owner="acme"), 404, "org unit 'acme' not found")
    assert_problem(berlin.delete("/v1/policies/acme-guard/attachments",
                                 params={"kind": "org-unit", "id": "acme"}), 403,
                   "outside your scope")
    assert_problem(put(berlin, GUARD.replace("version: 1", "version: 2")), 403,
                   "belongs to /root/acme/, outside your scope /root/acme/acme-berlin/")


def test_other_tenants_policies_are_hidden(tenants: Tenants) -> None:
    installation = tenants.installation
    globex = installation.api(tenants.token("globex", "admin"))
    stored(globex, TELEMETRY.format(version=1, topic="globex/#"))
    assert attach(globex, "plant-telemetry", "org-unit", "globex").status_code == 201
    acme = installation.api(tenants.token("acme", "admin"))
    unknown = acme.get("/v1/policies/nosuch").json()
    hidden = assert_problem(acme.get("/v1/policies/plant-telemetry"), 404)
    assert hidden["detail"] == unknown["detail"].replace("nosuch", "plant-telemetry")
    assert {p["name"] for p in acme.get("/v1/policies").json()["items"]} == {
        "iotiam-default-device"}
    for answer in (
        acme.get("/v1/policies/plant-telemetry/diff", params={"from": 1, "to": 1}),
        attach(acme, "plant-telemetry", "org-unit", "acme"),
        acme.delete("/v1/policies/plant-telemetry/attachments",
                    params={"kind": "org-unit", "id": "globex"}),
        attach(acme, "iotiam-default-device", "org-unit", "globex"),
        attach(acme, "iotiam-default-device", "device", "globex-d1"),
        attach(acme, "iotiam-default-device", "group", "globex-g"),
        acme.post("/v1/decisions", json={"device": "globex-d1", "action": "mqtt:publish",
                                         "resource": "globex/x"}),
        acme.get("/v1/devices/globex-d1/permissions"),
    ):
        assert_problem(answer, 404, "not found")
    # its name is taken; by whom is not said (docs/tenancy.md)
    taken = assert_problem(put(acme, TELEMETRY.format(version=2, topic="acme/#")), 409,
                           "policy name 'plant-telemetry' is not available")
    assert "globex" not in json.dumps(taken)
    # a tenant's own policy is created under its own name space of owners, not globex's
    stored(acme, TELEMETRY.format(version=1, topic="acme/#").replace("plant-telemetry",
                                                                        "acme-telemetry"))
    assert "acme-telemetry" not in {p["name"] for p in globex.get("/v1/policies").json()[
        "items"]}
    # who-can stops at the subtree, the hook does not answer for other tenants' devices
    everywhere = {"topic": "devices/globex-d1/x"}
    assert acme.get("/v1/policies/who-can", params=everywhere).json()["devices"] == []
    viewer = installation.api(tenants.token("acme", "viewer"))
    assert result(hook(viewer, username="globex-d1", topic="devices/globex-d1/x")) == "deny"
    assert result(hook(globex, username="globex-d1", topic="devices/globex-d1/x")) == "allow"


# -- G10: bad documents and requests ---------------------------------------------------


def test_write_fail_malformed_names_line_and_field(installation: Installation) -> None:
    api = installation.api()
    text = ("name: broken\nversion: 1\nstatements:\n  - effect: allow\n"
            "    actions: [mqtt:publish]\n    topcs: [a/b]\n")
    before = last_seq(installation)
    body = assert_problem(put(api, text), 400, "line 6: statement 1: field 'topcs' is unknown "
                                               "(did you mean 'topics'?)")
    assert body["type"] == "urn:iotiam:problem:invalid-policy"
    assert body["problems"][0].startswith("line 6:")
    assert_problem(api.get("/v1/policies/broken"), 404)
    [record] = audit_records(api, after=before)
    assert (record["tag"], record["outcome"]) == ("admin:policy:refused", "failure")
    as_json = api.put("/v1/policies", headers={"Content-Type": "application/json"},
                      content='{"name": "broken", "version": "one", "statements": []}')
    assert_problem(as_json, 400, "'version' must be an integer")


@pytest.mark.parametrize(("text", "detail"), [
    (TELEMETRY.format(version=1, topic="devices/${device.nope}/x"), "${device.nope}"),
    (TELEMETRY.format(version=1, topic="a\\u0000b"), "contains a NUL character"),
    (TELEMETRY.format(version=1, topic="a/" + "x" * 70_000), "65535"),
    (TELEMETRY.format(version=1, topic="a/#/b"), "'#'"),
    ("name: x\nversion: 1\nstatements: []\n", "statements"),
    ("- just\n- a list\n", "mapping"),
    ("name: [unclosed\n", "not valid YAML"),
    (TELEMETRY.format(version=1, topic="x").replace("plant-telemetry", "who-can"), "reserved"),
    ("", "empty"),
], ids=["fail/unknown-variable", "fail/nul-topic", "fail/over-long-topic",
        "fail/hash-not-last", "fail/no-statements", "fail/not-a-mapping", "fail/bad-yaml",
        "fail/reserved-name", "fail/empty"])
def test_write_fail_bad_document(installation: Installation, text: str, detail: str) -> None:
    api = installation.api()
    names = {p["name"] for p in api.get("/v1/policies").json()["items"]}
    assert_problem(put(api, text), 400, detail)
    assert {p["name"] for p in api.get("/v1/policies").json()["items"]} == names


def test_write_fail_content_type_and_roles(tenants: Tenants) -> None:
    installation = tenants.installation
    api = installation.api()
    assert_problem(api.put("/v1/policies", content=GUARD,
                           headers={"Content-Type": "application/xml"}), 400,
                   "is not a policy document")
    viewer = installation.api(tenants.token("acme", "viewer"))
    assert_problem(put(viewer, GUARD), 403, "writing policies needs the admin role")
    operator = installation.api(tenants.token("acme", "operator"))
    stored(api, GUARD, owner="acme")
    assert_problem(attach(operator, "acme-guard", "org-unit", "acme"), 403,
                   "attaching policies needs the admin role")
    assert_problem(attach(api, "acme-guard", "toaster", "acme"), 400, "kind")
    assert_problem(attach(api, "acme-guard", "device-type", "toaster"), 404,
                   "device-type toaster not found")
    assert_problem(api.get("/v1/policies/acme-guard/diff", params={"from": 1}), 400, "to")
    assert_problem(api.get("/v1/policies/acme-guard", params={"version": 2**63}), 400,
                   "version")


@pytest.mark.parametrize(("resource", "action", "detail"), [
    ("a\x00b", "mqtt:publish", "NUL"),
    ("a/" + "x" * 65_600, "mqtt:publish", "longer than 65535 bytes"),
    ("a/+/b", "mqtt:publish", "wildcard"),
    ("a/b", "mqtt:*", "is a wildcard"),
    ("a/b", "publish", "is unknown (did you mean 'mqtt:publish'?)"),
    ("a/#/b", "mqtt:subscribe", "'#'"),
], ids=["fail/nul", "fail/over-long", "fail/wildcard-topic", "fail/wildcard-action",
        "fail/unknown-action", "fail/bad-filter"])
def test_decision_fail_bad_request(tenants: Tenants, resource: str, action: str,
                                   detail: str) -> None:
    api = tenants.installation.api()
    answer = api.post("/v1/decisions", json={"device": "acme-d1", "action": action,
                                             "resource": resource})
    assert_problem(answer, 400, detail)


def test_decision_fail_bad_context(tenants: Tenants) -> None:
    api = tenants.installation.api()
    base = {"device": "acme-d1", "action": "mqtt:publish", "resource": "devices/acme-d1/x"}
    assert_problem(api.post("/v1/decisions", json={**base, "source_ip": "10.1.2"}), 400,
                   "is not an IP address")
    assert_problem(api.post("/v1/decisions", json={**base, "at": "2026-03-02T10:00:00"}), 400,
                   "aware")
    assert_problem(api.post("/v1/decisions", json={**base, "trust_score": 101}), 400,
                   "trust_score")
    assert_problem(api.post("/v1/decisions", json={**base, "device": "nosuch"}), 404,
                   "device 'nosuch' not found")


def test_lint_ok_without_storing(installation: Installation) -> None:
    api = installation.api()
    answer = api.post("/v1/policies/lint", content=TELEMETRY.format(version=1, topic="#"),
                      headers=YAML)
    assert answer.status_code == 200, answer.text
    [finding] = answer.json()["findings"]
    assert (finding["severity"], finding["code"], finding["line"]) == ("high", "all-topics", 5)
    assert_problem(api.get("/v1/policies/plant-telemetry"), 404)
    assert_problem(api.post("/v1/policies/lint", content="name: [", headers=YAML), 400,
                   "not valid YAML")


# -- sites, time windows and source networks -------------------------------------------

WORK_HOURS = """\
name: work-hours
version: 1
statements:
  - sid: shift
    effect: allow
    actions: [mqtt:publish]
    topics: ["lines/${device.site}/#"]
    conditions:
      time_window: {days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00"}
      source_networks: ["${device.site}", "192.0.2.0/24"]
"""


def _berlin(installation: Installation) -> TestClient:
    api = installation.api()
    answer = api.put("/v1/sites/berlin", json={"timezone": "Europe/Berlin",
                                               "networks": ["10.1.0.0/16"]})
    assert answer.status_code == 201, answer.text
    assert api.post("/v1/devices", json={"id": "press-1", "type": "sensor",
                                         "site": "berlin"}).status_code == 201
    issue(api, "press-1")  # enrolled: active, with a credential
    stored(api, WORK_HOURS)
    assert attach(api, "work-hours", "device-type", "sensor").status_code == 201
    return api


def test_time_window_follows_clock_and_at_simulates(installation: Installation) -> None:
    api = _berlin(installation)
    # 2026-03-01 12:00 UTC is a Sunday: outside the window
    sunday = decide(api, "press-1", "lines/berlin/x", source_ip="10.1.4.5")
    assert sunday["decision"] == "deny"
    monday = "2026-03-02T09:30:00+00:00"  # 10:30 in Berlin
    simulated = decide(api, "press-1", "lines/berlin/x", source_ip="10.1.4.5", at=monday)
    assert simulated["decision"] == "permit", simulated
    assert simulated["statements"][0]["statement"] == "shift"
    assert decide(api, "press-1", "lines/berlin/x", source_ip="10.1.4.5",
                  at="2026-03-02T17:30:00+00:00")["decision"] == "deny"  # 18:30 in Berlin
    # simulating changed nothing: the real decision still follows the clock
    assert decide(api, "press-1", "lines/berlin/x", source_ip="10.1.4.5")["decision"] == "deny"
    installation.clock.set(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    assert decide(api, "press-1", "lines/berlin/x", source_ip="10.1.4.5")["decision"] == \
        "permit"
    assert result(hook(api, username="press-1", topic="lines/berlin/x",
                       peerhost="10.1.4.5")) == "allow"


def test_source_network_condition(installation: Installation) -> None:
    api = _berlin(installation)
    installation.clock.set(datetime(2026, 3, 2, 9, 30, tzinfo=UTC))
    cases = {"10.1.200.7": "permit", "192.0.2.9": "permit", "10.2.0.1": "deny",
             "2001:db8::1": "deny"}
    for address, expected in cases.items():
        answer = decide(api, "press-1", "lines/berlin/x", source_ip=address)
        assert answer["decision"] == expected, (address, answer)
    unknown = decide(api, "press-1", "lines/berlin/x")  # no address: fails closed
    assert unknown["decision"] == "deny"
    assert result(hook(api, username="press-1", topic="lines/berlin/x",
                       peerhost="10.2.0.1")) == "deny"
    # moving the site's network moves the permission
    assert api.put("/v1/sites/berlin", json={"timezone": "Europe/Berlin",
                                             "networks": ["10.2.0.0/16"]}).status_code == 200
    assert decide(api, "press-1", "lines/berlin/x", source_ip="10.2.0.1")["decision"] == \
        "permit"


def test_sites_ok_and_fail(tenants: Tenants) -> None:
    installation = tenants.installation
    api = installation.api()
    created = api.put("/v1/sites/tokyo", json={"timezone": "Asia/Tokyo",
                                               "networks": ["10.9.0.0/16", "fd00::/8"]})
    assert created.status_code == 201, created.text
    assert created.json() == {"name": "tokyo", "timezone": "Asia/Tokyo",
                              "networks": ["10.9.0.0/16", "fd00::/8"]}
    viewer = installation.api(tenants.token("acme", "viewer"))
    assert viewer.get("/v1/sites").json()["items"] == [created.json()]
    before = last_seq(installation)
    assert_problem(installation.api(tenants.token("acme", "admin")).put(
        "/v1/sites/acme-site", json={"timezone": "UTC"}), 403, "needs an admin scoped to the root")
    assert_problem(viewer.put("/v1/sites/x", json={"timezone": "UTC"}), 403, "admin role")
    assert_problem(api.put("/v1/sites/x", json={"timezone": "Mars/Olympus"}), 400,
                   "unknown time zone 'Mars/Olympus'")
    assert_problem(api.put("/v1/sites/x", json={"timezone": "UTC",
                                                "networks": ["10.1.0.1/16"]}), 400,
                   "is not a CIDR")
    assert_problem(api.put("/v1/sites/9lives", json={"timezone": "UTC"}), 400,
                   "site name '9lives' is not valid")
    assert_problem(api.put("/v1/sites/x", json={"timezone": "UTC", "extra": 1}), 400, "extra")
    refusals = audit_records(api, after=before)
    assert {r["tag"] for r in refusals} >= {"admin:policy:refused"}
    assert [s["name"] for s in api.get("/v1/sites").json()["items"]] == ["tokyo"]
    saved = [r for r in audit_records(api) if r["tag"] == "admin:site:saved"]
    assert [r["subject"] for r in saved] == ["site:tokyo"]
    # a policy may name only known sites
    unknown = WORK_HOURS.replace('"${device.site}", ', '"atlantis", ')
    assert_problem(put(api, unknown), 400, "source network 'atlantis' is not a known site")


# -- questions: what can a device do, who can publish ---------------------------------


def test_permissions_ok_variables_substituted(tenants: Tenants) -> None:
    api = tenants.installation.api(tenants.token("acme", "viewer"))
    body = api.get("/v1/devices/acme-d1/permissions").json()
    assert body["device"] == "acme-d1" and body["blocked"] is None
    resources = {(s["source"]["statement"], s["resource"]) for s in body["statements"]}
    assert resources == {("connect-as-self", "acme-d1"), ("own-namespace", "devices/acme-d1/#")}
    root = tenants.installation.api()
    assert root.post("/v1/devices/acme-d1/state", json={"state": "suspended"}).status_code == 200
    blocked = api.get("/v1/devices/acme-d1/permissions").json()
    assert blocked["statements"] == [] and "suspended" in blocked["blocked"]


def test_who_can_ok_pages_through_subtree(tenants: Tenants) -> None:
    installation = tenants.installation
    root = installation.api()
    stored(root, TELEMETRY.format(version=1, topic="plants/shared/#"))
    assert attach(root, "plant-telemetry", "org-unit", "acme").status_code == 201
    acme = installation.api(tenants.token("acme", "viewer"))
    own = acme.get("/v1/policies/who-can", params={"topic": "devices/acme-d1/t"}).json()
    assert [d["device"] for d in own["devices"]] == ["acme-d1"]
    assert own["devices"][0]["statements"][0]["statement"] == "own-namespace"
    found: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"action": "mqtt:publish", "topic": "plants/shared/x",
                                  "limit": 1}
        if after:
            params["after"] = after
        page = acme.get("/v1/policies/who-can", params=params).json()
        pages += 1
        found += [d["device"] for d in page["devices"]]
        after = page["next"]
        if after is None:
            break
    assert found == ["acme-berlin-d1", "acme-d1"] and pages == 3
    assert [g["attachment"]["target"] for g in page["targets"]] == [
        {"kind": "org-unit", "id": "acme"}]
    everyone = root.get("/v1/policies/who-can", params={"topic": "plants/shared/x"}).json()
    assert {d["device"] for d in everyone["devices"]} == {"acme-d1", "acme-berlin-d1"}
    assert_problem(acme.get("/v1/policies/who-can"), 400, "topic=")
    assert_problem(acme.get("/v1/policies/who-can", params={"topic": "a/#/b"}), 400, "'#'")


# -- the EMQX authorization hook -------------------------------------------------------


def test_hook_ok_allow_and_deny(tenants: Tenants) -> None:
    installation = tenants.installation
    emqx = installation.api(tenants.token("root", "viewer"))
    assert result(hook(emqx, username="acme-d1", topic="devices/acme-d1/telemetry")) == "allow"
    assert result(hook(emqx, username="acme-d1", topic="devices/acme-d1/#",
                       action="subscribe")) == "allow"
    assert result(hook(emqx, username="acme-d1", topic="$share/g/devices/acme-d1/jobs",
                       action="subscribe")) == "allow"
    denied = hook(emqx, username="acme-d1", topic="devices/globex-d1/telemetry")
    assert result(denied) == "deny"
    assert "no policy allows mqtt:publish" in denied.headers["x-iotiam-reason"]
    assert result(hook(emqx, username="acme-d1", topic="#", action="subscribe")) == "deny"
    # a form body and a GET with a query string, as EMQX may be configured to send
    form = emqx.post(HOOK, data={"username": "acme-d1", "topic": "devices/acme-d1/x",
                                 "action": "publish"})
    assert result(form) == "allow"
    query = emqx.get(HOOK, params={"username": "acme-d1", "topic": "devices/acme-d1/x",
                                   "action": "publish"})
    assert result(query) == "allow"


@pytest.mark.parametrize(("body", "reason"), [
    ({"username": "ghost", "topic": "devices/ghost/x", "action": "publish"}, "not found"),
    ({"topic": "devices/acme-d1/x", "action": "publish"}, "no username"),
    ({"username": "acme-d1", "action": "publish"}, "no topic"),
    ({"username": "acme-d1", "topic": "devices/acme-d1/x", "action": "all"}, "action"),
    ({"username": "acme-d1", "topic": "devices/acme-d1/x", "action": ["publish"]}, "action"),
    ({"username": ["acme-d1"], "topic": "devices/acme-d1/x", "action": "publish"},
     "no username"),
    ({"username": "acme-d1", "topic": "devices/acme-d1/\u0000", "action": "publish"}, "NUL"),
    ({"username": "acme-d1", "topic": "devices/acme-d1/" + "x" * 70_000,
      "action": "publish"}, "longer than"),
    ({"username": "acme-d1", "topic": "devices/acme-d1/+", "action": "publish"}, "wildcard"),
    ({"username": "acme-d1", "topic": "devices/acme-d1/x", "action": "publish",
      "peerhost": "not-an-ip"}, "not an IP address"),
    ({"username": "acme\u0000d1", "topic": "devices/x", "action": "publish"}, "not valid"),
    ({"username": "x" * 129, "topic": "devices/x", "action": "publish"}, "not valid"),
], ids=["fail/unknown-device", "fail/no-username", "fail/no-topic", "fail/bad-action",
        "fail/action-list", "fail/username-list", "fail/nul-topic", "fail/over-long-topic",
        "fail/wildcard-publish", "fail/bad-peerhost", "fail/nul-username",
        "fail/long-username"])
def test_hook_fail_closed(tenants: Tenants, body: dict[str, Any], reason: str) -> None:
    emqx = tenants.installation.api(tenants.token("root", "viewer"))
    answer = emqx.post(HOOK, json=body)
    assert result(answer) == "deny"
    assert reason in answer.headers["x-iotiam-reason"]


@pytest.mark.parametrize(("content", "headers", "reason"), [
    (b"not json", {"Content-Type": "application/json"}, "not valid JSON"),
    (b"[1, 2]", {"Content-Type": "application/json"}, "not a JSON object"),
    (b"\xff\xfe", {"Content-Type": "application/json"}, "not valid JSON"),
    (b"x" * 200_000, {"Content-Type": "application/json"}, "larger than"),
    (b"", {}, "no username"),
    (b'{"username": "\\ud800", "topic": "a", "action": "publish"}',
     {"Content-Type": "application/json"}, "lone surrogate"),
    (b'{"username": "acme-d1", "topic": "devices/acme-d1/\\ud800", "action": "publish"}',
     {"Content-Type": "application/json"}, "lone surrogate"),
], ids=["fail/not-json", "fail/json-array", "fail/not-utf8", "fail/too-large", "fail/empty",
        "fail/surrogate-username", "fail/surrogate-topic"])
def test_hook_fail_malformed_body(tenants: Tenants, content: bytes, headers: dict[str, str],
                                  reason: str) -> None:
    emqx = tenants.installation.api(tenants.token("root", "viewer"))
    answer = emqx.post(HOOK, content=content, headers=headers)
    assert result(answer) == "deny"
    assert reason in answer.headers["x-iotiam-reason"]


def test_hook_fail_closed_without_token(installation: Installation) -> None:
    add_device(installation.api(), "dev-1")
    before = last_seq(installation)
    for token in ("", "Bearer nonsense", "Basic dXNlcjpwYXNz"):
        client = installation.api()
        client.headers["Authorization"] = token
        answer = hook(client, username="dev-1", topic="devices/dev-1/x")
        assert result(answer) == "deny"
        assert "unauthenticated" in answer.headers["x-iotiam-reason"]
    records = audit_records(installation.api(), after=before)
    assert {(r["tag"], r["outcome"]) for r in records} == {("admin:access:denied", "denied")}
    assert len(records) == 3


def test_hook_follows_device_state_within_a_second(tenants: Tenants) -> None:
    installation = tenants.installation
    emqx = installation.api(tenants.token("root", "viewer"))
    topic = "devices/acme-d1/telemetry"
    assert result(hook(emqx, username="acme-d1", topic=topic)) == "allow"
    root = installation.api()
    # changes are told apart by their time: a frozen clock must move between two
    installation.clock.advance(timedelta(seconds=1))
    assert root.post("/v1/devices/acme-d1/state",
                     json={"state": "quarantined"}).status_code == 200
    deadline = time.monotonic() + 1.0
    while result(hook(emqx, username="acme-d1", topic=topic)) == "allow":
        assert time.monotonic() < deadline, "the hook still allows a quarantined device"
        time.sleep(0.05)
    # the quarantine policy's own channel stays open
    assert result(hook(emqx, username="acme-d1", topic="quarantine/acme-d1/report")) == "allow"
    installation.clock.advance(timedelta(seconds=1))
    assert root.post("/v1/devices/acme-d1/state",
                     json={"state": "suspended"}).status_code == 200
    deadline = time.monotonic() + 1.0
    while result(hook(emqx, username="acme-d1", topic="quarantine/acme-d1/report")) == "allow":
        assert time.monotonic() < deadline, "the hook still allows a suspended device"
        time.sleep(0.05)


def test_hook_follows_policy_and_group_changes(tenants: Tenants) -> None:
    installation = tenants.installation
    emqx = installation.api(tenants.token("root", "viewer"))
    root = installation.api()
    topic = "lines/line-1/cmd"
    assert result(hook(emqx, username="acme-d1", topic=topic)) == "deny"
    stored(root, TELEMETRY.format(version=1, topic="lines/line-1/#"))
    assert attach(root, "plant-telemetry", "group", "acme-g").status_code == 201
    assert result(hook(emqx, username="acme-d1", topic=topic)) == "deny"  # not a member yet
    installation.clock.advance(timedelta(seconds=1))
    assert root.post("/v1/groups/acme-g/members", json={"device": "acme-d1"}).status_code == 204
    deadline = time.monotonic() + 1.0
    while result(hook(emqx, username="acme-d1", topic=topic)) == "deny":
        assert time.monotonic() < deadline, "the hook did not see the new membership"
        time.sleep(0.05)
