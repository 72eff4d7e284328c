"""Structural diff between two versions of a policy."""

from __future__ import annotations

import pytest

from iotiam.errors import InvalidInput
from iotiam.policy.diff import ChangeKind, diff_policies
from policy.fakes import policy

V1 = policy("""\
name: p
version: 1
statements:
  - sid: own
    effect: allow
    actions: [mqtt:publish, mqtt:subscribe]
    topics: ["devices/${device.id}/#"]
    conditions: {min_trust_score: 50, device_state: [active]}
  - {sid: gone, effect: deny, actions: [mqtt:publish], topics: [x]}
  - {effect: allow, actions: [mqtt:connect], clients: ["${device.id}"]}
  - {effect: allow, actions: ["http:GET"], paths: ["/a"]}
""")
V2 = policy("""\
name: p
version: 2
description: tightened
guardrail: true
statements:
  - {effect: allow, actions: ["http:GET"], paths: ["/a"]}
  - sid: own
    effect: allow
    actions: [mqtt:publish, mqtt:receive]
    topics: ["devices/${device.id}/#", "shared/+"]
    conditions: {min_trust_score: 70, device_state: [active, pending], firmware_compliant: true}
  - {effect: allow, actions: [mqtt:connect], clients: ["${device.id}", "spare"]}
  - {sid: new, effect: deny, actions: [mqtt:subscribe], topics: [y]}
""")


def test_diff_ok() -> None:
    diff = diff_policies(V1, V2)
    assert (diff.name, diff.from_version, diff.to_version) == ("p", 1, 2)
    assert diff.lines() == [
        "~ description: '' -> 'tightened'",
        "~ guardrail: False -> True",
        "- statement own: actions: 'mqtt:subscribe'",
        "+ statement own: actions: 'mqtt:receive'",
        "+ statement own: topics: 'shared/+'",
        "~ statement own: conditions.min_trust_score: 50.0 -> 70.0",
        "+ statement own: conditions.device_state: 'pending'",
        "+ statement own: conditions.firmware_compliant: True",
        "- statement gone: {'sid': 'gone', 'effect': 'deny', 'actions': ['mqtt:publish'], "
        "'topics': ['x']}",
        "+ statement new: {'sid': 'new', 'effect': 'deny', 'actions': ['mqtt:subscribe'], "
        "'topics': ['y']}",
        "+ statement 3: clients: 'spare'",
    ]
    kinds = {c.kind for c in diff.changes}
    assert kinds == {ChangeKind.ADDED, ChangeKind.REMOVED, ChangeKind.CHANGED}
    assert diff.changes[0].to_dict() == {"path": "description", "kind": "changed", "old": "",
                                         "new": "tightened"}


def test_diff_ok_moved_statement_is_not_a_change() -> None:
    moved = policy("""\
name: p
version: 2
statements:
  - {effect: allow, actions: ["http:GET"], paths: ["/a"]}
  - {effect: allow, actions: [mqtt:connect], clients: ["${device.id}"]}
  - sid: own
    effect: allow
    actions: [mqtt:publish, mqtt:subscribe]
    topics: ["devices/${device.id}/#"]
    conditions: {min_trust_score: 50, device_state: [active]}
  - {sid: gone, effect: deny, actions: [mqtt:publish], topics: [x]}
""")
    assert diff_policies(V1, moved).empty


def test_diff_fail_other_policy() -> None:
    other = policy("name: q\nversion: 1\nstatements: [{effect: deny, actions: ['*']}]\n")
    with pytest.raises(InvalidInput, match="cannot diff policy 'p' against policy 'q'"):
        diff_policies(V1, other)
