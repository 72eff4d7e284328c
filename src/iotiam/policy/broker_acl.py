"""Compile one device's effective policy into Mosquitto dynamic-security ACL entries.

The broker cannot evaluate our conditions or variables, so they are settled at sync
time: variables substituted, conditions evaluated in the given context (unknown fails
closed: the allow is left out, the deny kept), and ``valid_until`` says when a time
window flips the result, so the sync loop knows when to come back. Trust score,
firmware and state changes are events: the caller re-syncs on them.

How the dynamic-security plugin (Mosquitto 2.0) checks ACLs, and what follows:

* per role, ACLs are tried highest ``priority`` first and the first match decides; so
  denies get a higher priority than allows, and a lowest-priority deny of ``#`` per type
  keeps default deny whatever the broker's default access is. The broker sync spreads
  the entries over three roles (shared denies, the device's own, shared allows; see
  ``iotiam.broker.roles``) in an order that keeps every deny ahead of every allow.
* ``subscribeLiteral`` is looked up before any ``subscribePattern`` of the same role,
  whatever the priorities; a literal allow is therefore used only when no subscribe
  deny overlaps it (else it becomes a pattern, which a filter without wildcards also is).
* ``subscribePattern`` grants a subscription its pattern *covers* — our subscribe rule.
  Our PDP also refuses a subscription that merely *overlaps* a denied filter; the broker
  cannot, so each subscribe deny is backed by a ``publishClientReceive`` deny of the same
  filter: nothing under it is delivered, whichever wider subscription is allowed.
* a whole level ``%c`` or ``%u`` is a client id / username pattern in Mosquitto's
  ``acl_file``; 2.0's dynsec plugin matches it literally (``mosquitto_topic_matches_sub``
  in its ``acl.c``), so entries naming a device cannot be shared. Such a level coming
  from a policy is dropped (allow) or widened to ``+`` (deny), whatever the broker.
* there is no connect ACL: ``can_connect`` False means the sync loop must remove the
  dynsec client (or its role) so the device is kicked and stays out; ``disableClient``
  alone lets it reconnect (docs/measured-facts.md).
* a device whose id is a reserved (privileged) broker name never gets entries: on the
  identity listener it would inherit that user's rights.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from iotiam.gateways.models import REPORTS_NAMESPACE, answers_topic, report_filter
from iotiam.inventory.lifecycle import Transport, may
from iotiam.inventory.models import is_reserved_id
from iotiam.policy.actions import CONNECT, PUBLISH, RECEIVE, SUBSCRIBE
from iotiam.policy.conditions import next_window_change, zone_for
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.models import RequestContext, Subject
from iotiam.policy.rules import Rule
from iotiam.policy.topics import HASH, PLUS, has_wildcard, overlap

DENY_PRIORITY = 200
ALLOW_PRIORITY = 100
FALLBACK_PRIORITY = 0
#: the namespace kept for gateways' reports: its denies come before every policy allow,
#: a gateway's own report topics before those denies (``with_reports``)
RESERVED_DENY = 250
RESERVED_ALLOW = 300
_BROKER_PATTERN_LEVELS = frozenset({"%c", "%u"})


class AclType(enum.StrEnum):
    """Mosquitto dynamic-security ACL types."""

    PUBLISH_CLIENT_SEND = "publishClientSend"
    PUBLISH_CLIENT_RECEIVE = "publishClientReceive"
    SUBSCRIBE_LITERAL = "subscribeLiteral"
    SUBSCRIBE_PATTERN = "subscribePattern"


@dataclass(frozen=True, slots=True, order=True)
class AclEntry:
    """One dynsec ACL: type, topic, allow or deny, and priority (higher is tried first)."""

    priority: int
    acltype: AclType
    topic: str
    allow: bool

    def to_dynsec(self) -> dict[str, Any]:
        """The JSON object of a dynsec ``addRoleACL`` / ``createRole`` command."""
        return {"acltype": str(self.acltype), "topic": self.topic,
                "priority": self.priority, "allow": self.allow}


@dataclass(frozen=True, slots=True)
class BrokerAcl:
    """What the broker must enforce for one device until ``valid_until`` (None: no timer)."""

    device_id: str
    can_connect: bool
    entries: tuple[AclEntry, ...]
    valid_until: datetime | None
    generation: int
    computed_at: datetime
    reason: str = ""  # why the device may not connect
    #: the children whose topics a gateway's entries carry (docs/gateways.md)
    speaks_for: tuple[str, ...] = ()

    def to_dynsec(self) -> list[dict[str, Any]]:
        """The ``acls`` list of a dynsec role."""
        return [e.to_dynsec() for e in self.entries]


def compile_broker_acl(
    engine: PolicyEngine, subject: Subject, context: RequestContext
) -> BrokerAcl:
    """Concrete ACL entries for ``subject`` in ``context`` (the sync time's situation)."""
    if is_reserved_id(subject.device_id):
        return BrokerAcl(subject.device_id, False, (), None, engine.generation, context.at,
                         f"device id {subject.device_id!r} is a reserved broker user name")
    if not (may(subject.state, Transport.MQTT_MTLS) or may(subject.state, Transport.MQTT_PSK)):
        return BrokerAcl(subject.device_id, False, (), None, engine.generation, context.at,
                         f"device {subject.device_id!r} is {subject.state}")
    view = engine.view(subject)
    site = engine.site_of(subject)
    values = subject.variables
    if view.blocked:
        return BrokerAcl(subject.device_id, False, (), None, engine.generation, context.at,
                         view.blocked)
    connect = engine.decide(subject, CONNECT, subject.device_id, context)
    changes: list[datetime] = []
    grants: dict[tuple[str, bool], list[tuple[str, ...]]] = {}
    for rule in view.rules:
        window = rule.statement.conditions.time_window
        zone = zone_for(window, site) if window is not None else None
        if window is not None and zone is not None:
            change = next_window_change(window, zone, context.at)
            if change is not None:
                changes.append(change)
        if rule.action not in (PUBLISH, SUBSCRIBE, RECEIVE) or not _applies(rule, subject,
                                                                             context, engine):
            continue
        if rule.pattern is None:
            levels: tuple[str, ...] | None = (HASH,)
        else:
            levels = rule.pattern.substitute(values, widen=rule.deny)
        levels = _broker_safe(levels, deny=rule.deny)
        if levels is not None:
            grants.setdefault((rule.action, rule.deny), []).append(levels)
    entries = _entries(grants)
    return BrokerAcl(
        subject.device_id, connect.allowed, tuple(sorted(set(entries), reverse=True)),
        min(changes) if changes else None, engine.generation, context.at,
        "" if connect.allowed else connect.reason,
    )


def with_children(gateway: BrokerAcl, children: Sequence[BrokerAcl]) -> BrokerAcl:
    """A gateway's ACL with its children's topics: for each child that may connect, the
    entries naming it (compiled for the child: ``${device.id}`` is the child) and the
    child's denies that reach them. Such a deny is carried whole, so it may take from the
    gateway's own topics too (fail closed); nothing a child may not do is granted."""
    if not gateway.can_connect:
        return gateway
    entries = set(gateway.entries)
    spoken: list[str] = []
    until = [gateway.valid_until] if gateway.valid_until is not None else []
    for child in children:
        if not child.can_connect:
            continue
        own = [e for e in child.entries if e.priority > FALLBACK_PRIORITY
               and child.device_id in e.topic.split("/")]
        granted = [tuple(e.topic.split("/")) for e in own if e.allow]
        entries.update(own)
        entries.update(e for e in child.entries if not e.allow and
                       e.priority > FALLBACK_PRIORITY and
                       any(overlap(tuple(e.topic.split("/")), g) for g in granted))
        spoken.append(child.device_id)
        if child.valid_until is not None:
            until.append(child.valid_until)
    # the fallback (deny ``#`` at priority 0) takes nothing an allow of ``#`` grants
    denied = {(e.acltype, e.topic) for e in entries
              if not e.allow and e.priority > FALLBACK_PRIORITY}
    kept = {e for e in entries if not e.allow or (e.acltype, e.topic) not in denied}
    # one entry per type and topic: a role holds one ACL per (type, topic)
    by_key: dict[tuple[AclType, str], AclEntry] = {}
    for entry in sorted(kept, reverse=True):
        by_key.setdefault((entry.acltype, entry.topic), entry)
    return replace(gateway, entries=tuple(sorted(by_key.values(), reverse=True)),
                   valid_until=min(until) if until else None, speaks_for=tuple(spoken))


def with_reports(acl: BrokerAcl, *, gateway: bool) -> BrokerAcl:
    """The namespace kept for gateways' reports (``gateways.models.REPORTS_NAMESPACE``)
    laid over a device's ACL: a gateway may publish on its own report topics and read
    its own answers (``RESERVED_ALLOW``); whatever a device's allows reach there is
    denied (``RESERVED_DENY``, above every policy allow). Every such entry lies in the
    namespace, so the broker sync keeps it in the device's own role, tried before the
    shared allows (``broker.roles.split_rights``)."""
    if not acl.can_connect:
        return acl
    namespace = (REPORTS_NAMESPACE, HASH)
    entries = set(acl.entries)
    reaching = {e.acltype for e in acl.entries if e.allow and e.priority > FALLBACK_PRIORITY
                and overlap(tuple(e.topic.split("/")), namespace)}
    # a subscription reaching in would be granted at the broker; only receive is checked
    # per message, so the receive deny backs it
    if reaching & {AclType.SUBSCRIBE_LITERAL, AclType.SUBSCRIBE_PATTERN}:
        reaching |= {AclType.SUBSCRIBE_PATTERN, AclType.PUBLISH_CLIENT_RECEIVE}
    reaching.discard(AclType.SUBSCRIBE_LITERAL)
    entries.update(AclEntry(RESERVED_DENY, kind, f"{REPORTS_NAMESPACE}/{HASH}", False)
                   for kind in reaching)
    if gateway:
        entries.update((
            AclEntry(RESERVED_ALLOW, AclType.PUBLISH_CLIENT_SEND,
                     report_filter(acl.device_id), True),
            AclEntry(RESERVED_ALLOW, AclType.SUBSCRIBE_PATTERN, answers_topic(acl.device_id),
                     True),
            AclEntry(RESERVED_ALLOW, AclType.PUBLISH_CLIENT_RECEIVE,
                     answers_topic(acl.device_id), True)))
    # one entry per type and topic (a role holds one): the reserved one, tried first
    by_key: dict[tuple[AclType, str], AclEntry] = {}
    for entry in sorted(entries, reverse=True):
        by_key.setdefault((entry.acltype, entry.topic), entry)
    return replace(acl, entries=tuple(sorted(by_key.values(), reverse=True)))


def _applies(rule: Rule, subject: Subject, context: RequestContext, engine: PolicyEngine) -> bool:
    site = engine.site_of(subject)
    answers = [check.answer(subject, context, site) for check in rule.checks]
    if rule.deny:
        return all(a is not False for a in answers)
    return all(a is True for a in answers)


def _broker_safe(levels: tuple[str, ...] | None, *, deny: bool) -> tuple[str, ...] | None:
    if levels is None or not _BROKER_PATTERN_LEVELS.intersection(levels):
        return levels
    if not deny:
        return None
    return tuple(PLUS if level in _BROKER_PATTERN_LEVELS else level for level in levels)


def _entries(grants: dict[tuple[str, bool], list[tuple[str, ...]]]) -> list[AclEntry]:
    entries: list[AclEntry] = []
    sub_denies = grants.get((SUBSCRIBE, True), [])
    for (action, deny), filters in grants.items():
        everything = deny and (HASH,) in filters
        if not deny and (HASH,) in grants.get((action, True), []):
            continue  # an unrestricted deny takes the whole action: its allows are dead
        for levels in ([(HASH,)] if everything else filters):
            topic = "/".join(levels)
            priority = DENY_PRIORITY if deny else ALLOW_PRIORITY
            if action == PUBLISH:
                entries.append(AclEntry(priority, AclType.PUBLISH_CLIENT_SEND, topic, not deny))
            elif action == RECEIVE:
                entries.append(AclEntry(priority, AclType.PUBLISH_CLIENT_RECEIVE, topic,
                                        not deny))
            elif deny:
                entries.append(AclEntry(priority, AclType.SUBSCRIBE_PATTERN, topic, False))
                entries.append(AclEntry(priority, AclType.PUBLISH_CLIENT_RECEIVE, topic, False))
            else:
                literal = not has_wildcard(levels) and not any(
                    overlap(d, levels) for d in sub_denies)
                kind = AclType.SUBSCRIBE_LITERAL if literal else AclType.SUBSCRIBE_PATTERN
                entries.append(AclEntry(priority, kind, topic, True))
    # one topic both allowed and denied for one type: the deny alone is enough
    denied = {(e.acltype, e.topic) for e in entries if not e.allow}
    entries = [e for e in entries if not e.allow or (e.acltype, e.topic) not in denied]
    for acltype in (AclType.PUBLISH_CLIENT_SEND, AclType.SUBSCRIBE_PATTERN,
                    AclType.PUBLISH_CLIENT_RECEIVE):
        entries.append(AclEntry(FALLBACK_PRIORITY, acltype, HASH, False))
    return entries
