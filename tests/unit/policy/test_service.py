"""Policy use cases: versions, owners, attachments under delegation and guardrails, and the
in-process decision point."""

from __future__ import annotations

from datetime import timedelta

import pytest

from iotiam.clock import FrozenClock
from iotiam.errors import Conflict, Forbidden, IdNotAvailable, InvalidInput, NotFound
from iotiam.kernel import SYSTEM, Principal, Role
from iotiam.policy.actions import CONNECT, PUBLISH
from iotiam.policy.defaults import DEFAULT_DEVICE_POLICY_YAML
from iotiam.policy.models import (
    AttachmentTarget,
    GuardrailViolation,
    PolicySyntaxError,
    TargetKind,
)
from iotiam.policy.service import DecisionPoint, PolicyAdministration
from iotiam.testing.fakes.audit import AuditRecorder
from iotiam.testing.fakes.policy import MemoryPolicies
from policy.fakes import ACME, BETA, PLANT, ROOT, T0, subject

TENANT = Principal("acme-admin", Role.ADMIN, "acme", "/root/acme/")
SITE = Principal("plant-admin", Role.ADMIN, "plant1", "/root/acme/plant1/")
VIEWER = Principal("acme-viewer", Role.VIEWER, "acme", "/root/acme/")
DEVICE_D1 = AttachmentTarget(TargetKind.DEVICE, "d1")

GUARD = """\
name: acme-guard
version: 1
guardrail: true
statements:
  - {sid: no-secrets, effect: deny, actions: [mqtt:publish], topics: ["plants/+/secrets/#"]}
"""


def _plant(version: int, topic: str = "plants/plant1/telemetry/#") -> str:
    return (f"name: plant-telemetry\nversion: {version}\nstatements:\n"
            f"  - {{sid: t, effect: allow, actions: [mqtt:publish], topics: ['{topic}']}}\n")


def test_write_ok_versions_and_diff(admin: PolicyAdministration) -> None:
    first = admin.write(TENANT, _plant(1))
    assert first.stored.owner_path == "/root/acme/"
    assert first.stored.created_by == "acme-admin"
    assert first.diff is None
    second = admin.write(TENANT, _plant(2, "plants/plant1/status/#"))
    assert second.diff is not None
    assert second.diff.lines() == [
        "- statement t: topics: 'plants/plant1/telemetry/#'",
        "+ statement t: topics: 'plants/plant1/status/#'"]
    assert admin.get(TENANT, "plant-telemetry").document.version == 2
    assert admin.get(TENANT, "plant-telemetry", 1).document.version == 1
    assert admin.diff(TENANT, "plant-telemetry", 1, 2).lines() == second.diff.lines()


def test_write_fail_wrong_version(admin: PolicyAdministration, memory: MemoryPolicies) -> None:
    admin.write(TENANT, _plant(1))
    with pytest.raises(Conflict, match="is at version 1; the new document must be version 2, "
                                       "not 3"):
        admin.write(TENANT, _plant(3))
    with pytest.raises(Conflict, match="does not exist; the new document must be version 1"):
        admin.write(TENANT, _plant(2).replace("plant-telemetry", "other"))
    assert memory.versions("plant-telemetry") == [1]


def test_write_returns_lint_findings(admin: PolicyAdministration) -> None:
    result = admin.write(TENANT, _plant(1, "#"))
    assert [f.code for f in result.findings] == ["all-topics"]


def test_write_fail_unknown_site_network(admin: PolicyAdministration) -> None:
    text = ("name: n\nversion: 1\nstatements:\n  - effect: allow\n    actions: [mqtt:publish]\n"
            "    topics: [x]\n    conditions: {source_networks: [berlin, atlantis]}\n")
    with pytest.raises(PolicySyntaxError, match="line 4: statement 1: source network "
                                                "'atlantis' is not a known site"):
        admin.write(TENANT, text)


