"""A gateway's broker ACL: its own topics and exactly its children's, nothing more; and
which dynsec role carries them."""

from __future__ import annotations

from policy.fakes import ROOT, context, engine, policy, subject

from iotiam.broker.roles import split_rights
from iotiam.inventory.models import DeviceState
from iotiam.policy.broker_acl import AclEntry, AclType, compile_broker_acl, with_children
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
