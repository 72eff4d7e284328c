"""The decision point: default deny, deny wins, parents bound children, subscribe rules."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from iotiam.errors import InvalidInput
from iotiam.inventory.models import DeviceState
from iotiam.policy.actions import CONNECT, ENROLL, PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY, QUARANTINE_POLICY
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    Deny,
    Effect,
    Permit,
    TargetKind,
)
from policy.fakes import ACME, PLANT, ROOT, context, engine, policy, subject

CHILD_ALLOW = policy("""\
name: plant-telemetry
version: 2
statements:
  - sid: telemetry
    effect: allow
    actions: [mqtt:publish]
    topics: ["plants/plant1/#"]
""")
PARENT_DENY = policy("""\
name: acme-guard
version: 1
statements:
  - sid: no-secrets
    effect: deny
    actions: [mqtt:publish]
    topics: ["plants/+/secrets/#"]
""")


@pytest.mark.parametrize(("action", "resource"), [
    (PUBLISH, "devices/d1/telemetry"),
    (PUBLISH, "devices/d1"),
    (RECEIVE, "devices/d1/cmd/set"),
    (SUBSCRIBE, "devices/d1/#"),
    (SUBSCRIBE, "devices/d1/+/set"),
    (SUBSCRIBE, "$share/workers/devices/d1/jobs"),
    (CONNECT, "d1"),
], ids=lambda v: v)
def test_default_device_policy_ok(action: str, resource: str) -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    decision = pdp.decide(subject(), action, resource, context())
    assert isinstance(decision, Permit), decision
    assert decision.allowed
    assert decision.matched[0].policy == "iotiam-default-device"
    assert decision.matched[0].target == ROOT


@pytest.mark.parametrize(("action", "resource"), [
    (PUBLISH, "devices/d2/telemetry"),
    (PUBLISH, "devices"),
    (PUBLISH, "devices/d1x/telemetry"),
    (RECEIVE, "devices/d2/cmd"),
    (SUBSCRIBE, "devices/+/telemetry"),
    (SUBSCRIBE, "devices/#"),
    (SUBSCRIBE, "#"),
    (CONNECT, "d2"),
    (ENROLL, "d1"),
    ("http:GET", "/v1/devices/d1"),
], ids=lambda v: v)
def test_default_device_policy_fail_default_deny(action: str, resource: str) -> None:
    decision = engine((DEFAULT_DEVICE_POLICY, ROOT)).decide(subject(), action, resource,
                                                            context())
    assert isinstance(decision, Deny)
    assert decision.reason.startswith("no policy allows")
    assert decision.matched == ()


def test_no_policy_at_all_fail_default_deny() -> None:
    decision = PolicyEngine([], []).decide(subject(), PUBLISH, "a", context())
    assert decision == Deny("no policy allows mqtt:publish on 'a'")


def test_parent_deny_wins_over_child_allow() -> None:
    pdp = engine((CHILD_ALLOW, PLANT), (PARENT_DENY, ACME))
    ok = pdp.decide(subject(), PUBLISH, "plants/plant1/line/temp", context())
    assert isinstance(ok, Permit)
    assert [str(r) for r in ok.matched] == [
        "policy 'plant-telemetry' v2 statement 'telemetry' via org-unit plant1"]
    refused = pdp.decide(subject(), PUBLISH, "plants/plant1/secrets/key", context())
    assert refused == Deny("denied by policy 'acme-guard' v1 statement 'no-secrets' via "
                           "org-unit acme", refused.matched)
    assert refused.matched[0].effect is Effect.DENY


def test_deny_wins_in_the_same_policy_and_lists_every_allow() -> None:
    doc = policy("""\
name: mixed
version: 1
statements:
  - {sid: wide, effect: allow, actions: [mqtt:publish], topics: ["a/#"]}
  - {sid: narrow, effect: allow, actions: ["mqtt:*"], topics: ["a/b/+"]}
  - {sid: hole, effect: deny, actions: [mqtt:publish], topics: ["a/b/secret"]}