def test_write_fail_roles_and_owners(admin: PolicyAdministration) -> None:
    with pytest.raises(Forbidden, match="writing policies needs the admin role"):
        admin.write(VIEWER, _plant(1))
    with pytest.raises(Forbidden, match="owner '/root/beta/' is outside your scope"):
        admin.write(TENANT, _plant(1), owner_path="/root/beta/")
    with pytest.raises(InvalidInput, match="is not the path of an org unit"):
        admin.write(SYSTEM, _plant(1), owner_path="/root/nowhere/")
    admin.write(SYSTEM, _plant(1))  # owned by the root
    with pytest.raises(Forbidden, match="belongs to /root/, outside your scope /root/acme/"):
        admin.write(TENANT, _plant(2))
    with pytest.raises(InvalidInput, match="its owner cannot change"):
        admin.write(SYSTEM, _plant(2), owner_path="/root/acme/")
    assert admin.get(TENANT, "plant-telemetry").owner_path == "/root/"  # readable below


def test_other_tenants_policies_are_invisible(admin: PolicyAdministration) -> None:
    beta = Principal("beta-admin", Role.ADMIN, "beta", "/root/beta/")
    admin.write(beta, _plant(1))
    with pytest.raises(NotFound, match="policy 'plant-telemetry' not found"):
        admin.get(TENANT, "plant-telemetry")
    with pytest.raises(IdNotAvailable, match="policy name 'plant-telemetry' is not available"):
        admin.write(TENANT, _plant(2))  # taken; by whom is not said
    with pytest.raises(NotFound):
        admin.attach(TENANT, "plant-telemetry", PLANT)


def test_attach_ok_and_scopes(admin: PolicyAdministration) -> None:
    admin.write(TENANT, _plant(1))
    assert admin.attach(TENANT, "plant-telemetry", PLANT).scope == "/root/acme/plant1/"
    assert admin.attach(TENANT, "plant-telemetry", DEVICE_D1).scope == "/root/acme/plant1/"
    typed = admin.attach(TENANT, "plant-telemetry",
                         AttachmentTarget(TargetKind.DEVICE_TYPE, "sensor"))
    assert typed.scope == "/root/acme/"  # a device type: the caller's own subtree


@pytest.mark.parametrize(("target", "error", "message"), [
    (BETA, NotFound, "org-unit beta not found"),
    (AttachmentTarget(TargetKind.DEVICE, "b1"), NotFound, "device b1 not found"),
    (ROOT, Forbidden, r"org-unit root \(at /root/\) is outside your scope /root/acme/"),
    (AttachmentTarget(TargetKind.DEVICE, "ghost"), NotFound, "device ghost not found"),
    (AttachmentTarget(TargetKind.DEVICE_TYPE, "toaster"), NotFound, "not found"),
], ids=["fail/other-tenant-unit", "fail/other-tenant-device", "fail/parent-unit",
        "fail/unknown-device", "fail/unknown-type"])
def test_attach_fail(admin: PolicyAdministration, memory: MemoryPolicies,
                     target: AttachmentTarget, error: type[Exception], message: str) -> None:
    admin.write(TENANT, _plant(1))
    with pytest.raises(error, match=message):
        admin.attach(TENANT, "plant-telemetry", target)
    assert memory.all() == []


def test_attach_fail_type_scope_outside_caller(admin: PolicyAdministration) -> None:
    admin.write(TENANT, _plant(1))
    with pytest.raises(Forbidden, match="outside your scope"):
        admin.attach(TENANT, "plant-telemetry",
                     AttachmentTarget(TargetKind.DEVICE_TYPE, "sensor"), scope="/root/")


