"""Structural diff between two versions of a policy.

Statements are paired by ``sid``; statements without one are paired first with an
identical statement (a move is not a change: order does not matter to decisions),
then by position. Within a pair, list fields (actions, topics, clients, paths,
condition lists) report added and removed entries, other fields old -> new.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from iotiam.errors import InvalidInput
from iotiam.policy.actions import ResourceKind
from iotiam.policy.models import PolicyDocument, Statement


class ChangeKind(enum.StrEnum):
    """What happened to a field or statement."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True, slots=True)
class Change:
    """One difference: where, what kind, and the old and new values."""

    path: str
    kind: ChangeKind
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.kind is ChangeKind.ADDED:
            return f"+ {self.path}: {self.new!r}"
        if self.kind is ChangeKind.REMOVED:
            return f"- {self.path}: {self.old!r}"
        return f"~ {self.path}: {self.old!r} -> {self.new!r}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"path": self.path, "kind": str(self.kind), "old": self.old, "new": self.new}


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    """Every difference from ``from_version`` to ``to_version`` of policy ``name``."""

    name: str
    from_version: int
    to_version: int
    changes: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        """No difference that matters."""
        return not self.changes

    def lines(self) -> list[str]:
        """One line per change, for a CLI."""
        return [str(c) for c in self.changes]


def diff_policies(old: PolicyDocument, new: PolicyDocument) -> PolicyDiff:
    """The structural difference between two versions of one policy."""
    if old.name != new.name:
        raise InvalidInput(f"cannot diff policy {old.name!r} against policy {new.name!r}")
    changes: list[Change] = []
    _value(changes, "description", old.description, new.description)
    _value(changes, "guardrail", old.guardrail, new.guardrail)
    for before, after, label in _pair(old, new):
        path = f"statement {label}"
        if before is None:
            changes.append(Change(path, ChangeKind.ADDED, new=after.to_dict() if after else None))
        elif after is None:
            changes.append(Change(path, ChangeKind.REMOVED, old=before.to_dict()))
        else:
            _statement(changes, path, before, after)
    return PolicyDiff(old.name, old.version, new.version, tuple(changes))


def _pair(
    old: PolicyDocument, new: PolicyDocument
) -> list[tuple[Statement | None, Statement | None, str]]:
    pairs: list[tuple[Statement | None, Statement | None, str]] = []
    new_by_sid = {s.sid: s for s in new.statements if s.sid}
    old_sids = {s.sid for s in old.statements if s.sid}
    for statement in old.statements:
        if statement.sid:
            pairs.append((statement, new_by_sid.get(statement.sid), statement.sid))
    for statement in new.statements:
        if statement.sid and statement.sid not in old_sids:
            pairs.append((None, statement, statement.sid))
    left = [(i, s) for i, s in enumerate(old.statements) if not s.sid]
    right = [(i, s) for i, s in enumerate(new.statements) if not s.sid]
    for i, statement in list(left):  # unchanged statements, wherever they moved
        twin = next(((j, s) for j, s in right if s == statement), None)
        if twin is not None:
            left.remove((i, statement))
            right.remove(twin)
    for (i, before), (j, after) in zip(left, right, strict=False):
        label = str(j + 1) if i == j else f"{i + 1} (now {j + 1})"
        pairs.append((before, after, label))
    pairs += [(s, None, str(i + 1)) for i, s in left[len(right):]]
    pairs += [(None, s, str(j + 1)) for j, s in right[len(left):]]
    return pairs


def _statement(changes: list[Change], path: str, old: Statement, new: Statement) -> None:
    _value(changes, f"{path}: effect", str(old.effect), str(new.effect))
    _items(changes, f"{path}: actions", old.actions, new.actions)
    for kind in ResourceKind:
        before, after = old.resources(kind), new.resources(kind)
        field = f"{path}: {kind.value}"
        if before is None and after is not None:
            changes.append(Change(field, ChangeKind.ADDED, new=list(after)))
        elif before is not None and after is None:
            changes.append(Change(field, ChangeKind.REMOVED, old=list(before)))
        elif before is not None and after is not None:
            _items(changes, field, before, after)
    old_conditions, new_conditions = old.conditions.to_dict(), new.conditions.to_dict()
    for key in dict.fromkeys([*old_conditions, *new_conditions]):
        field = f"{path}: conditions.{key}"
        a, b = old_conditions.get(key), new_conditions.get(key)
        if a is None:
            changes.append(Change(field, ChangeKind.ADDED, new=b))
        elif b is None:
            changes.append(Change(field, ChangeKind.REMOVED, old=a))
        elif isinstance(a, list) and isinstance(b, list):
            _items(changes, field, a, b)
        else:
            _value(changes, field, a, b)


def _value(changes: list[Change], path: str, old: Any, new: Any) -> None:
    if old != new:
        changes.append(Change(path, ChangeKind.CHANGED, old, new))


def _items(changes: list[Change], path: str, old: Any, new: Any) -> None:
    for item in old:
        if item not in new:
            changes.append(Change(path, ChangeKind.REMOVED, old=item))
    for item in new:
        if item not in old:
            changes.append(Change(path, ChangeKind.ADDED, new=item))
