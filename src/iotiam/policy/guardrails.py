"""Write-time checks: guardrails a child may not grant past, and delegated admins' reach.

At decision time a parent's deny already wins over every child allow (deny wins).
These checks refuse, when a policy is written or attached, an allow that would
*overlap* a guardrail's deny, so a child admin learns at once instead of shipping a
rule that silently never works. Overlap is decided conservatively:

* actions overlap when both statements cover the same concrete action
  (``mqtt:*`` covers ``mqtt:publish``);
* resources overlap when some resource could match both patterns: topic filters and
  paths intersect level by level (``+`` meets any level, ``#`` the rest, MQTT §4.7.2
  for ``$`` topics); a level holding a variable may be any value its literal text
  allows (``dev-${device.id}`` meets ``dev-7`` but not ``cam-7``); an unrestricted
  statement overlaps everything;
* conditions are ignored: a conditional guardrail deny still refuses an overlapping
  allow, whatever the allow's conditions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from iotiam.errors import Forbidden
from iotiam.kernel import Principal
from iotiam.policy.actions import ResourceKind
from iotiam.policy.models import (
    Attachment,
    AttachmentTarget,
    GuardrailConflict,
    GuardrailViolation,
    PolicyDocument,
    TargetKind,
)
from iotiam.policy.patterns import Pattern
from iotiam.policy.rules import Rule, compile_rules
from iotiam.policy.topics import HASH, PLUS
from iotiam.policy.variables import Template


@dataclass(frozen=True, slots=True)
class Guardrail:
    """A guardrail policy as attached to an org unit."""

    document: PolicyDocument
    attachment: Attachment


def levels_may_meet(a: Template, b: Template) -> bool:
    """Whether one (non-``#``) level pattern and another can match the same level."""
    if a.text == PLUS or b.text == PLUS:
        return True
    if a.is_literal and b.is_literal:
        return a.text == b.text
    if a.is_literal:
        return _level_regex(b).fullmatch(a.text) is not None
    if b.is_literal:
        return _level_regex(a).fullmatch(b.text) is not None
    return True  # two templates: assume some subjects make them equal


@lru_cache(maxsize=4096)
def _level_regex(template: Template) -> re.Pattern[str]:
    return re.compile(template.regex("[^/]+"), re.DOTALL)


def patterns_overlap(a: Pattern | None, b: Pattern | None) -> bool:
    """Whether some resource could match both patterns (None: unrestricted)."""
    if a is None or b is None:
        return True
    if a.kind is ResourceKind.CLIENT:
        if a.matches_anything or b.matches_anything:
            return True
        return levels_may_meet(a.levels[0], b.levels[0])
    x, y = a.levels, b.levels
    if a.kind is ResourceKind.TOPIC and (_dollar_only(x[0], y[0]) or _dollar_only(y[0], x[0])):
        return False
    for i in range(max(len(x), len(y))):
        p = x[i] if i < len(x) else None
        q = y[i] if i < len(y) else None
        if (p is not None and p.text == HASH) or (q is not None and q.text == HASH):
            return True
        if p is None or q is None:
            return False
        if not levels_may_meet(p, q):
            return False
    return True


def _dollar_only(wild: Template, other: Template) -> bool:
    # MQTT §4.7.2: a leading wildcard never reaches a $-topic
    return wild.text in (PLUS, HASH) and other.is_literal and other.text.startswith("$")


def guardrail_conflicts(
    candidate: PolicyDocument, scopes: Iterable[str], guardrails: Iterable[Guardrail]
) -> list[GuardrailConflict]:
    """The candidate's allows that overlap a guardrail deny at or above any of ``scopes``."""
    scopes = list(scopes)
    allows = [r for r in compile_rules(candidate, None, {}) if not r.deny]
    conflicts: list[GuardrailConflict] = []
    for guardrail in guardrails:
        attachment = guardrail.attachment
        if (not guardrail.document.guardrail
                or guardrail.document.name == candidate.name
                or attachment.target.kind is not TargetKind.ORG_UNIT
                or not any(scope.startswith(attachment.scope) for scope in scopes)):
            continue
        denies = [r for r in compile_rules(guardrail.document, attachment.target, {}) if r.deny]
        for allow in allows:
            for deny in denies:
                if allow.action == deny.action and patterns_overlap(allow.pattern, deny.pattern):
                    conflicts.append(_conflict(allow, deny, attachment.scope))
                    break
    return _one_per_statement_action(conflicts)


def _conflict(allow: Rule, deny: Rule, scope: str) -> GuardrailConflict:
    granted = repr(allow.pattern.text) if allow.pattern else "any resource"
    denied = repr(deny.pattern.text) if deny.pattern else "any resource"
    return GuardrailConflict(allow.ref.statement, allow.action, deny.ref, scope,
                             f"{granted} (denied there: {denied})")


def _one_per_statement_action(conflicts: list[GuardrailConflict]) -> list[GuardrailConflict]:
    seen: set[tuple[str, str]] = set()
    out = []
    for conflict in conflicts:
        if (conflict.statement, conflict.action) not in seen:
            seen.add((conflict.statement, conflict.action))
            out.append(conflict)
    return out


def check_guardrails(
    candidate: PolicyDocument, scopes: Iterable[str], guardrails: Iterable[Guardrail]
) -> None:
    """Refuse (GuardrailViolation) a candidate granting what a guardrail above denies."""
    conflicts = guardrail_conflicts(candidate, scopes, guardrails)
    if conflicts:
        raise GuardrailViolation(conflicts)


def check_delegation(
    actor: Principal,
    *,
    owner_path: str,
    targets: Iterable[tuple[AttachmentTarget, str]] = (),
    editing: bool = True,
) -> None:
    """A delegated admin scoped to P writes policies owned inside P, attached inside P.

    ``targets`` are (target, scope) pairs. ``editing`` False (attaching an existing
    policy) lets an admin use a policy owned above them, e.g. the root's baseline. A
    policy is attached only inside its owner's subtree, so whoever may edit it never
    reaches devices outside their own scope (G9).
    """
    if editing and not actor.sees(owner_path):
        raise Forbidden(f"the policy belongs to {owner_path}, outside your scope "
                        f"{actor.org_path}")
    for target, scope in targets:
        if not actor.sees(scope):
            raise Forbidden(f"{target} (at {scope}) is outside your scope {actor.org_path}")
        if not scope.startswith(owner_path):
            raise Forbidden(f"a policy owned by {owner_path} cannot be attached to {target} "
                            f"at {scope}, outside its owner's subtree")
