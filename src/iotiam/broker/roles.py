"""How devices' compiled ACLs are laid out as dynamic-security roles, and how a change
is planned so that it edits few roles and moves few clients.

What Mosquitto 2.0.11's dynsec plugin does (read in its source, ``roles.c`` and
``clients.c``, and measured by ``tests/integration/test_broker_policy_change.py``):

* ``addRoleACL`` / ``removeRoleACL`` **kick every client holding the role**;
  ``addClientRole`` / ``removeClientRole`` / ``modifyClient`` kick that client;
  ``deleteClient`` kicks it (the revocation path relies on this);
* ``modifyRole`` with a new ``acls`` list replaces the role's ACLs **without a kick**:
  ACLs are checked on every publish, subscribe and delivery, so the new ones apply to
  live sessions at once. A subscription made earlier stays, but every message sent down
  it is checked against ``publishClientReceive`` (the compiler backs each subscribe deny
  with a receive deny, and the fallback denies receiving anything not granted): it
  delivers only what the device may still receive;
* ACL topics are matched literally: 2.0.11 has no ``%u`` / ``%c`` substitution, so an
  entry naming the device itself (``devices/<id>/#``) cannot be shared;
* every command rewrites the whole state file (~9 µs per client in it): commands must
  be few, whatever the fleet size.

The layout, per device (a client's roles are tried by descending priority, and within a
role its ACLs by descending priority; the first matching ACL decides):

* ``class:<h>:deny`` (priority 3): the denies it shares with other devices;
* ``device:<id>`` (priority 2): the entries naming the device itself;
* ``class:<h>:allow`` (priority 1): the shared allows, then the default-deny fallback.

So every deny is tried before every allow, as in one compiled role. Devices with the same
shared entries hold one class, whatever their number; a policy attached to a type, a
group or the root changes the shared entries of its classes, which is one ``modifyRole``
per class role and no client command at all. A device never changes class (that would
kick it): what it alone gains (a quarantine channel, say) rides in its own role, and a
class keeps what all its devices have in common. So no change of rights ever drops a
session (G11); only a revocation or a device that may no longer connect does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iotiam.broker.dynsec import DynsecAdmin
from iotiam.gateways.models import in_reports_namespace
from iotiam.policy.broker_acl import FALLBACK_PRIORITY

Acl = tuple[str, str, int, bool]  # acltype, topic, priority, allow

CLASS_PREFIX = "class:"
DENY_SUFFIX = ":deny"
ALLOW_SUFFIX = ":allow"
DENY_ROLE_PRIORITY = 3
OWN_ROLE_PRIORITY = 2
ALLOW_ROLE_PRIORITY = 1


@dataclass(frozen=True)
class DeviceRights:
    """A device's compiled ACLs split into the part it shares and the part naming it."""

    shared: frozenset[Acl]
    own: frozenset[Acl]


def split_rights(device_id: str, acls: frozenset[Acl], speaks_for: Iterable[str] = ()
                 ) -> DeviceRights:
    """Entries with the device's id (or, for a gateway, a child's) as a topic level are
    its own, and so is every entry in the namespace kept for gateways' reports (its
    denies must be tried before the shared allows: ``broker_acl.with_reports``); the
    rest are shared."""
    names = {device_id, *speaks_for}
    own = frozenset(a for a in acls if names.intersection(a[1].split("/"))
                    or in_reports_namespace(a[1]))
    return DeviceRights(acls - own, own)


def own_role(device_id: str) -> str:
    """The dynsec role holding the entries that name the device."""
    return f"device:{device_id}"


def deny_role(class_name: str) -> str:
    """The class role tried first: the shared denies."""
    return class_name + DENY_SUFFIX


def allow_role(class_name: str) -> str:
    """The class role tried last: the shared allows and the fallback."""
    return class_name + ALLOW_SUFFIX


def class_of_role(rolename: str) -> str | None:
    """The class a class role belongs to (None for any other role)."""
    if not rolename.startswith(CLASS_PREFIX):
        return None
    for suffix in (DENY_SUFFIX, ALLOW_SUFFIX):
        if rolename.endswith(suffix):
            return rolename[: -len(suffix)]
    return None


def client_roles(device_id: str, class_name: str) -> list[dict[str, Any]]:
    """The ``roles`` of a device's dynsec client, in the order they must be tried."""
    return [{"rolename": deny_role(class_name), "priority": DENY_ROLE_PRIORITY},
            {"rolename": own_role(device_id), "priority": OWN_ROLE_PRIORITY},
            {"rolename": allow_role(class_name), "priority": ALLOW_ROLE_PRIORITY}]