""")
    pdp = engine((doc, ROOT))
    permit = pdp.decide(subject(), PUBLISH, "a/b/c", context())
    assert isinstance(permit, Permit)
    assert [r.statement for r in permit.matched] == ["wide", "narrow"]
    assert "statement 'hole'" in pdp.decide(subject(), PUBLISH, "a/b/secret", context()).reason


def test_attachments_reach_only_their_scope() -> None:
    doc = policy("name: beta-only\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:publish], topics: [x]}\n")
    typed = AttachmentTarget(TargetKind.DEVICE_TYPE, "sensor")
    pdp = PolicyEngine([doc], [Attachment("beta-only", typed, "/root/beta/")])
    assert not pdp.decide(subject(org="plant1"), PUBLISH, "x", context()).allowed
    assert pdp.decide(subject(org="beta"), PUBLISH, "x", context()).allowed
    assert not pdp.decide(subject(org="beta", type_name="gateway"), PUBLISH, "x",
                          context()).allowed


def test_group_and_device_attachments_ok() -> None:
    group_doc = policy("name: g\nversion: 1\nstatements:\n"
                       "  - {effect: allow, actions: [mqtt:subscribe], topics: [lines/1/#]}\n")
    device_doc = policy("name: dev\nversion: 1\nstatements:\n"
                        "  - {effect: allow, actions: [mqtt:publish], topics: [special]}\n")
    pdp = PolicyEngine([group_doc, device_doc], [
        Attachment("g", AttachmentTarget(TargetKind.GROUP, "line-1"), "/root/acme/"),
        Attachment("dev", AttachmentTarget(TargetKind.DEVICE, "d1"), "/root/acme/plant1/"),
    ])
    member = subject(groups=frozenset({"line-1"}))
    assert pdp.decide(member, SUBSCRIBE, "lines/1/+", context()).allowed
    assert not pdp.decide(subject(), SUBSCRIBE, "lines/1/+", context()).allowed
    assert pdp.decide(subject("d1"), PUBLISH, "special", context()).allowed
    assert not pdp.decide(subject("d2"), PUBLISH, "special", context()).allowed


SUBSCRIBE_POLICY = policy("""\
name: sub
version: 1
statements:
  - {effect: allow, actions: [mqtt:subscribe], topics: ["fleet/+/status", "jobs/#"]}
  - {sid: no-internal, effect: deny, actions: [mqtt:subscribe], topics: ["jobs/internal/#"]}
