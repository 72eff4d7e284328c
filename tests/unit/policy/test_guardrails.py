"""Guardrails refuse, at write time, child allows overlapping a parent's deny; delegation
keeps admins inside their scope."""

from __future__ import annotations

import re

import pytest

from iotiam.errors import Forbidden
from iotiam.kernel import Principal, Role
from iotiam.policy.actions import ResourceKind
from iotiam.policy.guardrails import (
    Guardrail,
    check_delegation,
    check_guardrails,
    guardrail_conflicts,
    patterns_overlap,
)
from iotiam.policy.models import Attachment, GuardrailViolation, PolicyDocument
from iotiam.policy.patterns import check_pattern
from policy.fakes import ACME, BETA, PLANT, policy

ACME_GUARD = policy("""\
name: acme-guard
version: 4
guardrail: true
statements:
  - sid: no-secrets
    effect: deny
    actions: [mqtt:publish]
    topics: ["plants/+/secrets/#"]
  - sid: low-trust
    effect: deny
    actions: [mqtt:subscribe]
    topics: ["alarms/#"]
    conditions: {trust_score_below: 30}
""")


def _guard(document: PolicyDocument = ACME_GUARD, unit: str = "acme") -> Guardrail:
    target = {"acme": ACME, "beta": BETA, "plant1": PLANT}[unit]
    scope = {"acme": "/root/acme/", "beta": "/root/beta/", "plant1": "/root/acme/plant1/"}[unit]
    return Guardrail(document, Attachment(document.name, target, scope))


def _child(statement: str) -> PolicyDocument:
    return policy(f"name: child\nversion: 1\nstatements:\n  - {statement}\n")


def test_guardrail_refuses_overlapping_allow() -> None:
    child = _child("{sid: all-plant, effect: allow, actions: [mqtt:publish], "
                   "topics: ['plants/plant1/#']}")
    with pytest.raises(GuardrailViolation) as caught:
        check_guardrails(child, ["/root/acme/plant1/"], [_guard()])
    error = caught.value
    assert isinstance(error, Forbidden)
    assert error.detail == (
        "statement all-plant would allow mqtt:publish on 'plants/plant1/#' (denied there: "
        "'plants/+/secrets/#'), which policy 'acme-guard' v4 statement 'no-secrets' via "
        "org-unit acme (guardrail at /root/acme/) denies")
    assert error.conflicts[0].guardrail.statement == "no-secrets"


@pytest.mark.parametrize("statement", [
    "{effect: allow, actions: [mqtt:publish], topics: ['plants/plant1/telemetry/#']}",
    "{effect: allow, actions: [mqtt:publish], topics: ['plants/plant1']}",
    "{effect: allow, actions: [mqtt:receive], topics: ['plants/plant1/secrets/#']}",
    "{effect: allow, actions: [mqtt:subscribe], topics: ['alerts/#']}",
    "{effect: deny, actions: [mqtt:publish], topics: ['plants/#']}",
    "{effect: allow, actions: [mqtt:connect], clients: ['${device.id}']}",
], ids=["ok/narrower-topic", "ok/parent-level", "ok/other-action", "ok/other-topic",
        "ok/deny-is-fine", "ok/other-kind"])
def test_guardrail_allows_non_overlapping_child(statement: str) -> None:
    assert guardrail_conflicts(_child(statement), ["/root/acme/plant1/"], [_guard()]) == []


@pytest.mark.parametrize("statement", [
    "{effect: allow, actions: ['mqtt:*'], topics: ['plants/plant1/#']}",
    "{effect: allow, actions: ['*']}",
    "{effect: allow, actions: [mqtt:publish], topics: ['+/+/secrets/key']}",
    "{effect: allow, actions: [mqtt:publish], topics: ['plants/${device.site}/secrets']}",
    "{effect: allow, actions: [mqtt:publish], topics: ['#']}",
    "{effect: allow, actions: [mqtt:subscribe], topics: ['alarms/fire'],"
    " conditions: {min_trust_score: 90}}",
], ids=["fail/action-wildcard", "fail/unrestricted", "fail/wildcards",
        "fail/variable-level", "fail/everything", "fail/conditions-ignored"])
def test_guardrail_refuses(statement: str) -> None:
    assert guardrail_conflicts(_child(statement), ["/root/acme/plant1/"], [_guard()])


