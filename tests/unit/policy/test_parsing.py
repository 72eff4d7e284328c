"""Policy documents from YAML and JSON: what is read, and errors that name line or field."""

from __future__ import annotations

import ipaddress
import json

import pytest

from iotiam.inventory.models import DeviceState
from iotiam.policy.conditions import TimeWindow
from iotiam.policy.models import Effect, PolicySyntaxError
from iotiam.policy.parsing import parse_policy, policy_from_mapping

FULL = """\
name: sensor-telemetry
version: 3
description: What sensors may do
statements:
  - sid: own
    effect: allow
    actions: [mqtt:publish, mqtt:subscribe, mqtt:receive]
    topics: ["devices/${device.id}/#", "sites/${device.site}/+/status"]
    conditions:
      time_window: {days: [mon-fri, sun], start: 07:30, end: 18:00, timezone: Europe/Berlin}
      source_networks: ["10.20.0.0/16", berlin, "${device.site}", "2001:db8::/32"]
      min_trust_score: 60
      trust_score_below: 95.5
      firmware_compliant: yes
      device_state: [active, pending]
      attribute_equals: {zone: north}
      attribute_in: {line: ["1", "2"]}
  - effect: allow
    actions: mqtt:connect
    clients: ["${device.id}"]
  - sid: api
    effect: allow
    actions: ["http:GET", "http:PUT"]
    paths: ["/v1/devices/${device.id}/#"]
  - sid: no-admin
    effect: deny
    actions: ["mqtt:*"]
"""


def test_parse_yaml_ok() -> None:
    doc = parse_policy(FULL)
    assert (doc.name, doc.version, doc.description, doc.guardrail) == (
        "sensor-telemetry", 3, "What sensors may do", False)
    own, connect, api, deny = doc.statements
    assert own.sid == "own" and own.effect is Effect.ALLOW and own.line == 5
    assert own.topics == ("devices/${device.id}/#", "sites/${device.site}/+/status")
    assert own.clients is None and own.paths is None
    c = own.conditions
    # YAML 1.1 would read 18:00 as the integer 1080: it stays a time here
    assert c.time_window == TimeWindow((0, 1, 2, 3, 4, 6), 7 * 3600 + 1800, 18 * 3600,
                                       "Europe/Berlin")
    assert c.source_networks == ("10.20.0.0/16", "berlin", "${device.site}", "2001:db8::/32")
    assert (c.min_trust_score, c.trust_score_below, c.firmware_compliant) == (60, 95.5, True)
    assert c.device_states == (DeviceState.ACTIVE, DeviceState.PENDING)
    assert c.attribute_equals == (("zone", "north"),)
    assert c.attribute_in == (("line", ("1", "2")),)
    assert connect.actions == ("mqtt:connect",) and connect.clients == ("${device.id}",)
    assert api.covered_actions() == ("http:GET", "http:PUT")
    assert deny.effect is Effect.DENY and not deny.restricted
    assert deny.covered_actions() == ("mqtt:connect", "mqtt:publish", "mqtt:subscribe",
                                      "mqtt:receive")


def test_parse_ok_json_round_trip() -> None:
    doc = parse_policy(FULL)
    again = parse_policy(json.dumps(doc.to_dict()))
    assert again == doc
    assert policy_from_mapping(doc.to_dict()) == doc
    assert parse_policy(json.dumps(doc.to_dict()).encode(), fmt="json") == doc


def test_parse_ok_yaml_flow_mapping_starting_with_brace() -> None:
    doc = parse_policy("{name: p, version: 1, statements: [{effect: deny, actions: ['*']}]}")
    assert doc.statements[0].effect is Effect.DENY


def test_parse_ok_wildcard_action_covers_only_listed_kinds() -> None:
    doc = parse_policy("""\
name: p
version: 1
statements:
  - effect: allow
    actions: ["mqtt:*"]
    topics: ["#"]
""")
    assert doc.statements[0].covered_actions() == ("mqtt:publish", "mqtt:subscribe",
                                                   "mqtt:receive")


def _error(text: str) -> PolicySyntaxError:
    with pytest.raises(PolicySyntaxError) as caught:
        parse_policy(text)
    return caught.value


BAD_ACTION = """\
name: p
version: 1
statements:
  - effect: allow
    actions: [mqtt:publish]
    topics: ["devices/${device.id}/#"]
  - effect: allow
    actions: [mqtt:pubish]
    topics: ["a"]
"""


