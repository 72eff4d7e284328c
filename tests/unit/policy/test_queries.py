"""What can device X do, and who can publish to T."""

from __future__ import annotations

from iotiam.inventory.models import DeviceState
from iotiam.policy.actions import PUBLISH, SUBSCRIBE
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY
from iotiam.policy.models import AttachmentTarget, Effect, TargetKind
from iotiam.policy.queries import (
    effective_policy,
    granting_targets,
    who_can,
    who_can_publish,
)
from policy.fakes import ACME, ROOT, context, engine, policy, subject

GUARD = policy("""\
name: guard
version: 1
statements:
  - {sid: no-admin, effect: deny, actions: [mqtt:publish], topics: ["devices/+/admin/#"]}
  - {sid: lock-self, effect: deny, actions: [mqtt:receive], topics: ["devices/${device.id}/#"]}
  - {sid: zone, effect: deny, actions: [mqtt:subscribe], topics: ["zones/${device.attr.z}/#"]}
""")
GROUP = policy("""\
name: line
version: 1
statements:
  - {effect: allow, actions: [mqtt:publish], topics: ["lines/1/${device.id}"]}
  - {effect: allow, actions: [mqtt:subscribe], topics: ["zones/${device.attr.z}/+"]}
""")


def test_what_can_device_do() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (GUARD, ACME))
    effective = effective_policy(pdp, subject())
    assert effective.device_id == "d1"
    lines = effective.lines()
    assert lines[:3] == [
        "deny mqtt:publish on 'devices/+/admin/#' (policy 'guard' v1 statement 'no-admin' via "
        "org-unit acme)",
        "deny mqtt:receive on 'devices/d1/#' (policy 'guard' v1 statement 'lock-self' via "
        "org-unit acme)",
        "deny mqtt:subscribe on 'zones/+/#' (policy 'guard' v1 statement 'zone' via org-unit "
        "acme)",
    ]
    own = next(s for s in effective.statements
               if s.effect is Effect.ALLOW and s.resource == "devices/d1/#")
    assert own.actions == ("mqtt:publish", "mqtt:subscribe", "mqtt:receive")
    assert [r.statement for r in own.denied_by] == ["no-admin", "lock-self"]
    assert own.fully_denied  # lock-self takes all of mqtt:receive there
    assert "entirely overridden by" in str(own)
    connect = next(s for s in effective.statements if s.resource == "d1")
    assert connect.denied_by == () and connect.actions == ("mqtt:connect",)


def test_what_can_device_do_notes_unsafe_values_and_blocks() -> None:
    pdp = engine((GROUP, ROOT))
    effective = effective_policy(pdp, subject(attributes={"z": "a/b"}))
    zone = next(s for s in effective.statements if "zones" in (s.resource or ""))
    assert zone.note == "a variable has no safe value: never matches this device"
    blocked = effective_policy(pdp, subject(state=DeviceState.DECOMMISSIONED))
    assert blocked.lines() == ["nothing: device 'd1' is decommissioned"]


def test_who_can_publish() -> None:
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (GUARD, ACME))
    fleet = [subject("d1"), subject("d2"), subject("d3", state=DeviceState.SUSPENDED),
             subject("d4", org="beta")]
    assert [h.subject.device_id for h in who_can_publish(pdp, "devices/d2/x", fleet,
                                                         context())] == ["d2"]
    assert who_can_publish(pdp, "devices/d2/admin/reboot", fleet, context()) == []
    holders = who_can(pdp, SUBSCRIBE, "devices/d4/#", fleet, context())
    assert [h.subject.device_id for h in holders] == ["d4"]
    assert holders[0].decision.matched[0].policy == "iotiam-default-device"


def test_granting_targets() -> None:
    group = AttachmentTarget(TargetKind.GROUP, "line-1")
    pdp = engine((DEFAULT_DEVICE_POLICY, ROOT), (GROUP, group), (GUARD, ACME))
    grants = granting_targets(pdp, PUBLISH, "lines/1/d9")
    assert [(g.attachment.target, g.pattern, g.conditional) for g in grants] == [
        (group, "lines/1/${device.id}", True)]
    everyone = granting_targets(pdp, PUBLISH, "devices/d9/x")
    assert [g.attachment.target for g in everyone] == [ROOT]
    assert granting_targets(pdp, PUBLISH, "nobody/listens") == []
