"""A gateway's broker ACL: its own topics and exactly its children's, nothing more; and
which dynsec role carries them."""

from __future__ import annotations

from policy.fakes import ROOT, context, engine, policy, subject

from iotiam.broker.roles import split_rights
from iotiam.inventory.models import DeviceState
from iotiam.policy.broker_acl import (
    ALLOW_PRIORITY,
    RESERVED_ALLOW,
    RESERVED_DENY,
    AclEntry,
    AclType,
    compile_broker_acl,
    with_children,
    with_reports,
)
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.models import AttachmentTarget, TargetKind

SEND = AclType.PUBLISH_CLIENT_SEND
TYPE_TAG = AttachmentTarget(TargetKind.DEVICE_TYPE, "tag")
TAG_DENY = policy("""\
name: tags
version: 1
statements:
  - {effect: deny, actions: [mqtt:publish], topics: ["devices/+/firmware/#"]}
""")


def allowed_sends(entries: tuple[AclEntry, ...]) -> set[str]:
    return {e.topic for e in entries if e.acltype is SEND and e.allow}


def test_gateway_gets_children_topics_ok() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    gateway = compile_broker_acl(pdp, subject("gw-1"), context())
    children = [compile_broker_acl(pdp, subject(c), context()) for c in ("tag-1", "tag-2")]
    merged = with_children(gateway, children)
    assert allowed_sends(merged.entries) == {"devices/gw-1/#", "devices/tag-1/#",
                                             "devices/tag-2/#"}
    assert merged.speaks_for == ("tag-1", "tag-2")
    assert merged.can_connect
    # the children's topics ride in the gateway's own dynsec role, never in a class
    rights = split_rights("gw-1", frozenset((str(e.acltype), e.topic, e.priority, e.allow)
                                            for e in merged.entries), merged.speaks_for)
    assert {topic for _, topic, _, _ in rights.own} == {"devices/gw-1/#", "devices/tag-1/#",
                                                        "devices/tag-2/#"}


def test_gateway_fail_child_that_may_not_connect() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    gateway = compile_broker_acl(pdp, subject("gw-1"), context())
    suspended = compile_broker_acl(pdp, subject("tag-1", state=DeviceState.SUSPENDED),
                                   context())
    merged = with_children(gateway, [suspended])
    assert allowed_sends(merged.entries) == {"devices/gw-1/#"}
    assert merged.speaks_for == ()


def test_gateway_fail_revoked_gateway_gets_nothing() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    gateway = compile_broker_acl(pdp, subject("gw-1", state=DeviceState.SUSPENDED), context())
    merged = with_children(gateway, [compile_broker_acl(pdp, subject("tag-1"), context())])
    assert not merged.can_connect and merged.entries == ()


def test_gateway_carries_child_denies_fail_closed() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (TAG_DENY, TYPE_TAG))
    gateway = compile_broker_acl(pdp, subject("gw-1", type_name="gateway"), context())
    child = compile_broker_acl(pdp, subject("tag-1", type_name="tag"), context())
    assert any(e.topic == "devices/+/firmware/#" and not e.allow for e in child.entries)
    merged = with_children(gateway, [child])
    # what the child may not publish, its gateway may not publish for it either
    denied = {e.topic for e in merged.entries if e.acltype is SEND and not e.allow}
    assert "devices/+/firmware/#" in denied


EVERYTHING = policy("""\
name: everything
version: 1
statements:
  - {effect: allow, actions: [mqtt:publish, mqtt:subscribe, mqtt:receive], topics: ["#"]}
""")
RESERVED = {(AclType.PUBLISH_CLIENT_SEND, "gateways/#"),
            (AclType.SUBSCRIBE_PATTERN, "gateways/#"),
            (AclType.PUBLISH_CLIENT_RECEIVE, "gateways/#")}


def reserved_denies(entries: tuple[AclEntry, ...]) -> set[tuple[AclType, str]]:
    return {(e.acltype, e.topic) for e in entries
            if not e.allow and e.priority == RESERVED_DENY}


def test_reports_namespace_ok_gateway_reports_on_its_own_topics() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    gateway = with_reports(compile_broker_acl(pdp, subject("gw-1"), context()), gateway=True)
    own = {(e.acltype, e.topic) for e in gateway.entries
           if e.allow and e.priority == RESERVED_ALLOW}
    assert own == {(SEND, "gateways/gw-1/reports/+"),
                   (AclType.SUBSCRIBE_PATTERN, "gateways/gw-1/answers"),
                   (AclType.PUBLISH_CLIENT_RECEIVE, "gateways/gw-1/answers")}
    # its policies reach nothing there: no deny needed, the fallback denies the rest
    assert reserved_denies(gateway.entries) == set()
    # every entry in the namespace rides in the device's own role
    rights = split_rights("gw-1", frozenset((e.acltype.value, e.topic, e.priority, e.allow)
                                            for e in gateway.entries))
    assert {a[1] for a in rights.own if a[1].startswith("gateways/")} == {
        "gateways/gw-1/reports/+", "gateways/gw-1/answers"}


def test_reports_namespace_ok_closed_to_a_policy_granting_everything() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (EVERYTHING, ROOT))
    device = with_reports(compile_broker_acl(pdp, subject("d1"), context()), gateway=False)
    assert reserved_denies(device.entries) == RESERVED
    assert "#" in allowed_sends(device.entries)  # what the policy grants elsewhere stays
    rights = split_rights("d1", frozenset((e.acltype.value, e.topic, e.priority, e.allow)
                                          for e in device.entries))
    # the denies in the device's own role, tried before the shared allow of '#'
    assert {(a[0], a[1]) for a in rights.own if not a[3]} == {
        (t.value, topic) for t, topic in RESERVED}
    assert ("publishClientSend", "#", ALLOW_PRIORITY, True) in rights.shared
    # a gateway so granted: its own topics above the denies
    gateway = with_reports(compile_broker_acl(pdp, subject("gw-1"), context()),
                           gateway=True)
    assert reserved_denies(gateway.entries) == RESERVED
    assert max(e.priority for e in gateway.entries
               if e.topic == "gateways/gw-1/reports/+") > RESERVED_DENY


def test_reports_namespace_ok_default_device_unchanged() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT))
    acl = compile_broker_acl(pdp, subject("d1"), context())
    assert with_reports(acl, gateway=False).entries == acl.entries


def test_with_children_keeps_an_allow_of_everything() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (EVERYTHING, ROOT))
    gateway = compile_broker_acl(pdp, subject("gw-1"), context())
    assert "#" in allowed_sends(with_children(gateway, []).entries)