""")


@pytest.mark.parametrize(("topic_filter", "allowed"), [
    ("fleet/x/status", True),
    ("fleet/+/status", True),
    ("fleet/#", False),  # wider than any allowed filter
    ("fleet/+/+", False),
    ("jobs/a/b", True),
    ("jobs/#", False),  # covered, but overlaps the denied jobs/internal/#
    ("jobs/+/x", False),  # overlaps jobs/internal/x
    ("jobs/public/#", True),
    ("jobs/internal", False),
    ("#", False),
    ("$share/g/jobs/public/x", True),
], ids=lambda v: str(v))
def test_subscribe_is_subsumption_and_deny_overlap(topic_filter: str, allowed: bool) -> None:
    pdp = engine((SUBSCRIBE_POLICY, ROOT))
    assert pdp.decide(subject(), SUBSCRIBE, topic_filter, context()).allowed is allowed


def test_subscribe_deny_overlap_reason() -> None:
    decision = engine((SUBSCRIBE_POLICY, ROOT)).decide(subject(), SUBSCRIBE, "jobs/#", context())
    assert "statement 'no-internal'" in decision.reason
    assert "the filter overlaps a denied one" in decision.reason


def test_unrestricted_deny_covers_sys_topics() -> None:
    doc = policy("name: lock\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:subscribe, mqtt:receive], "
                 "topics: ['$SYS/#']}\n"
                 "  - {effect: deny, actions: [mqtt:receive]}\n")
    pdp = engine((doc, ROOT))
    assert not pdp.decide(subject(), RECEIVE, "$SYS/broker/load", context()).allowed
    assert pdp.decide(subject(), SUBSCRIBE, "$SYS/broker/load", context()).allowed


def test_wildcard_policies_do_not_reach_sys_topics() -> None:
    doc = policy("name: wide\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:publish, mqtt:subscribe], topics: ['#']}\n")
    pdp = engine((doc, ROOT))
    assert pdp.decide(subject(), PUBLISH, "a/b", context()).allowed
    assert not pdp.decide(subject(), PUBLISH, "$SYS/broker", context()).allowed
    assert not pdp.decide(subject(), SUBSCRIBE, "$SYS/#", context()).allowed


def test_http_paths_ok() -> None:
    doc = policy("name: api\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: ['http:GET'],\n"
                 "     paths: ['/v1/devices/${device.id}/#']}\n"
                 "  - {effect: deny, actions: ['http:*'], paths: ['/v1/devices/+/keys']}\n")
    pdp = engine((doc, ROOT))
    assert pdp.decide(subject(), "http:GET", "/v1/devices/d1/status", context()).allowed
    assert pdp.decide(subject(), "http:GET", "/v1/devices/d1", context()).allowed
    assert not pdp.decide(subject(), "http:GET", "/v1/devices/d1/keys", context()).allowed
    assert not pdp.decide(subject(), "http:GET", "/v1/devices/d2/status", context()).allowed
    assert not pdp.decide(subject(), "http:POST", "/v1/devices/d1/status", context()).allowed


def test_quarantined_device_keeps_only_quarantine_policy() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (PARENT_DENY, ACME))
    quarantined = subject(state=DeviceState.QUARANTINED)
    assert not pdp.decide(quarantined, PUBLISH, "devices/d1/telemetry", context()).allowed
    assert pdp.decide(quarantined, PUBLISH, "quarantine/d1/report", context()).allowed
    assert pdp.decide(quarantined, SUBSCRIBE, "firmware/sensor/#", context()).allowed
    assert pdp.decide(quarantined, RECEIVE, "firmware/sensor/v2/blob", context()).allowed
    assert not pdp.decide(quarantined, PUBLISH, "firmware/sensor/v2", context()).allowed
    assert not pdp.decide(quarantined, SUBSCRIBE, "firmware/gateway/#", context()).allowed
    assert pdp.decide(quarantined, CONNECT, "d1", context()).allowed
    decision = pdp.decide(quarantined, PUBLISH, "quarantine/d1/x", context())
    assert isinstance(decision, Permit)
    assert decision.matched[0].policy == QUARANTINE_POLICY.name


def test_quarantine_keeps_denies() -> None:
    guard = policy("name: g\nversion: 1\nstatements:\n"
                   "  - {effect: deny, actions: [mqtt:receive], topics: ['firmware/+/beta/#']}\n")
    pdp = engine((guard, ROOT))
    quarantined = subject(state=DeviceState.QUARANTINED)
    assert not pdp.decide(quarantined, RECEIVE, "firmware/sensor/beta/x", context()).allowed


@pytest.mark.parametrize("state", [DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED])
def test_blocked_states_fail(state: DeviceState) -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    decision = pdp.decide(subject(state=state), CONNECT, "d1", context())
    assert decision == Deny(f"device 'd1' is {state}")


def test_changed_subject_gets_a_fresh_view() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    active = subject()
    assert pdp.decide(active, CONNECT, "d1", context()).allowed
    assert not pdp.decide(subject(state=DeviceState.SUSPENDED), CONNECT, "d1",
                          context()).allowed
    newer = PolicyEngine([], [])
    assert not newer.decide(active, CONNECT, "d1", context()).allowed  # not the old view


@pytest.mark.parametrize(("action", "resource", "message"), [
    ("mqtt:pub", "a", "action 'mqtt:pub' is unknown"),
    ("mqtt:*", "a", r"action 'mqtt:\*' is unknown"),
    (PUBLISH, "a/+", "wildcard"),
    (PUBLISH, "#", "wildcard"),
    (PUBLISH, "", "empty"),
    (PUBLISH, "a\x00", "NUL"),
    (PUBLISH, "x" * 65536, "longer than 65535"),
    (PUBLISH, "\ud800", "not valid UTF-8"),
    (SUBSCRIBE, "a/#/b", "'#' must be a whole level"),
    (CONNECT, "", "non-empty"),
    ("http:GET", "v1", "must start with '/'"),
], ids=lambda v: str(v)[:20])
def test_bad_requests_fail(action: str, resource: str, message: str) -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    with pytest.raises(InvalidInput, match=message):
        pdp.decide(subject(), action, resource, context())


def test_bad_request_fail_without_any_rule_for_the_action() -> None:
    with pytest.raises(InvalidInput, match="wildcard"):
        PolicyEngine([], []).decide(subject(), RECEIVE, "a/#", context())


def test_statement_matching_through_two_patterns_is_listed_once() -> None:
    doc = policy("name: twice\nversion: 1\nstatements:\n"
                 "  - {sid: s, effect: allow, actions: ['mqtt:*', mqtt:publish],"
                 " topics: ['a/#', 'a/+']}\n")
    decision = engine((doc, ROOT)).decide(subject(), PUBLISH, "a/b", context())
    assert isinstance(decision, Permit)
    assert [r.statement for r in decision.matched] == ["s"]


def test_subject_memo_stays_private() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    me = subject(attributes={"zone": "n"})
    assert pdp.decide(me, CONNECT, "d1", context()).allowed
    assert "memo" not in repr(me)
    assert set(dataclasses.asdict(me)) == {"device_id", "type_name", "org_unit_id", "org_path",
                                           "state", "site", "attributes", "groups",
                                           "trust_score", "firmware_compliant",
                                           "credentialed"}
    again = pickle.loads(pickle.dumps(me))
    assert again == me
    assert pdp.decide(again, CONNECT, "d1", context()).allowed
    assert pdp.decide(copy.copy(me), CONNECT, "d1", context()).allowed