def test_guardrail_refuses_attach_and_new_version(admin: PolicyAdministration,
                                                  memory: MemoryPolicies) -> None:
    admin.write(TENANT, GUARD)
    admin.attach(TENANT, "acme-guard", ACME)
    admin.write(SITE, _plant(1, "plants/plant1/#"))  # not attached yet: nothing to bind
    with pytest.raises(GuardrailViolation, match=r"statement t would allow mqtt:publish on "
                                                 r"'plants/plant1/#'.*'acme-guard' v1 statement "
                                                 r"'no-secrets'"):
        admin.attach(SITE, "plant-telemetry", PLANT)
    admin.write(SITE, _plant(2))  # narrower: fine
    admin.attach(SITE, "plant-telemetry", PLANT)
    with pytest.raises(GuardrailViolation):
        admin.write(SITE, _plant(3, "plants/+/secrets/key"))
    assert memory.versions("plant-telemetry") == [1, 2]


def test_guardrail_detach_needs_its_owner(admin: PolicyAdministration) -> None:
    admin.write(TENANT, GUARD)
    admin.attach(TENANT, "acme-guard", PLANT)
    with pytest.raises(Forbidden, match="guardrail 'acme-guard' was set by /root/acme/"):
        admin.detach(SITE, "acme-guard", PLANT)
    admin.detach(TENANT, "acme-guard", PLANT)
    with pytest.raises(NotFound, match="is not attached to org-unit plant1"):
        admin.detach(TENANT, "acme-guard", PLANT)


def test_decision_point_follows_changes_and_clock(admin: PolicyAdministration,
                                                  pdp: DecisionPoint, clock: FrozenClock) -> None:
    me = subject()
    assert not pdp.decide(me, CONNECT, "d1").allowed
    admin.write(SYSTEM, DEFAULT_DEVICE_POLICY_YAML)
    admin.attach(SYSTEM, "iotiam-default-device", ROOT)
    assert pdp.decide(me, CONNECT, "d1").allowed
    text = ("name: night\nversion: 1\nstatements:\n  - effect: deny\n    actions: ['mqtt:*']\n"
            "    conditions: {time_window: {start: '22:00', end: '06:00'}}\n")
    admin.write(SYSTEM, text)
    admin.attach(SYSTEM, "night", ROOT)
    assert pdp.decide(me, PUBLISH, "devices/d1/x", source_ip="10.1.0.1").allowed  # 13:00 CET
    clock.advance(timedelta(hours=10))  # 23:00 CET
    decision = pdp.decide(me, PUBLISH, "devices/d1/x")
    assert not decision.allowed and "policy 'night' v1" in decision.reason
    assert pdp.engine.generation == admin.generation()


def test_lint_without_storing(admin: PolicyAdministration, memory: MemoryPolicies) -> None:
    assert admin.lint(_plant(1, "devices/+/cmd"))[0].code == "other-devices-namespace"
    assert memory.stored == {}


def test_detach_fail_outside_scope(admin: PolicyAdministration) -> None:
    admin.write(SYSTEM, _plant(1))
    admin.attach(SYSTEM, "plant-telemetry", BETA)
    admin.attach(SYSTEM, "plant-telemetry", ROOT)
    with pytest.raises(NotFound, match="is not attached to org-unit beta"):
        admin.detach(TENANT, "plant-telemetry", BETA)  # another tenant's: not revealed
    with pytest.raises(Forbidden, match="org-unit root is outside your scope"):
        admin.detach(TENANT, "plant-telemetry", ROOT)
    admin.detach(SYSTEM, "plant-telemetry", BETA)


def test_changes_ok_audited_with_refusals(admin: PolicyAdministration,
                                          audit: AuditRecorder) -> None:
    admin.write(TENANT, _plant(1))
    admin.attach(TENANT, "plant-telemetry", PLANT)
    admin.detach(TENANT, "plant-telemetry", PLANT)
    assert [(d.tag, d.subject, d.org_path) for d in audit.appended] == [
        ("admin:policy:written", "policy:plant-telemetry", "/root/acme/"),
        ("admin:policy:attached", "policy:plant-telemetry", "/root/acme/plant1/"),
        ("admin:policy:detached", "policy:plant-telemetry", "/root/acme/plant1/")]
    assert audit.appended[0].details["version"] == 1
    with pytest.raises(Forbidden):
        admin.write(VIEWER, _plant(2))
    with pytest.raises(Conflict):
        admin.write(TENANT, _plant(5))
    assert [(d.tag, d.actor) for d in audit.refused] == [
        ("admin:policy:refused", "acme-viewer"), ("admin:policy:refused", "acme-admin")]
    assert len(audit.appended) == 3


