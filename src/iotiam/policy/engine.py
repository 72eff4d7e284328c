"""The policy decision point: policies compiled once into an index, decisions in microseconds.

Compilation (once per policy-set generation): every statement of every attached
policy becomes ``Rule``s (rules.py), indexed by attachment target.

A device's *view* is made of *parts*, each a set of per-action tables (tries for topic
names and paths, keyed lists for subscribe filters and client ids) built once and
shared: the base part (org-unit chain and device-type attachments) by every device
with the same org path and type, a group's part by every member in the same org path,
a device's own part by nobody else. Variables are never substituted into parts: a
level holding ``${device.id}`` is compared with the subject's value while walking, so
parts stay shared. The view of a combination of parts is cached by combination, and
each ``Subject`` object memoises (engine, view, site, variable values) in a private
slot: the memo lives and dies with the subject, and a new engine (policy generation)
is never served an old view. No *decision* is ever cached.

Semantics: default deny; any applicable deny wins over every allow (so a parent
org unit's deny always beats a child's allow); an allow needs every condition True;
a deny applies unless a condition is False (unknown fails closed); a variable without
a safe value makes an allow not match and a deny match that level as ``+``.
Quarantined devices get the quarantine policy's allows instead of their own (their
denies still apply); a device whose lifecycle state may not be decided for
(``inventory.lifecycle``: pending, suspended, decommissioned) or that holds no valid
credential (G3) is denied everything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from iotiam.errors import InvalidInput
from iotiam.inventory.lifecycle import Transport, refusal
from iotiam.inventory.models import DeviceState
from iotiam.kernel import within
from iotiam.policy.actions import ACTION_KINDS, SUBSCRIBE, ResourceKind
from iotiam.policy.defaults import QUARANTINE_POLICY
from iotiam.policy.models import (
    Attachment,
    Decision,
    Deny,
    Permit,
    PolicyDocument,
    RequestContext,
    Site,
    StatementRef,
    Subject,
    TargetKind,
)
from iotiam.policy.rules import ActionTable, Rule, action_tables, compile_rules
from iotiam.policy.topics import (
    HASH,
    MAX_TOPIC_BYTES,
    PLUS,
    check_topic_filter,
    covers,
    overlap,
    split_shared,
)
from iotiam.policy.trie import walk

_SLOW_ACTIONS = frozenset(a for a, k in ACTION_KINDS.items()
                          if a == SUBSCRIBE or k is ResourceKind.CLIENT)


@dataclass(frozen=True, slots=True)
class View:
    """What applies to one combination of attachment targets: per action, the tables of
    every part, and every rule (for queries and the broker compiler)."""

    rules: tuple[Rule, ...]
    tables: dict[str, tuple[ActionTable, ...]]
    blocked: str | None = None  # a reason to deny everything (state, no credential)
    #: the tables of the actions matched by walking tries (topic names, paths)
    walked: dict[str, tuple[ActionTable, ...]] = field(default_factory=dict)


#: (engine, view.walked, site, variable values by slot, view, variable values by name):
#: what a subject object memoises
Memo = tuple["PolicyEngine", dict[str, tuple[ActionTable, ...]], "Site | None",
             tuple["str | None", ...], View, dict[str, "str | None"]]


class PolicyEngine:
    """An immutable compiled policy set (one generation) that answers ``decide``."""

    def __init__(
        self,
        policies: Iterable[PolicyDocument],
        attachments: Iterable[Attachment],
        sites: Iterable[Site] = (),
        *,
        generation: int = 0,
        quarantine: PolicyDocument = QUARANTINE_POLICY,
    ) -> None:
        self.generation = generation
        self.sites: dict[str, Site] = {s.name: s for s in sites}
        self.policies: dict[str, PolicyDocument] = {p.name: p for p in policies}
        self.attachments: tuple[Attachment, ...] = tuple(attachments)
        self._by_target: dict[tuple[TargetKind, str], list[tuple[Attachment, list[Rule]]]] = {}
        for attachment in self.attachments:
            document = self.policies.get(attachment.policy)
            if document is None:
                continue  # attached but deleted: nothing to apply
            rules = compile_rules(document, attachment.target, self.sites)
            key = (attachment.target.kind, attachment.target.id)
            self._by_target.setdefault(key, []).append((attachment, rules))
        self._quarantine = [r for r in compile_rules(quarantine, None, self.sites)
                            if not r.deny]
        # every variable any rule uses gets a slot: a subject's values become a tuple
        self._slots: dict[str, int] = {}
        for rules in [self._quarantine, *(r for e in self._by_target.values() for _, r in e)]:
            for rule in rules:
                for level in rule.pattern.levels if rule.pattern else ():
                    for name in level.variables:
                        self._slots.setdefault(name, len(self._slots))
        self._parts: dict[tuple[object, ...], tuple[list[Rule], dict[str, ActionTable]]] = {}
        self._views: dict[tuple[object, ...], View] = {}

    # -- the decision ---------------------------------------------------------------------

    def decide(
        self, subject: Subject, action: str, resource: str, context: RequestContext
    ) -> Decision:
        """Permit or Deny ``action`` on ``resource`` for ``subject`` in ``context``."""
        try:
            memo: Memo | None = subject._memo
        except AttributeError:  # a copied or unpickled subject: slots not set
            memo = None
        if memo is None or memo[0] is not self:
            memo = self._enter(subject)
        tables = memo[1].get(action)
        if tables is None:
            return self._decide_other(subject, memo, action, resource, context)
        # topic names (mqtt:publish, mqtt:receive) and paths (http:*): the hot path
        if action[0] == "m":
            # plain `in` scans: several times faster than one regex search here
            if (not resource or "+" in resource or "#" in resource or "\x00" in resource
                    or len(resource) > MAX_TOPIC_BYTES // 4 or not resource.isascii()):
                _check_topic_name(resource)
        elif resource[:1] != "/" or "\x00" in resource:
            raise InvalidInput(f"path {resource!r} must start with '/' and have no NUL")
        site = memo[2]
        values = memo[3]
        parts = resource.split("/")
        first = parts[0]
        found: list[Rule] = []
        for table in tables:
            if table.trie is not None and (first in table.first_levels or table.open):
                walk(table.trie, parts, values, memo[5], found)
            if table.unrestricted:
                found += table.unrestricted
        verdict = _verdict(found, subject, context, site)
        if verdict is not None:
            return verdict
        return Deny(f"no policy allows {action} on {resource!r}")

    def _decide_other(
        self, subject: Subject, memo: Memo, action: str, resource: str,
        context: RequestContext,
    ) -> Decision:
        view, site = memo[4], memo[2]
        tables = view.tables.get(action)
        if view.blocked is not None:
            return Deny(view.blocked)
        kind = ACTION_KINDS.get(action)
        if kind is None:
            raise InvalidInput(f"action {action!r} is unknown")
        if action == SUBSCRIBE:
            return _decide_subscribe(subject, resource, context, site, tables or ())
        if kind is ResourceKind.CLIENT:
            return _decide_client(subject, action, resource, context, site, tables or ())
        if kind is ResourceKind.TOPIC:
            _check_topic_name(resource)
        elif resource[:1] != "/":
            raise InvalidInput(f"path {resource!r} must start with '/'")
        return Deny(f"no policy allows {action} on {resource!r}")

    # -- views ----------------------------------------------------------------------------

    def attached_rules(self) -> Iterator[tuple[Attachment, list[Rule]]]:
        """Every attachment with its compiled rules."""
        for entries in self._by_target.values():
            yield from entries

    def view(self, subject: Subject) -> View:
        """What applies to ``subject`` (cached per device)."""
        try:
            memo: Memo | None = subject._memo
        except AttributeError:  # a copied or unpickled subject: slots not set
            memo = None
        if memo is None or memo[0] is not self:
            memo = self._enter(subject)
        return memo[4]

    def view_count(self) -> int:
        """How many distinct views (target combinations) have been built."""
        return len(self._views)

    def site_of(self, subject: Subject) -> Site | None:
        """The known site of ``subject``, if any."""
        return self.sites.get(subject.site) if subject.site else None

    def _enter(self, subject: Subject) -> Memo:
        view = self._view_for(subject)
        named = subject.variables
        values = tuple(named.get(name) for name in self._slots)
        memo: Memo = (self, view.walked, self.site_of(subject), values, view, named)
        object.__setattr__(subject, "_memo", memo)  # a private memo slot, not state
        return memo

    def _view_for(self, subject: Subject) -> View:
        blocked = _blocked(subject)
        if blocked is not None:
            return View((), {}, blocked)
        quarantined = subject.state is DeviceState.QUARANTINED
        own = (TargetKind.DEVICE, subject.device_id) in self._by_target
        key = (subject.org_path, subject.type_name, subject.groups,
               subject.device_id if own else None, quarantined)
        view = self._views.get(key)
        if view is None:
            parts = [self._base_part(subject.org_path, subject.type_name, quarantined)]
            parts += [self._part(TargetKind.GROUP, group, subject.org_path, quarantined)
                      for group in sorted(subject.groups)]
            if own:
                parts.append(self._part(TargetKind.DEVICE, subject.device_id,
                                        subject.org_path, quarantined))
            view = self._views[key] = _merge(parts)
        return view

    def _base_part(
        self, org_path: str, type_name: str, quarantined: bool
    ) -> tuple[list[Rule], dict[str, ActionTable]]:
        key = (TargetKind.ORG_UNIT, org_path, type_name, quarantined)
        part = self._parts.get(key)
        if part is None:
            targets = [(TargetKind.ORG_UNIT, unit) for unit in org_path.strip("/").split("/")]
            targets.append((TargetKind.DEVICE_TYPE, type_name))
            rules = [rule for target in targets for rule in self._rules(target, org_path)]
            if quarantined:
                rules = [r for r in rules if r.deny] + self._quarantine
            part = self._parts[key] = (rules, action_tables(rules, self._slots))
        return part

    def _part(
        self, kind: TargetKind, target_id: str, org_path: str, quarantined: bool
    ) -> tuple[list[Rule], dict[str, ActionTable]]:
        key = (kind, target_id, org_path, quarantined)
        part = self._parts.get(key)
        if part is None:
            rules = self._rules((kind, target_id), org_path)
            if quarantined:
                rules = [r for r in rules if r.deny]
            part = self._parts[key] = (rules, action_tables(rules, self._slots))
        return part

    def _rules(self, target: tuple[TargetKind, str], org_path: str) -> list[Rule]:
        # an attachment reaches only devices inside its scope (G9)
        return [rule for attachment, rules in self._by_target.get(target, ())
                if within(org_path, attachment.scope) for rule in rules]


def _merge(parts: list[tuple[list[Rule], dict[str, ActionTable]]]) -> View:
    tables: dict[str, list[ActionTable]] = {}
    for _rules, part_tables in parts:
        for action, table in part_tables.items():
            tables.setdefault(action, []).append(table)
    rules = tuple(rule for part_rules, _tables in parts for rule in part_rules)
    merged = {action: tuple(ts) for action, ts in tables.items()}
    walked = {action: ts for action, ts in merged.items() if action not in _SLOW_ACTIONS}
    return View(rules, merged, None, walked)


def _verdict(found: list[Rule], subject: Subject, context: RequestContext, site: Site | None
             ) -> Decision | None:
    """Combine the rules a topic or path matched: any applicable deny wins, else the
    Permit of the satisfied allows (one ref per statement); None when nothing allows."""
    # explicit loops, no generators: this is the hot path
    for rule in found:
        if rule.deny:
            for check in rule.checks:
                if check.answer(subject, context, site) is False:
                    break
            else:
                return _denied(rule, subject, context, site)
    permit: Permit | None = None
    refs: list[StatementRef] | None = None
    for rule in found:
        if rule.deny:
            continue
        satisfied = True
        for check in rule.checks:
            if check.answer(subject, context, site) is not True:
                satisfied = False
                break
        if not satisfied:
            continue
        if permit is None:
            permit = rule.permit
            continue
        # one statement can match through several rules: they share one ref object
        ref = rule.ref
        if refs is None:
            refs = [permit.matched[0]]
        for seen in refs:
            if seen is ref:
                break
        else:
            refs.append(ref)
    if refs is not None and len(refs) > 1:
        return Permit(tuple(refs))
    return permit


def _decide_subscribe(
    subject: Subject, resource: str, context: RequestContext, site: Site | None,
    tables: tuple[ActionTable, ...],
) -> Decision:
    """A subscription needs an allowed filter covering it and no denied filter meeting it."""
    inner = split_shared(resource)[1] if resource[:7] == "$share/" else resource
    wanted = check_topic_filter(inner)
    first = wanted[0]
    wild = first in (PLUS, HASH)
    values = subject.variables
    for table in tables:
        for rule in table.denies if wild else table.deny_by_key.get(first, table.deny_other):
            pattern = rule.pattern
            if pattern is not None:
                levels = pattern.substitute(values, widen=True)
                if levels is not None and not overlap(levels, wanted):
                    continue
            for check in rule.checks:
                if check.answer(subject, context, site) is False:
                    break
            else:
                return _denied(rule, subject, context, site, subscribe=True)
    matched: list[Rule] = []
    for table in tables:
        for rule in table.allows if wild else table.allow_by_key.get(first, table.allow_other):
            pattern = rule.pattern
            if pattern is not None:
                levels = pattern.substitute(values, widen=False)
                if levels is None or not covers(levels, wanted):
                    continue
            for check in rule.checks:
                if check.answer(subject, context, site) is not True:
                    break
            else:
                matched.append(rule)
    return _permit(matched) or Deny(f"no policy allows {SUBSCRIBE} on {resource!r} "
                                    "(a subscription must be covered by an allowed filter)")


def _decide_client(
    subject: Subject, action: str, resource: str, context: RequestContext,
    site: Site | None, tables: tuple[ActionTable, ...],
) -> Decision:
    if not resource or "\x00" in resource:
        raise InvalidInput("a client id must be non-empty, without NUL")
    values = subject.variables
    for table in tables:
        for rule in table.deny_by_key.get(resource, table.deny_other):
            found = rule.match(resource)
            if found is None or (rule.captures and not rule.captures_agree(found, values)):
                continue
            if rule.checks and any(c.answer(subject, context, site) is False for c in rule.checks):
                continue
            return _denied(rule, subject, context, site)
    matched: list[Rule] = []
    for table in tables:
        for rule in table.allow_by_key.get(resource, table.allow_other):
            found = rule.match(resource)
            if found is None or (rule.captures and not rule.captures_agree(found, values)):
                continue
            if rule.checks and not all(c.answer(subject, context, site) is True
                                       for c in rule.checks):
                continue
            matched.append(rule)
    return _permit(matched) or Deny(f"no policy allows {action} on {resource!r}")


def _permit(rules: list[Rule]) -> Permit | None:
    """The Permit of the allowing rules (each rule's own when it is alone), or None."""
    if not rules:
        return None
    refs: list[StatementRef] = []
    for rule in rules:
        if not any(seen is rule.ref for seen in refs):  # shared ref objects: identity
            refs.append(rule.ref)
    return rules[0].permit if len(refs) == 1 else Permit(tuple(refs))


def _check_topic_name(resource: str) -> None:
    """Structural checks of a topic name, off the hot path (MQTT §4.7.3, §1.5.4)."""
    if not resource or "\x00" in resource:
        raise InvalidInput(f"topic {resource!r} is empty or contains NUL")
    if "+" in resource or "#" in resource:
        raise InvalidInput(f"topic {resource!r} contains a wildcard; a topic name may not")
    try:
        size = len(resource.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidInput("topic is not valid UTF-8 (lone surrogate)") from e
    if size > MAX_TOPIC_BYTES:
        raise InvalidInput(f"topic is longer than {MAX_TOPIC_BYTES} bytes of UTF-8")


def _denied(
    rule: Rule, subject: Subject, context: RequestContext, site: Site | None,
    *, subscribe: bool = False,
) -> Deny:
    notes = []
    if rule.checks:
        unknown = [c.name for c in rule.checks if c.answer(subject, context, site) is None]
        if unknown:
            notes.append(f"condition {', '.join(unknown)} unknown, fails closed")
    if rule.pattern is not None and rule.pattern.has_variables:
        missing = [v for level in rule.pattern.levels for v in level.variables
                   if subject.variables.get(v) is None]
        if missing:
            notes.append(f"{', '.join(missing)} has no safe value, level widened")
    if subscribe:
        notes.insert(0, "the filter overlaps a denied one")
    if not notes:
        return rule.denial
    return Deny(f"{rule.denial.reason} ({'; '.join(notes)})", rule.denial.matched)


def _blocked(subject: Subject) -> str | None:
    """Why ``subject`` is denied everything whatever the policies say (None: it is not)."""
    refused = refusal(subject.device_id, subject.state, Transport.DECISION)
    if refused is not None:
        return refused
    if subject.credentialed is False:
        # G3: its last certificate revoked or expired, its PSK revoked, no client key
        return (f"device {subject.device_id!r} holds no valid credential (no unrevoked, "
                "unexpired certificate, live PSK or OAuth client key)")
    return None