def acl_json(acl: Acl) -> dict[str, Any]:
    """One ACL as the plugin's JSON."""
    return {"acltype": acl[0], "topic": acl[1], "priority": acl[2], "allow": acl[3]}


def _is_shared_deny(acl: Acl) -> bool:
    return not acl[3] and acl[2] > FALLBACK_PRIORITY


def class_roles_json(name: str, content: frozenset[Acl]) -> list[dict[str, Any]]:
    """A class's two roles as the plugin's state file holds them."""
    return [{"rolename": name + suffix, "acls": [acl_json(a) for a in sorted(acls or ())]}
            for suffix, acls in _by_role(content).items()]


def edit_role(rolename: str, current: frozenset[Acl] | None, wanted: frozenset[Acl]
              ) -> list[dict[str, Any]]:
    """Commands taking a role from ``current`` (None: absent) to ``wanted``: one
    ``modifyRole``, which kicks nobody."""
    acls = [acl_json(a) for a in sorted(wanted)]
    if current is None:
        return [{"command": "createRole", "rolename": rolename, "acls": acls}]
    if current == wanted:
        return []
    return [{"command": "modifyRole", "rolename": rolename, "acls": acls}]


def class_commands(name: str, roles: Mapping[str, frozenset[Acl]], wanted: frozenset[Acl]
                   ) -> list[dict[str, Any]]:
    """Commands taking both roles of a class from what ``roles`` says they hold (absent:
    created) to ``wanted``."""
    return [command for suffix, acls in _by_role(wanted).items()
            for command in edit_role(name + suffix, roles.get(name + suffix), acls)]


def _by_role(content: frozenset[Acl]) -> dict[str, frozenset[Acl]]:
    return {DENY_SUFFIX: frozenset(a for a in content if _is_shared_deny(a)),
            ALLOW_SUFFIX: frozenset(a for a in content if not _is_shared_deny(a))}


def class_name_for(content: frozenset[Acl], taken: Iterable[str]) -> str:
    """A new class's name: a digest of what it first holds, made unique."""
    digest = hashlib.sha256(repr(sorted(content)).encode()).hexdigest()[:12]
    used = set(taken)
    name, n = f"{CLASS_PREFIX}{digest}", 1
    while name in used:
        n += 1
        name = f"{CLASS_PREFIX}{digest}-{n}"
    return name


@dataclass
class ClassPlan:
    """Where each device's shared rights go: class contents to set, and memberships."""

    #: the classes' contents after the change (every class that has a device)
    contents: dict[str, frozenset[Acl]] = field(default_factory=dict)
    #: each device's class after the change
    members: dict[str, str] = field(default_factory=dict)


def plan_classes(contents: Mapping[str, frozenset[Acl]], members: Mapping[str, str],
                 wanted: Mapping[str, frozenset[Acl]]) -> ClassPlan:
    """Assign each device in ``wanted`` (its shared rights) to a class, never moving a
    device that has one (moving a client kicks it).

    A class holds what all its devices want in common (a change made for all of them is
    one edit of the class); what a device wants beyond that goes into its own role
    (``overlay``). A device without a class joins one holding exactly what it wants, or
    a new one. Devices not in ``wanted`` keep what they have; classes with no device are
    not in the plan.
    """
    plan = ClassPlan()
    holders: dict[str, list[str]] = {}
    for device, name in members.items():
        if name in contents:
            holders.setdefault(name, []).append(device)
    for name, devices in sorted(holders.items()):
        plan.contents[name] = frozenset.intersection(
            *(wanted.get(d, contents[name]) for d in devices))
        plan.members.update(dict.fromkeys(devices, name))
    by_content = {content: name for name, content in sorted(plan.contents.items())}
    for device in sorted(d for d in wanted if d not in plan.members):
        content = wanted[device]
        found = by_content.get(content)
        if found is None:
            found = class_name_for(content, [*contents, *plan.contents])
            plan.contents[found] = content
            by_content[content] = found
        plan.members[device] = found
    return plan


def overlay(shared: frozenset[Acl], class_content: frozenset[Acl]) -> frozenset[Acl]:
    """What a device wants beyond its class: carried by its own role (tried after the
    class's denies and before its allows, so a deny there still beats every allow)."""
    return shared - class_content


