"""Statements compiled into rules, and rules grouped into per-action tables.

A ``Rule`` is one (statement, concrete action, resource pattern) of one attachment,
with everything a decision needs precomputed: the regex of client patterns, the
condition checks, the ``StatementRef`` to report and even the ``Permit`` it returns
when it is the only statement allowing a request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iotiam.policy.actions import ACTION_KINDS, SUBSCRIBE, ResourceKind, expand_action
from iotiam.policy.conditions import Check, compile_conditions
from iotiam.policy.models import (
    AttachmentTarget,
    Deny,
    Effect,
    Permit,
    PolicyDocument,
    Site,
    Statement,
    StatementRef,
)
from iotiam.policy.patterns import Pattern, cached_pattern
from iotiam.policy.trie import Node, build_trie
from iotiam.policy.variables import Template

_MATCH_ALL = re.compile(".*", re.DOTALL).fullmatch


@dataclass(frozen=True, slots=True)
class Rule:
    """One (statement, action, resource pattern) of one attachment, ready to match."""

    deny: bool
    action: str
    ref: StatementRef
    statement: Statement
    pattern: Pattern | None  # None: the statement does not restrict resources
    match: Callable[[str], re.Match[str] | None]
    captures: tuple[tuple[int, Template], ...]
    checks: tuple[Check, ...]
    key: str | None  # literal first level (client: the whole id), for dispatch
    permit: Permit  # what this rule answers when it alone allows
    denial: Deny  # what this rule answers when it denies (without notes)

    def captures_agree(self, found: re.Match[str], values: Mapping[str, str | None]) -> bool:
        """Whether each captured variable level equals the subject's value.

        A variable without a safe value disagrees for an allow and agrees for a deny.
        """
        for group, template in self.captures:
            expected = template.render(values)
            if expected is None:
                if not self.deny:
                    return False
            elif found.group(group) != expected:
                return False
        return True


def compile_rules(
    document: PolicyDocument, target: AttachmentTarget | None, sites: Mapping[str, Site]
) -> list[Rule]:
    """The rules of ``document`` attached to ``target``."""
    rules: list[Rule] = []
    seen: set[tuple[str, str | None, int]] = set()
    for index, statement in enumerate(document.statements):
        ref = StatementRef(document.name, document.version, document.label(index), index,
                           statement.effect, target)
        permit = Permit((ref,))
        denial = Deny(f"denied by {ref}", (ref,))
        checks = compile_conditions(statement.conditions, sites)
        deny = statement.effect is Effect.DENY
        for pattern_text in statement.actions:
            for action in expand_action(pattern_text):
                kind = ACTION_KINDS[action]
                texts = statement.resources(kind)
                if statement.restricted and texts is None:
                    continue
                for text in (None,) if texts is None else texts:
                    # an action listed twice (mqtt:* and mqtt:publish) must not double work
                    if (action, text, index) in seen:
                        continue
                    seen.add((action, text, index))
                    if text is None:
                        rules.append(Rule(deny, action, ref, statement, None, _MATCH_ALL, (),
                                          checks, None, permit, denial))
                        continue
                    pattern = cached_pattern(kind, text)
                    regex, captures = pattern.compiled
                    rules.append(Rule(deny, action, ref, statement, pattern, regex.fullmatch,
                                      captures, checks, pattern.first_literal, permit, denial))
    return rules


@dataclass(frozen=True, slots=True)
class ActionTable:
    """The rules of one action in one part of a view, denies apart from allows.

    Topic names and paths are matched through one trie of denies and allows, plus the
    unrestricted rules (``unrestricted``); ``first_levels`` / ``open`` tell, without a
    walk, whether the trie can match a topic at all;
    subscribe filters and client ids through lists keyed by the literal first level
    (client: the whole id), each key's list already holding the unkeyed rules.
    """

    denies: tuple[Rule, ...]
    allows: tuple[Rule, ...]
    deny_by_key: dict[str, tuple[Rule, ...]]
    deny_other: tuple[Rule, ...]
    allow_by_key: dict[str, tuple[Rule, ...]]
    allow_other: tuple[Rule, ...]
    trie: Node | None = None
    first_levels: frozenset[str] = frozenset()
    open: bool = False
    unrestricted: tuple[Rule, ...] = ()


def _keyed(rules: list[Rule]) -> tuple[dict[str, tuple[Rule, ...]], tuple[Rule, ...]]:
    other = tuple(r for r in rules if r.key is None)
    keyed: dict[str, list[Rule]] = {}
    for rule in rules:
        if rule.key is not None:
            keyed.setdefault(rule.key, []).append(rule)
    return {k: (*v, *other) for k, v in keyed.items()}, other


def action_table(action: str, rules: list[Rule], slots: Mapping[str, int]) -> ActionTable:
    """The table of ``rules`` (all of ``action``); ``slots`` numbers the variables."""
    denies = [r for r in rules if r.deny]
    allows = [r for r in rules if not r.deny]
    if action == SUBSCRIBE or ACTION_KINDS[action] is ResourceKind.CLIENT:
        deny_by_key, deny_other = _keyed(denies)
        allow_by_key, allow_other = _keyed(allows)
        return ActionTable(tuple(denies), tuple(allows), deny_by_key, deny_other,
                           allow_by_key, allow_other)
    patterned = [r for r in rules if r.pattern is not None]
    trie = build_trie(patterned, slots) if patterned else None
    return ActionTable(
        tuple(denies), tuple(allows), {}, (), {}, (), trie,
        frozenset(trie.literal) if trie else frozenset(), bool(trie and trie.open),
        tuple(r for r in rules if r.pattern is None),
    )


def action_tables(rules: list[Rule], slots: Mapping[str, int]) -> dict[str, ActionTable]:
    """One table per action the rules cover."""
    per_action: dict[str, list[Rule]] = {}
    for rule in rules:
        per_action.setdefault(rule.action, []).append(rule)
    return {action: action_table(action, group, slots)
            for action, group in per_action.items()}