def test_parse_fail_unknown_action_names_line_and_statement() -> None:
    error = _error(BAD_ACTION)
    assert error.detail == ("line 8: statement 2: action 'mqtt:pubish' is unknown "
                            "(did you mean 'mqtt:publish'?)")
    assert error.problems[0].line == 8


def test_parse_fail_json_names_field_path() -> None:
    data = parse_policy(BAD_ACTION.replace("pubish", "publish")).to_dict()
    data["statements"][1]["actions"] = ["mqtt:pubish"]
    error = _error(json.dumps(data, indent=2))
    assert error.detail == ("statement 2: action 'mqtt:pubish' is unknown "
                            "(did you mean 'mqtt:publish'?)")


def _statement(body: str) -> str:
    return "name: p\nversion: 1\nstatements:\n  - " + body.replace("\n", "\n    ") + "\n"


@pytest.mark.parametrize(("body", "message"), [
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["devices/${device.name}/#"]',
     "line 6: statement 1: topic filter 'devices/${device.name}/#': unknown variable "
     "'${device.name}'"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["devices/${device.id/#"]',
     "line 6: statement 1: topic filter 'devices/${device.id/#': '${' without a closing '}'"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["a/#/b"]',
     "line 6: statement 1: topic filter 'a/#/b': '#' must be a whole level and the last one"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["a/dev+"]',
     "'+' must be a whole level"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["a/${device.id}+"]',
     "'+' must be a whole level"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["a\\0b"]', "contains a NUL"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["a\\tb"]', "control character"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: [""]', "non-empty"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["' + "x" * 65536 + '"]',
     "65536 bytes of UTF-8"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: []', "'topics' is empty"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: ["$CONTROL/#"]',
     "$CONTROL topics cannot be granted"),
    ('effect: allow\nactions: [mqtt:connect, mqtt:publish]\ntopics: ["a"]',
     "line 4: statement 1: action 'mqtt:connect' needs 'clients' (this statement lists "
     "only topics)"),
    ('effect: allow\nactions: [mqtt:publish]\ntopics: [a]\npaths: ["/x"]',
     "'paths' is given but no action of this statement acts on paths"),
    ('effect: allow\nactions: [mqtt:connect]\nclients: ["dev-*"]',
     "'*' must be the whole pattern"),
    ('effect: allow\nactions: ["http:GET"]\npaths: ["v1/x"]', "must start with '/'"),
    ('effect: allow\nactions: ["http:get"]\npaths: ["/v1"]', "upper case: 'http:GET'"),
    ("effect: permit\nactions: [mqtt:publish]", "line 4: statement 1: effect 'permit' is "
     "unknown (allow or deny)"),
    ("effect: yes\nactions: [mqtt:publish]", "effect 'yes' is unknown"),
    ("actions: [mqtt:publish]", "line 4: statement 1: field 'effect' is missing"),
    ("effect: allow\nactions: [mqtt:publish]\ntopcs: [a]",
     "line 6: statement 1: field 'topcs' is unknown (did you mean 'topics'?)"),
    ("effect: allow\neffect: deny\nactions: [mqtt:publish]",
     "line 5: the policy has the key 'effect' twice"),
    ("sid: a b\neffect: allow\nactions: [mqtt:publish]", "sid 'a b' is not valid"),
], ids=["fail/unknown-variable", "fail/unclosed-variable", "fail/hash-not-last",
        "fail/plus-partial", "fail/plus-with-variable", "fail/nul", "fail/control-char",
        "fail/empty-topic", "fail/topic-too-long", "fail/empty-list", "fail/control-topics",
        "fail/action-without-resource-kind", "fail/resource-kind-without-action",
        "fail/client-glob", "fail/relative-path", "fail/lowercase-method",
        "fail/unknown-effect", "fail/yaml-bool-effect", "fail/missing-effect",
        "fail/unknown-field", "fail/duplicate-key", "fail/bad-sid"])
def test_parse_fail_statement(body: str, message: str) -> None:
    assert message in _error(_statement(body)).detail


