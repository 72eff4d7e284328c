"""Compiling a device's effective policy into Mosquitto dynamic-security ACL entries."""

from __future__ import annotations

from datetime import UTC, datetime

from iotiam.inventory.models import DeviceState
from iotiam.policy.broker_acl import (
    ALLOW_PRIORITY,
    DENY_PRIORITY,
    FALLBACK_PRIORITY,
    AclEntry,
    AclType,
    compile_broker_acl,
)
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from policy.fakes import ACME, ROOT, context, engine, policy, subject

SEND, RECV = AclType.PUBLISH_CLIENT_SEND, AclType.PUBLISH_CLIENT_RECEIVE
SUBSCRIBE_KINDS = (AclType.SUBSCRIBE_PATTERN, SEND, RECV)
LITERAL, PATTERN = AclType.SUBSCRIBE_LITERAL, AclType.SUBSCRIBE_PATTERN


def _entries(acl_entries: tuple[AclEntry, ...]) -> set[tuple[int, AclType, str, bool]]:
    return {(e.priority, e.acltype, e.topic, e.allow) for e in acl_entries}


def _fallback() -> set[tuple[int, AclType, str, bool]]:
    return {(FALLBACK_PRIORITY, t, "#", False) for t in SUBSCRIBE_KINDS}


def test_default_policy_ok() -> None:
    acl = compile_broker_acl(engine((DEFAULT_DEVICE_POLICY, ROOT)), subject(), context())
    assert acl.can_connect and acl.reason == ""
    assert acl.valid_until is None
    assert _entries(acl.entries) == {
        (ALLOW_PRIORITY, SEND, "devices/d1/#", True),
        (ALLOW_PRIORITY, PATTERN, "devices/d1/#", True),
        (ALLOW_PRIORITY, RECV, "devices/d1/#", True),
    } | _fallback()
    assert [e.priority for e in acl.entries] == sorted((e.priority for e in acl.entries),
                                                       reverse=True)
    assert {"acltype": "publishClientSend", "topic": "devices/d1/#",
            "priority": ALLOW_PRIORITY, "allow": True} in acl.to_dynsec()


def test_denies_come_first_and_back_subscribe_denies_with_receive() -> None:
    doc = policy("""\
name: p
version: 1
statements:
  - {effect: allow, actions: [mqtt:subscribe], topics: ["status/${device.id}", "news"]}
  - {effect: deny, actions: [mqtt:subscribe], topics: ["status/+"]}
  - {effect: deny, actions: [mqtt:publish], topics: ["devices/+/admin/#"]}
""")
    acl = compile_broker_acl(engine((DEFAULT_DEVICE_POLICY, ROOT), (doc, ACME)), subject(),
                             context())
    entries = _entries(acl.entries)
    assert (DENY_PRIORITY, SEND, "devices/+/admin/#", False) in entries
    assert (DENY_PRIORITY, PATTERN, "status/+", False) in entries
    assert (DENY_PRIORITY, RECV, "status/+", False) in entries
    # a literal allow would be found before any pattern deny: it becomes a pattern
    assert (ALLOW_PRIORITY, PATTERN, "status/d1", True) in entries
    assert (ALLOW_PRIORITY, LITERAL, "news", True) in entries
    assert acl.entries[0].priority == DENY_PRIORITY


MAINTENANCE = policy("""\
name: maintenance
version: 1
statements:
  - effect: allow
    actions: [mqtt:publish]
    topics: ["maintenance/${device.id}/#"]
    conditions: {time_window: {days: [mon-fri], start: '08:00', end: '18:00'}}
""")


def test_time_window_settled_at_sync_with_next_change() -> None:
    pdp = engine((MAINTENANCE, ROOT))
    during = compile_broker_acl(pdp, subject(), context(datetime(2026, 1, 7, 12, tzinfo=UTC)))
    assert (ALLOW_PRIORITY, SEND, "maintenance/d1/#", True) in _entries(during.entries)
    assert during.valid_until == datetime(2026, 1, 7, 17, tzinfo=UTC)  # 18:00 CET
    after = compile_broker_acl(pdp, subject(), context(datetime(2026, 1, 7, 18, tzinfo=UTC)))
    assert _entries(after.entries) == _fallback()
    assert after.valid_until == datetime(2026, 1, 8, 7, tzinfo=UTC)
    assert not after.can_connect  # nothing allows mqtt:connect
    assert "no policy allows mqtt:connect on 'd1'" in after.reason