def test_list_and_describe_ok_visible_only(admin: PolicyAdministration) -> None:
    beta = Principal("beta-admin", Role.ADMIN, "beta", "/root/beta/")
    admin.write(SYSTEM, DEFAULT_DEVICE_POLICY_YAML)
    admin.attach(SYSTEM, "iotiam-default-device", ROOT)
    admin.attach(SYSTEM, "iotiam-default-device", BETA)
    admin.write(TENANT, _plant(1))
    admin.write(TENANT, _plant(2))
    admin.write(beta, _plant(1).replace("plant-telemetry", "beta-telemetry"))
    listed = {o.stored.document.name: o for o in admin.list_policies(TENANT)}
    assert set(listed) == {"iotiam-default-device", "plant-telemetry"}
    assert listed["plant-telemetry"].versions == (1, 2)
    # the root's attachment is known below it; beta's is not
    assert [a.target for a in listed["iotiam-default-device"].attachments] == [ROOT]
    first = admin.describe(TENANT, "plant-telemetry", 1)
    assert first.stored.document.version == 1 and first.versions == (1, 2)
    with pytest.raises(NotFound, match="has no version 3"):
        admin.describe(TENANT, "plant-telemetry", 3)
    with pytest.raises(NotFound, match="'beta-telemetry' not found"):
        admin.describe(TENANT, "beta-telemetry")


def test_save_site_ok_and_fail(admin: PolicyAdministration, audit: AuditRecorder,
                               pdp: DecisionPoint) -> None:
    before = pdp.engine
    site, created = admin.save_site(SYSTEM, "osaka", "Asia/Tokyo", ["10.5.0.0/16", "10.5.0.0/16"])
    assert created and [str(n) for n in site.networks] == ["10.5.0.0/16"]
    assert "osaka" in {s.name for s in admin.sites()}
    assert pdp.engine is not before and "osaka" in pdp.engine.sites  # recompiled
    assert [(d.tag, d.subject) for d in audit.appended] == [("admin:site:saved", "site:osaka")]
    assert admin.save_site(SYSTEM, "osaka", "UTC")[1] is False
    for actor, name, zone, networks, error, message in (
        (TENANT, "osaka", "UTC", [], Forbidden, "needs an admin scoped to the root"),
        (VIEWER, "osaka", "UTC", [], Forbidden, "needs the admin role"),
        (SYSTEM, "10.1.0.0", "UTC", [], InvalidInput, "is not valid"),
        (SYSTEM, "osaka", "Nowhere/City", [], InvalidInput, "unknown time zone"),
        (SYSTEM, "osaka", "UTC", ["10.5.0.1/16"], InvalidInput, "host bits set"),
    ):
        with pytest.raises(error, match=message):
            admin.save_site(actor, name, zone, networks)
    assert len(audit.refused) == 5


def test_decide_ok_at_simulates_without_changing_now(admin: PolicyAdministration,
                                                     pdp: DecisionPoint) -> None:
    text = ("name: day\nversion: 1\nstatements:\n  - effect: allow\n    actions: [mqtt:publish]"
            "\n    topics: [day/x]\n    conditions: {time_window: {start: '08:00', "
            "end: '18:00'}}\n")
    admin.write(SYSTEM, text)
    admin.attach(SYSTEM, "day", ROOT)
    me = subject()
    assert pdp.decide(me, PUBLISH, "day/x").allowed  # 13:00 in Berlin
    night = T0 + timedelta(hours=10)
    assert not pdp.decide(me, PUBLISH, "day/x", at=night).allowed
    assert pdp.decide(me, PUBLISH, "day/x").allowed
