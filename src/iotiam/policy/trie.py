"""A level trie of topic filters (or paths) with variables resolved while walking.

One trie holds the filters of one action (denies and allows together) in one part of
a view. Walking a topic visits, per level, the literal child, the ``+`` child and each
variable child whose subject value equals the level, and collects the rules of ``#``
nodes passed and of the nodes where the topic ends. The cost follows the topic's depth
and the branches that really match, not the number of rules.

Variables are compared, never substituted into the trie, so one trie serves every
device of the part. A variable without a safe value (None) never matches for an allow;
for a deny it matches any level (the deny widens, never narrows). That case is rare
and walked separately, collecting denies only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from iotiam.policy.topics import HASH, PLUS
from iotiam.policy.variables import Template

if TYPE_CHECKING:
    from iotiam.policy.rules import Rule


class Node:
    """One level: children by literal, ``+`` and variable, and the rules ending here."""

    __slots__ = ("end", "hash", "literal", "plus", "variables")

    def __init__(self) -> None:
        self.literal: dict[str, Node] = {}
        self.plus: Node | None = None
        # (slot of the variable if the level is exactly one variable, else -1; the level;
        # the child)
        self.variables: list[tuple[int, Template, Node]] = []
        self.hash: list[Rule] = []  # filters "<path to here>/#"
        self.end: list[Rule] = []  # filters ending exactly here

    def child(self, level: Template, slots: Mapping[str, int]) -> Node:
        """The child for ``level`` (created if missing)."""
        if level.text == PLUS:
            if self.plus is None:
                self.plus = Node()
            return self.plus
        if level.is_literal:
            node = self.literal.get(level.text)
            if node is None:
                node = self.literal[level.text] = Node()
            return node
        for _slot, template, node in self.variables:
            if template == level:
                return node
        node = Node()
        whole = len(level.parts) == 3 and not level.parts[0] and not level.parts[2]
        self.variables.append((slots[level.parts[1]] if whole else -1, level, node))
        return node

    @property
    def open(self) -> bool:
        """Whether a topic whose first level is not a literal child may still match."""
        return bool(self.plus or self.hash or self.variables)


def build_trie(rules: list[Rule], slots: Mapping[str, int]) -> Node:
    """A trie of the rules' patterns (every rule must have one, of topic or path kind).

    ``slots`` numbers the variables: a subject's values come as a tuple in that order.
    """
    root = Node()
    for rule in rules:
        assert rule.pattern is not None
        node = root
        for level in rule.pattern.levels:
            if level.text == HASH:
                node.hash.append(rule)
                break
            node = node.child(level, slots)
        else:
            node.end.append(rule)
    return root


def walk(root: Node, parts: list[str], values: tuple[str | None, ...],
         named: Mapping[str, str | None], found: list[Rule]) -> None:
    """Append to ``found`` the rules whose filter matches the topic ``parts`` (its levels).

    ``values`` are the subject's variable values by slot, ``named`` the same by name (for
    levels mixing text and variables).
    """
    widened: list[tuple[int, Node]] | None = None
    level = parts[0]
    following: list[Node] = []
    # MQTT §4.7.2: '#', '+' and a widened variable as first level skip $-topics
    open_first = level[:1] != "$"
    if root.hash and open_first:
        found += root.hash
    child = root.literal.get(level)
    if child is not None:
        following.append(child)
    if root.plus is not None and open_first:
        following.append(root.plus)
    for slot, template, child in root.variables:
        value = values[slot] if slot >= 0 else template.render(named)
        if value == level:
            following.append(child)
        elif value is None and open_first:
            widened = [(1, child)]
    depth = 1
    for level in parts[1:] if following else ():
        frontier, following = following, []
        for node in frontier:
            if node.hash:
                found += node.hash
            child = node.literal.get(level)
            if child is not None:
                following.append(child)
            if node.plus is not None:
                following.append(node.plus)
            for slot, template, child in node.variables:
                value = values[slot] if slot >= 0 else template.render(named)
                if value == level:
                    following.append(child)
                elif value is None:
                    widened = [*(widened or ()), (depth + 1, child)]
        if not following:
            break
        depth += 1
    else:
        for node in following:
            found += node.end
            found += node.hash  # "a/#" also matches "a" (§4.7.1.2)
    if widened:
        found += _walk_widened(widened, parts, values, named)


def _walk_widened(
    starts: list[tuple[int, Node]], parts: list[str], values: tuple[str | None, ...],
    named: Mapping[str, str | None],
) -> list[Rule]:
    """Deny rules under nodes entered through a variable without a safe value."""
    found: list[Rule] = []
    stack = list(starts)
    while stack:
        depth, node = stack.pop()
        found.extend(r for r in node.hash if r.deny)
        if depth == len(parts):
            found.extend(r for r in node.end if r.deny)
            continue
        level = parts[depth]
        child = node.literal.get(level)
        if child is not None:
            stack.append((depth + 1, child))
        if node.plus is not None:
            stack.append((depth + 1, node.plus))
        for slot, template, child in node.variables:
            value = values[slot] if slot >= 0 else template.render(named)
            if value is None or value == level:
                stack.append((depth + 1, child))
    return found