def test_unknown_conditions_fail_closed_at_sync() -> None:
    doc = policy("""\
name: trust
version: 1
statements:
  - {effect: allow, actions: [mqtt:publish], topics: [a], conditions: {min_trust_score: 50}}
  - {effect: allow, actions: [mqtt:publish], topics: [b]}
  - {effect: deny, actions: [mqtt:publish], topics: [b/secret], conditions: {trust_score_below: 20}}
""")
    acl = compile_broker_acl(engine((doc, ROOT)), subject(), context(trust=None))
    entries = _entries(acl.entries)
    assert (ALLOW_PRIORITY, SEND, "a", True) not in entries
    assert (ALLOW_PRIORITY, SEND, "b", True) in entries
    assert (DENY_PRIORITY, SEND, "b/secret", False) in entries
    trusted = _entries(compile_broker_acl(engine((doc, ROOT)), subject(), context()).entries)
    assert (ALLOW_PRIORITY, SEND, "a", True) in trusted
    assert (DENY_PRIORITY, SEND, "b/secret", False) not in trusted


def test_broker_pattern_levels_never_widen() -> None:
    doc = policy("""\
name: pct
version: 1
statements:
  - {effect: allow, actions: [mqtt:publish], topics: ["x/${device.attr.a}", "y/%c"]}
  - {effect: deny, actions: [mqtt:publish], topics: ["z/%u/admin"]}
""")
    acl = compile_broker_acl(engine((doc, ROOT)), subject(attributes={"a": "%u"}), context())
    assert _entries(acl.entries) == {(DENY_PRIORITY, SEND, "z/+/admin", False)} | _fallback()


def test_unsafe_variable_in_deny_is_widened() -> None:
    doc = policy("name: w\nversion: 1\nstatements:\n"
                 "  - {effect: deny, actions: [mqtt:receive],\n"
                 "     topics: ['zones/${device.attr.z}/#']}\n")
    acl = compile_broker_acl(engine((doc, ROOT)), subject(), context())
    assert (DENY_PRIORITY, RECV, "zones/+/#", False) in _entries(acl.entries)


def test_unrestricted_deny_takes_the_whole_action() -> None:
    doc = policy("name: u\nversion: 1\nstatements:\n"
                 "  - {effect: allow, actions: [mqtt:receive], topics: ['$SYS/#', 'a']}\n"
                 "  - {effect: deny, actions: [mqtt:receive]}\n")
    acl = compile_broker_acl(engine((doc, ROOT)), subject(), context())
    assert _entries(acl.entries) == {(DENY_PRIORITY, RECV, "#", False)} | _fallback()


def test_blocked_and_quarantined_devices() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    blocked = compile_broker_acl(pdp, subject(state=DeviceState.SUSPENDED), context())
    assert (blocked.can_connect, blocked.entries, blocked.reason) == (
        False, (), "device 'd1' is suspended")
    quarantined = compile_broker_acl(pdp, subject(state=DeviceState.QUARANTINED), context())
    assert quarantined.can_connect
    assert _entries(quarantined.entries) == {
        (ALLOW_PRIORITY, SEND, "quarantine/d1/#", True),
        (ALLOW_PRIORITY, PATTERN, "quarantine/d1/#", True),
        (ALLOW_PRIORITY, RECV, "quarantine/d1/#", True),
        (ALLOW_PRIORITY, PATTERN, "firmware/sensor/#", True),
        (ALLOW_PRIORITY, RECV, "firmware/sensor/#", True),
    } | _fallback()


def test_reserved_broker_names_never_get_entries() -> None:
    doc = policy("name: all\nversion: 1\nstatements:\n  - {effect: allow, actions: ['*']}\n")
    acl = compile_broker_acl(engine((doc, ROOT)), subject("Admin"), context())
    assert (acl.can_connect, acl.entries) == (False, ())
    assert acl.reason == "device id 'Admin' is a reserved broker user name"