@pytest.mark.parametrize(("conditions", "message"), [
    ("time_window: {days: [mon-fry], start: '08:00', end: '18:00'}", "day 'mon-fry' is unknown"),
    ("time_window: {start: '25:00', end: '18:00'}", "start '25:00' is not a time of day"),
    ("time_window: {start: '08:00', end: '08:00'}", "start and end are equal"),
    ("time_window: {start: '08:00'}", "field 'end' is missing"),
    ("time_window: {start: '08:00', end: '09:00', timezone: Mars/Olympus}",
     "time zone 'Mars/Olympus' is unknown"),
    ("source_networks: [10.0.0.1/8]", "source network '10.0.0.1/8' is neither a CIDR"),
    ("source_networks: [300.1.1.0/24]", "is neither a CIDR"),
    ("min_trust_score: 101", "'min_trust_score' must be between 0 and 100"),
    ("min_trust_score: high", "'min_trust_score' must be a number"),
    ("firmware_compliant: maybe", "'firmware_compliant' must be true or false"),
    ("device_state: [broken]", "device state 'broken' is unknown"),
    ("attribute_in: {zone: []}", "'attribute_in'.zone is empty"),
    ("trust: 5", "field 'trust' is unknown"),
], ids=["fail/day", "fail/time", "fail/equal-times", "fail/missing-end", "fail/zone",
        "fail/host-bits", "fail/bad-cidr", "fail/trust-range", "fail/trust-type",
        "fail/firmware-type", "fail/state", "fail/empty-in", "fail/unknown-condition"])
def test_parse_fail_conditions(conditions: str, message: str) -> None:
    body = f"effect: allow\nactions: [mqtt:publish]\ntopics: [a]\nconditions:\n  {conditions}"
    error = _error(_statement(body))
    assert message in error.detail
    assert error.problems[0].line == 8


@pytest.mark.parametrize(("text", "message"), [
    ("", "policy document is empty"),
    ("- a\n- b\n", "a policy document must be a mapping"),
    ("name: p\nversion: 1\n", "field 'statements' is missing"),
    ("name: p\nversion: 1\nstatements: []\n", "'statements' must be a non-empty list"),
    ("name: p\nversion: one\nstatements: [{effect: deny, actions: ['*']}]\n",
     "line 2: 'version' must be an integer"),
    ("name: p\nversion: 0\nstatements: [{effect: deny, actions: ['*']}]\n",
     "'version' must be a positive integer"),
    ("name: 'bad name'\nversion: 1\nstatements: [{effect: deny, actions: ['*']}]\n",
     "policy name 'bad name' is not valid"),
    ("name: p\nversion: 1\nstatements: &s [{effect: deny, actions: ['*']}]\nother: *s\n",
     "line 3: the policy uses YAML anchors or aliases, which are not allowed"),
    ("name: !!python/object:os.system p\nversion: 1\n", "is not allowed"),
    ("name: p\n---\nname: q\n", "not valid YAML"),
    ("name: p\n  version: 1\n", "line 2: the policy is not valid YAML"),
    ('{"name": "p",\n "version": 1,\n "statements": [}', "line 3: the policy is not valid JSON"),
    ('{"name": "p", "name": "q"}', "the policy has the key 'name' twice"),
], ids=["fail/empty", "fail/not-mapping", "fail/no-statements", "fail/empty-statements",
        "fail/version-type", "fail/version-zero", "fail/bad-name", "fail/alias",
        "fail/python-tag", "fail/two-documents", "fail/yaml-syntax", "fail/json-syntax",
        "fail/json-duplicate"])
def test_parse_fail_document(text: str, message: str) -> None:
    assert message in _error(text).detail


def test_parse_fail_collects_every_problem() -> None:
    text = _statement('effect: allow\nactions: [mqtt:pubish, mqtt:sub]\ntopics: ["a/#/b"]')
    error = _error(text)
    assert len(error.problems) == 3
    assert error.detail.endswith("(and 2 more)")
    assert [p.line for p in error.problems] == [5, 5, 6]


def test_parse_fail_too_large() -> None:
    assert "larger than" in _error("#" * (257 * 1024)).detail


def test_parse_ok_normalises_networks() -> None:
    doc = parse_policy(_statement(
        "effect: allow\nactions: [mqtt:publish]\ntopics: [a]\nconditions:\n"
        "  source_networks: ['2001:0db8::/32', 10.1.0.0/16]"))
    assert doc.statements[0].conditions.source_networks == ("2001:db8::/32", "10.1.0.0/16")
    assert ipaddress.ip_network("2001:db8::/32")
