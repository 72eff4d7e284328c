"""Policy variables: substitution, and values that try to widen a match (injection)."""

from __future__ import annotations

import pytest

from iotiam.errors import InvalidInput
from iotiam.policy.actions import CONNECT, PUBLISH, SUBSCRIBE
from iotiam.policy.models import Deny
from iotiam.policy.variables import check_variable, parse_template, safe_value
from policy.fakes import ROOT, context, engine, policy, subject

ALLOWS = policy("""\
name: vars
version: 1
statements:
  - effect: allow
    actions: [mqtt:publish, mqtt:subscribe]
    topics:
      - "devices/${device.id}/#"
      - "types/${device.type}/${device.id}"
      - "sites/${device.site}/orgs/${device.org}"
      - "zones/${device.attr.zone}/+"
      - "names/dev-${device.id}"
      - "pairs/${device.type}.${device.id}/x"
  - effect: allow
    actions: [mqtt:connect]
    clients: ["${device.id}"]
""")


@pytest.mark.parametrize(("action", "resource"), [
    (PUBLISH, "devices/d1/x"),
    (PUBLISH, "types/sensor/d1"),
    (PUBLISH, "sites/berlin/orgs/plant1"),
    (PUBLISH, "zones/north/temp"),
    (PUBLISH, "names/dev-d1"),
    (PUBLISH, "pairs/sensor.d1/x"),
    (SUBSCRIBE, "zones/north/+"),
    (SUBSCRIBE, "devices/d1/+/x"),
    (CONNECT, "d1"),
], ids=lambda v: v)
def test_substitution_ok(action: str, resource: str) -> None:
    me = subject(attributes={"zone": "north"})
    assert engine((ALLOWS, ROOT)).decide(me, action, resource, context()).allowed


@pytest.mark.parametrize(("action", "resource"), [
    (PUBLISH, "devices/d2/x"),
    (PUBLISH, "types/gateway/d1"),
    (PUBLISH, "sites/tokyo/orgs/plant1"),
    (PUBLISH, "zones/south/temp"),
    (PUBLISH, "names/d1"),
    (PUBLISH, "names/dev-d1x"),
    (PUBLISH, "pairs/sensord1/x"),
    (SUBSCRIBE, "zones/+/+"),
    (CONNECT, "d2"),
], ids=lambda v: v)
def test_substitution_fail(action: str, resource: str) -> None:
    me = subject(attributes={"zone": "north"})
    assert not engine((ALLOWS, ROOT)).decide(me, action, resource, context()).allowed


@pytest.mark.parametrize(("device_id", "action", "resource"), [
    ("+", SUBSCRIBE, "devices/+/#"),  # would cover every device
    ("#", SUBSCRIBE, "devices/#"),
    ("+", CONNECT, "+"),
    ("a/b", PUBLISH, "devices/a/b/x"),  # would open another namespace
    ("a/b", PUBLISH, "types/sensor/a/b"),
    ("", PUBLISH, "devices//x"),
    ("x\x00", PUBLISH, "names/dev-x"),
], ids=["fail/plus-id", "fail/hash-id", "fail/plus-client", "fail/slash-id",
        "fail/slash-id-last-level", "fail/empty-id", "fail/nul-id"])
def test_injected_device_id_never_widens(device_id: str, action: str, resource: str) -> None:
    pdp = engine((ALLOWS, ROOT))
    assert not pdp.decide(subject(device_id), action, resource, context()).allowed


@pytest.mark.parametrize(("zone", "resource"), [
    ("+", "zones/+/+"),
    ("#", "zones/#"),
    ("a/b", "zones/a/b/c"),
    ("$SYS", "zones/$SYS/x"),
], ids=["fail/plus", "fail/hash", "fail/slash", "fail/dollar"])
def test_injected_attribute_never_widens(zone: str, resource: str) -> None:
    pdp = engine((ALLOWS, ROOT))
    action = SUBSCRIBE if "+" in resource or "#" in resource else PUBLISH
    assert not pdp.decide(subject(attributes={"zone": zone}), action, resource,
                          context()).allowed


def test_missing_values_fail_for_allows() -> None:
    pdp = engine((ALLOWS, ROOT))
    no_site = subject(site=None)
    assert not pdp.decide(no_site, PUBLISH, "sites//orgs/plant1", context()).allowed
    assert not pdp.decide(subject(), PUBLISH, "zones//x", context()).allowed  # no zone


def test_dollar_value_cannot_reach_sys_topics() -> None:
    doc = policy("name: p\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:publish],\n"
                 "     topics: ['${device.attr.root}/x']}\n")
    pdp = engine((doc, ROOT))
    assert pdp.decide(subject(attributes={"root": "plain"}), PUBLISH, "plain/x", context()).allowed
    assert not pdp.decide(subject(attributes={"root": "$SYS"}), PUBLISH, "$SYS/x",
                          context()).allowed


DENY_BY_ZONE = policy("""\
name: zone-guard
version: 1
statements:
  - {sid: all, effect: allow, actions: [mqtt:publish, mqtt:subscribe], topics: ["#"]}
  - {sid: zone-admin, effect: deny, actions: [mqtt:publish, mqtt:subscribe],
     topics: ["zones/${device.attr.zone}/admin"]}
""")


def test_deny_with_value_ok() -> None:
    pdp = engine((DENY_BY_ZONE, ROOT))
    me = subject(attributes={"zone": "north"})
    assert not pdp.decide(me, PUBLISH, "zones/north/admin", context()).allowed
    assert pdp.decide(me, PUBLISH, "zones/south/admin", context()).allowed


@pytest.mark.parametrize("attributes", [{}, {"zone": "a/b"}, {"zone": "+"}, {"zone": ""}],
                         ids=["missing", "slash", "plus", "empty"])
def test_deny_without_safe_value_widens(attributes: dict[str, str]) -> None:
    pdp = engine((DENY_BY_ZONE, ROOT))
    me = subject(attributes=attributes)
    decision = pdp.decide(me, PUBLISH, "zones/anything/admin", context())
    assert isinstance(decision, Deny)
    assert "device.attr.zone has no safe value, level widened" in decision.reason
    assert not pdp.decide(me, SUBSCRIBE, "zones/x/admin", context()).allowed
    assert pdp.decide(me, PUBLISH, "zones/anything/other", context()).allowed


def test_widened_first_level_still_skips_sys_topics() -> None:
    doc = policy("name: p\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:publish], topics: ['$SYS/x', 'a/x']}\n"
                 "  - {effect: deny, actions: [mqtt:publish], topics: ['${device.attr.t}/x']}\n")
    pdp = engine((doc, ROOT))
    assert pdp.decide(subject(), PUBLISH, "$SYS/x", context()).allowed
    assert not pdp.decide(subject(), PUBLISH, "a/x", context()).allowed


def test_template_helpers() -> None:
    template = parse_template("${device.type}-${device.id}", "level")
    assert template.variables == ("device.type", "device.id")
    assert template.render({"device.type": "t", "device.id": "1"}) == "t-1"
    assert template.render({"device.type": "t", "device.id": None}) is None
    assert check_variable("device.attr.fw.version") == "device.attr.fw.version"
    assert [safe_value(v) for v in ("ok", "", "a/b", "+", "#", "$x", "a\x00")] == [
        "ok", None, None, None, None, None, None]


@pytest.mark.parametrize("name", ["device.name", "device.attr.", "device.attr.1x", "iot:ClientId"],
                         ids=lambda v: f"fail/{v}")
def test_unknown_variable_fail(name: str) -> None:
    with pytest.raises(InvalidInput, match="unknown variable"):
        check_variable(name)
