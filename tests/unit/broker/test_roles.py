"""The dynsec role layout and the class planner: edits instead of moves (G11)."""

from __future__ import annotations

import json
from pathlib import Path

from iotiam.broker.layout import (
    ADMIN_USERNAME,
    REPORTS_SUBSCRIPTION,
    BrokerFiles,
    admin_acls,
    dynsec_seed,
)
from iotiam.broker.roles import (
    Acl,
    class_commands,
    client_roles,
    edit_role,
    overlay,
    plan_classes,
    split_rights,
)
from iotiam.broker.sync import stored_dynsec_state

OWN: Acl = ("publishClientSend", "devices/d1/#", 100, True)
TELEMETRY: Acl = ("publishClientSend", "fleet/telemetry", 100, True)
GUARD: Acl = ("publishClientSend", "devices/+/firmware/#", 200, False)
FALLBACK: Acl = ("publishClientSend", "#", 0, False)
SUB: Acl = ("subscribePattern", "fleet/cmd/#", 100, True)
BASE = frozenset({TELEMETRY, FALLBACK})
GUARDED = BASE | {GUARD}


def test_split_ok_entries_naming_the_device_are_its_own() -> None:
    rights = split_rights("d1", frozenset({OWN, TELEMETRY, FALLBACK}))
    assert rights.own == {OWN} and rights.shared == BASE
    # a longer id containing it is not it
    assert split_rights("d", frozenset({OWN})).own == frozenset()


def test_client_roles_ok_denies_then_own_then_allows() -> None:
    roles = client_roles("d1", "class:x")
    assert [(r["rolename"], r["priority"]) for r in roles] == [
        ("class:x:deny", 3), ("device:d1", 2), ("class:x:allow", 1)]


def test_plan_ok_fleet_wide_change_edits_the_class_moves_nobody() -> None:
    members = {f"d{n}": "class:a" for n in range(100)}
    plan = plan_classes({"class:a": BASE}, members, dict.fromkeys(members, GUARDED))
    assert plan.members == members
    assert plan.contents == {"class:a": GUARDED}


def test_plan_ok_one_device_gaining_rights_stays_and_gets_an_overlay() -> None:
    members = {f"d{n}": "class:a" for n in range(10)}
    plan = plan_classes({"class:a": BASE}, members, {"d3": GUARDED})  # d3 quarantined, say
    assert plan.members == members  # nobody moves: moving a client kicks it
    assert plan.contents == {"class:a": BASE}
    assert overlay(GUARDED, plan.contents["class:a"]) == {GUARD}


def test_plan_ok_a_class_keeps_what_its_devices_have_in_common() -> None:
    members = {"d1": "class:a", "d2": "class:a"}
    plan = plan_classes({"class:a": GUARDED}, members, {"d1": BASE})  # d1 loses GUARD
    assert plan.members == members
    assert plan.contents["class:a"] == BASE
    assert overlay(GUARDED, BASE) == {GUARD}  # d2 keeps it in its own role


def test_plan_ok_devices_join_a_class_holding_exactly_what_they_want() -> None:
    plan = plan_classes({"class:a": BASE, "class:b": GUARDED},
                        {"d1": "class:a", "d2": "class:b"}, {"d3": GUARDED, "d4": BASE})
    assert (plan.members["d3"], plan.members["d4"]) == ("class:b", "class:a")


def test_plan_ok_new_devices_share_one_new_class() -> None:
    plan = plan_classes({}, {}, {"d1": BASE, "d2": BASE, "d3": GUARDED})
    assert plan.members["d1"] == plan.members["d2"] != plan.members["d3"]
    assert len(plan.contents) == 2


def test_edit_role_ok_one_modify_never_a_kicking_command() -> None:
    assert edit_role("r", frozenset({TELEMETRY}), frozenset({TELEMETRY})) == []
    for old, new in ((frozenset({TELEMETRY}), frozenset({TELEMETRY, SUB})),
                     (frozenset({TELEMETRY, SUB}), frozenset({TELEMETRY}))):
        commands = edit_role("r", old, new)
        # addRoleACL / removeRoleACL would kick every holder of the role
        assert [c["command"] for c in commands] == ["modifyRole"]


def test_class_commands_ok_denies_and_allows_in_their_roles() -> None:
    commands = class_commands("class:a", {}, GUARDED)
    made = {c["rolename"]: {a["topic"] for a in c["acls"]} for c in commands}
    assert made == {"class:a:deny": {GUARD[1]}, "class:a:allow": {TELEMETRY[1], "#"}}


def test_stored_state_ok_admin_role_gets_what_this_iotiam_needs(tmp_path: Path) -> None:
    files = BrokerFiles(tmp_path)
    files.admin_password.write_text("secret")
    seeded = json.loads(dynsec_seed("secret"))
    # a broker provisioned before gateways reported over MQTT: the admin could not
    # read their reports nor answer them
    old = [a for a in admin_acls() if "gateways" not in str(a["topic"])]
    seeded["roles"][0]["acls"] = old
    seeded["roles"].append({"rolename": "device:d1", "acls": []})
    files.dynsec.write_text(json.dumps(seeded))
    state = stored_dynsec_state(files)
    roles = {r["rolename"]: r["acls"] for r in state["roles"]}
    assert roles[ADMIN_USERNAME] == admin_acls()
    assert {"acltype": "subscribePattern", "topic": REPORTS_SUBSCRIPTION,
            "allow": True} in roles[ADMIN_USERNAME]
    assert roles["device:d1"] == []  # the fleet's roles are the sync's, untouched
