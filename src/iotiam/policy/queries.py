"""Questions about the compiled policy set: what may a device do, who may do something."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from iotiam.policy.actions import PUBLISH, ResourceKind, kind_of
from iotiam.policy.engine import PolicyEngine
from iotiam.policy.guardrails import patterns_overlap
from iotiam.policy.models import (
    Attachment,
    Decision,
    Deny,
    Effect,
    EffectivePolicy,
    EffectiveStatement,
    Permit,
    RequestContext,
    StatementRef,
    Subject,
)
from iotiam.policy.patterns import check_pattern
from iotiam.policy.rules import Rule
from iotiam.policy.topics import check_topic_filter, covers, overlap


def effective_policy(engine: PolicyEngine, subject: Subject) -> EffectivePolicy:
    """What can ``subject`` do? Its statements after substitution, deny wins shown."""
    view = engine.view(subject)
    if view.blocked:
        return EffectivePolicy(subject.device_id, (), view.blocked)
    values = subject.variables
    grouped: dict[tuple[StatementRef, str | None], list[Rule]] = {}
    substituted: dict[int, tuple[str, ...] | None] = {}
    notes: dict[tuple[StatementRef, str | None], str] = {}
    for rule in view.rules:
        levels: tuple[str, ...] | None = None
        text: str | None = None
        if rule.pattern is not None:
            levels = rule.pattern.substitute(values, widen=rule.deny)
            if levels is None:
                key = (rule.ref, rule.pattern.text)
                notes[key] = "a variable has no safe value: never matches this device"
                grouped.setdefault(key, []).append(rule)
                substituted[id(rule)] = None
                continue
            text = "*" if rule.pattern.matches_anything else "/".join(levels)
        substituted[id(rule)] = levels
        grouped.setdefault((rule.ref, text), []).append(rule)
    denies = [r for r in view.rules if r.deny]
    out: list[EffectiveStatement] = []
    for (ref, text), rules in grouped.items():
        first = rules[0]
        against: dict[StatementRef, bool] = {}
        if not first.deny and (ref, text) not in notes:
            for allow in rules:
                for deny in denies:
                    if deny.action != allow.action:
                        continue
                    hit = _meets(deny, substituted.get(id(deny)), allow,
                                 substituted.get(id(allow)))
                    if hit is not None:
                        against[deny.ref] = against.get(deny.ref, False) or hit
        out.append(EffectiveStatement(
            ref, ref.effect, tuple(dict.fromkeys(r.action for r in rules)), text,
            first.statement.conditions, tuple(against), any(against.values()),
            notes.get((ref, text), ""),
        ))
    out.sort(key=lambda s: (s.effect is Effect.ALLOW, s.ref.policy, s.ref.index))
    return EffectivePolicy(subject.device_id, tuple(out))


def decide_filter(engine: PolicyEngine, subject: Subject, action: str, topic_filter: str,
                  context: RequestContext) -> Decision:
    """Permit a publish or receive on every topic ``topic_filter`` matches, or Deny: an allow
    must cover the filter whole and no deny may meet any of it (token scopes use it)."""
    wanted = check_topic_filter(topic_filter, "scope topic")
    view = engine.view(subject)
    if view.blocked:
        return Deny(view.blocked)
    site = engine.site_of(subject)
    values = subject.variables
    rules = [r for r in view.rules if r.action == action]
    for rule in rules:
        if not rule.deny:
            continue
        levels = rule.pattern.substitute(values, widen=True) if rule.pattern else None
        if rule.pattern is not None and (levels is None or not overlap(levels, wanted)):
            continue
        if all(check.answer(subject, context, site) is not False for check in rule.checks):
            return Deny(f"{rule.ref} denies {action} on part of {topic_filter!r}", (rule.ref,))
    matched = []
    for rule in rules:
        if rule.deny:
            continue
        if rule.pattern is not None:
            levels = rule.pattern.substitute(values, widen=False)
            if levels is None or not covers(levels, wanted):
                continue
        if all(check.answer(subject, context, site) is True for check in rule.checks):
            matched.append(rule.ref)
    if matched:
        return Permit(tuple(dict.fromkeys(matched)))
    return Deny(f"no policy allows {action} on all of {topic_filter!r}")


def _meets(
    deny: Rule, deny_levels: tuple[str, ...] | None, allow: Rule,
    allow_levels: tuple[str, ...] | None,
) -> bool | None:
    """None: no overlap; True: the deny covers the allow entirely and unconditionally."""
    unconditional = deny.statement.conditions.empty
    if deny.pattern is None:
        return unconditional
    if allow.pattern is None or deny_levels is None or allow_levels is None:
        return False
    if deny.pattern.kind is ResourceKind.CLIENT:
        if deny.pattern.matches_anything:
            return unconditional
        if allow.pattern.matches_anything:
            return False
        return unconditional if deny_levels == allow_levels else None
    if not overlap(deny_levels, allow_levels):
        return None
    return unconditional and covers(deny_levels, allow_levels)


@dataclass(frozen=True, slots=True)
class Holder:
    """A device allowed to do something, and which statements allow it."""

    subject: Subject
    decision: Permit


def who_can(
    engine: PolicyEngine,
    action: str,
    resource: str,
    subjects: Iterable[Subject],
    context: RequestContext,
) -> list[Holder]:
    """The subjects whose effective policy permits ``action`` on ``resource`` in ``context``."""
    holders = []
    for subject in subjects:
        decision = engine.decide(subject, action, resource, context)
        if isinstance(decision, Permit):
            holders.append(Holder(subject, decision))
    return holders


def who_can_publish(
    engine: PolicyEngine, topic: str, subjects: Iterable[Subject], context: RequestContext
) -> list[Holder]:
    """Who can publish to ``topic``?"""
    return who_can(engine, PUBLISH, topic, subjects, context)


@dataclass(frozen=True, slots=True)
class TargetGrant:
    """An attachment whose policy has an allow that may match: per device it depends on
    variables and conditions (``conditional``), and a deny may still take it away."""

    attachment: Attachment
    ref: StatementRef
    pattern: str | None
    conditional: bool


def granting_targets(engine: PolicyEngine, action: str, resource: str) -> list[TargetGrant]:
    """Attachment targets with an allow statement that may grant ``action`` on ``resource``."""
    wanted = check_pattern(kind_of(action), resource)
    grants = []
    for attachment, rules in engine.attached_rules():
        for rule in rules:
            if rule.deny or rule.action != action:
                continue
            if patterns_overlap(rule.pattern, wanted):
                variable = rule.pattern is not None and rule.pattern.has_variables
                grants.append(TargetGrant(
                    attachment, rule.ref, rule.pattern.text if rule.pattern else None,
                    variable or not rule.statement.conditions.empty,
                ))
    return grants