def test_guardrail_reaches_only_its_subtree() -> None:
    child = _child("{effect: allow, actions: [mqtt:publish], topics: ['plants/b1/#']}")
    assert guardrail_conflicts(child, ["/root/beta/"], [_guard()]) == []
    assert guardrail_conflicts(child, ["/root/acme/"], [_guard()])  # at its own unit too
    # a guardrail below the write does not bind it
    assert guardrail_conflicts(child, ["/root/acme/"], [_guard(unit="plant1")]) == []


def test_only_guardrail_policies_bind_writes() -> None:
    plain = policy(ACME_GUARD_TEXT.replace("guardrail: true\n", ""))
    child = _child("{effect: allow, actions: [mqtt:publish], topics: ['plants/#']}")
    assert guardrail_conflicts(child, ["/root/acme/plant1/"], [_guard(plain)]) == []


ACME_GUARD_TEXT = """\
name: acme-guard
version: 4
guardrail: true
statements:
  - {sid: no-secrets, effect: deny, actions: [mqtt:publish], topics: ["plants/+/secrets/#"]}
"""


@pytest.mark.parametrize(("kind", "a", "b", "expected"), [
    (ResourceKind.TOPIC, "devices/${device.id}/admin/#", "devices/${device.id}/#", True),
    (ResourceKind.TOPIC, "devices/${device.id}/admin/#", "devices/${device.id}/telemetry", False),
    (ResourceKind.TOPIC, "cam-${device.id}/x", "dev-7/x", False),
    (ResourceKind.TOPIC, "cam-${device.id}/x", "cam-7/x", True),
    (ResourceKind.TOPIC, "${device.type}/x", "${device.id}/x", True),
    (ResourceKind.TOPIC, "#", "$SYS/broker", False),
    (ResourceKind.TOPIC, "+/#", "$SYS/#", False),
    (ResourceKind.TOPIC, "$SYS/#", "$SYS/+", True),
    (ResourceKind.TOPIC, "a/+", "a", False),
    (ResourceKind.CLIENT, "*", "${device.id}", True),
    (ResourceKind.CLIENT, "gw-${device.id}", "sensor-1", False),
    (ResourceKind.CLIENT, "fixed", "fixed", True),
    (ResourceKind.PATH, "/v1/devices/+/keys", "/v1/#", True),
    (ResourceKind.PATH, "/v1/devices/+/keys", "/v2/#", False),
], ids=lambda v: str(v))
def test_patterns_overlap(kind: ResourceKind, a: str, b: str, expected: bool) -> None:
    pa, pb = check_pattern(kind, a), check_pattern(kind, b)
    assert patterns_overlap(pa, pb) is expected
    assert patterns_overlap(pb, pa) is expected


TENANT = Principal("acme-admin", Role.ADMIN, "acme", "/root/acme/")
SITE = Principal("plant-admin", Role.ADMIN, "plant1", "/root/acme/plant1/")


def test_delegation_ok() -> None:
    check_delegation(TENANT, owner_path="/root/acme/", targets=[(PLANT, "/root/acme/plant1/")])
    check_delegation(TENANT, owner_path="/root/acme/plant1/", targets=[])
    # an existing root-owned policy may be attached, not edited, inside the own scope
    check_delegation(SITE, owner_path="/root/", targets=[(PLANT, "/root/acme/plant1/")],
                     editing=False)


@pytest.mark.parametrize(("actor", "owner", "targets", "editing", "message"), [
    (TENANT, "/root/beta/", [], True, "belongs to /root/beta/, outside your scope /root/acme/"),
    (SITE, "/root/acme/", [], True, "belongs to /root/acme/, outside your scope"),
    (TENANT, "/root/acme/", [(BETA, "/root/beta/")], True,
     "org-unit beta (at /root/beta/) is outside your scope /root/acme/"),
    (SITE, "/root/", [(ACME, "/root/acme/")], False, "is outside your scope"),
    (TENANT, "/root/acme/plant1/", [(ACME, "/root/acme/")], True,
     "a policy owned by /root/acme/plant1/ cannot be attached to org-unit acme"),
], ids=["fail/other-tenant-owner", "fail/parent-owner", "fail/other-tenant-target",
        "fail/above-own-scope", "fail/outside-owner-subtree"])
def test_delegation_fail(actor: Principal, owner: str, targets: list, editing: bool,
                         message: str) -> None:
    with pytest.raises(Forbidden, match=re.escape(message)):
        check_delegation(actor, owner_path=owner, targets=targets, editing=editing)