def broker_state(admin: DynsecAdmin
                  ) -> tuple[dict[str, set[tuple[str, int]]], dict[str, frozenset[Acl]]]:
    """Every client's (role, priority) pairs and every role's ACLs, as the broker has them."""
    clients_answer, roles_answer = admin.check([
        {"command": "listClients", "verbose": True, "count": -1},
        {"command": "listRoles", "verbose": True, "count": -1},
    ])
    clients = {
        c["username"]: {(r["rolename"], int(r.get("priority", -1))) for r in c.get("roles", [])}
        for c in clients_answer.get("data", {}).get("clients", [])
    }
    roles = {
        r["rolename"]: frozenset(
            (a["acltype"], a["topic"], int(a.get("priority", 0)), bool(a["allow"]))
            for a in r.get("acls", []))
        for r in roles_answer.get("data", {}).get("roles", [])
    }
    return clients, roles


def role_set(roles: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """A client's roles as (name, priority) pairs, as ``broker_state`` reads them."""
    return {(r["rolename"], r["priority"]) for r in roles}


def classes_on_broker(roles: dict[str, frozenset[Acl]]) -> dict[str, frozenset[Acl]]:
    """Classes whose two roles both exist, with what they hold together."""
    names = {name for role in roles if (name := class_of_role(role)) is not None}
    return {name: roles[deny_role(name)] | roles[allow_role(name)] for name in names
            if deny_role(name) in roles and allow_role(name) in roles}


def class_held(device_id: str, held: set[tuple[str, int]]) -> str | None:
    """The class a client is laid out in, if it holds exactly the layout's roles."""
    names = {name for role, _ in held if (name := class_of_role(role)) is not None}
    if len(names) != 1:
        return None
    name = names.pop()
    return name if held == role_set(client_roles(device_id, name)) else None


def class_role_contents(contents: Mapping[str, frozenset[Acl]]) -> dict[str, frozenset[Acl]]:
    """What each role of these classes holds."""
    roles: dict[str, frozenset[Acl]] = {}
    for name, content in contents.items():
        for role in class_roles_json(name, content):
            roles[role["rolename"]] = frozenset(
                (a["acltype"], a["topic"], a["priority"], a["allow"]) for a in role["acls"])
    return roles


def device_commands(device_id: str, rights: DeviceRights, own: frozenset[Acl] | None,
                    class_name: str, held: set[tuple[str, int]] | None
                    ) -> tuple[list[dict[str, Any]], str]:
    """A device's own role brought up to date and its client created or moved; and
    which of "created", "updated" or "" (nothing to do) that was."""
    commands = edit_role(own_role(device_id), own, rights.own)
    roles = client_roles(device_id, class_name)
    if held is None:
        commands.append({"command": "createClient", "username": device_id, "roles": roles})
        return commands, "created"
    if held != role_set(roles):
        # another class (or an older layout): the plugin kicks the client, whose
        # shared rights did change
        commands.append({"command": "modifyClient", "username": device_id, "roles": roles})
    return commands, "updated" if commands else ""


def stale_commands(clients: Mapping[str, set[tuple[str, int]]],
                   roles: Mapping[str, frozenset[Acl]], desired: Mapping[str, DeviceRights],
                   contents: Mapping[str, frozenset[Acl]], admin: str
                   ) -> list[dict[str, Any]]:
    """Delete the clients no device wants any more (but ``admin``), then the roles no
    client of ours holds."""
    commands: list[dict[str, Any]] = [
        {"command": "deleteClient", "username": username}
        for username in sorted(clients.keys() - desired.keys() - {admin})]
    # the admin's own roles stay, whatever their names: an external broker's admin made
    # by `mosquitto_ctrl dynsec init` holds a role named "admin"
    keep = ({role for role, _ in clients.get(admin, set())} | {admin}
            | set(class_role_contents(contents)) | {own_role(d) for d in desired})
    for role in sorted(roles.keys() - keep):
        commands.append({"command": "deleteRole", "rolename": role})
    return commands


def laid_out_state(state: dict[str, Any], admin: str, desired: Mapping[str, DeviceRights]
                   ) -> dict[str, Any]:
    """A dynsec state file holding ``admin`` (kept from ``state``) and the fleet, laid out."""
    plan = plan_classes({}, {}, {d: rights.shared for d, rights in desired.items()})
    clients = [c for c in state.get("clients", []) if c.get("username") == admin]
    roles = [r for r in state.get("roles", []) if r.get("rolename") == admin]
    return {**state,
            "clients": clients + [{"username": d, "roles": client_roles(d, plan.members[d])}
                                  for d in desired],
            "roles": roles + [role for name, content in sorted(plan.contents.items())
                              for role in class_roles_json(name, content)] + [
                {"rolename": own_role(d), "acls": [acl_json(a) for a in sorted(rights.own)]}
                for d, rights in desired.items()]}
