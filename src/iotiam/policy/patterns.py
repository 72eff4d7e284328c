"""Resource patterns of statements: topic filters, client ids and HTTP paths with variables.

A pattern is checked once when its policy is written and compiled once per policy
set. Topic filters and paths are split into levels, each a ``Template``; a level
holding a variable is matched by capturing the level and comparing it with the
subject's substituted value, so one compiled pattern serves every device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache

from iotiam.errors import InvalidInput
from iotiam.policy.actions import ResourceKind
from iotiam.policy.topics import HASH, PLUS, check_topic_filter
from iotiam.policy.variables import Template, parse_template

ANY = "*"
MAX_PATH_CHARS = 8192
_CONTROL = re.compile(r"[\x01-\x1f\x7f-\x9f]")
_WILD = Template(PLUS, (PLUS,))
_CAPTURE = "([^/]*)"


@dataclass(frozen=True)
class Pattern:
    """A checked resource pattern: ``levels`` for topics and paths, one level for clients."""

    kind: ResourceKind
    text: str
    levels: tuple[Template, ...]  # empty for the client pattern "*"

    @property
    def matches_anything(self) -> bool:
        """The client pattern ``*``."""
        return not self.levels

    @cached_property
    def first_literal(self) -> str | None:
        """The first level if it is plain text (dispatch key), else None."""
        if not self.levels:
            return None
        first = self.levels[0]
        if not first.is_literal or first.text in (PLUS, HASH):
            return None
        return first.text

    @cached_property
    def has_variables(self) -> bool:
        """Whether any level holds a variable."""
        return any(not level.is_literal for level in self.levels)

    @cached_property
    def compiled(self) -> tuple[re.Pattern[str], tuple[tuple[int, Template], ...]]:
        """A full-match regex and, per capture group, the level template it must equal."""
        if not self.levels:
            return re.compile(".*", re.DOTALL), ()
        if self.kind is ResourceKind.CLIENT:
            level = self.levels[0]
            if level.is_literal:
                return re.compile(re.escape(level.text), re.DOTALL), ()
            return re.compile("(.*)", re.DOTALL), ((1, level),)
        checks: list[tuple[int, Template]] = []
        parts: list[str] = []
        levels = self.levels
        tail = ""
        if levels[-1].text == HASH:
            levels = levels[:-1]
            tail = "(?:/.*)?" if levels else ".*"  # "a/#" also matches its parent "a"
        for level in levels:
            if not level.is_literal:
                parts.append(_CAPTURE)
                checks.append((len(checks) + 1, level))
            elif level.text == PLUS:
                parts.append("[^/]*")
            else:
                parts.append(re.escape(level.text))
        body = "/".join(parts) + tail
        if self.kind is ResourceKind.TOPIC and self.levels[0].text in (PLUS, HASH):
            body = r"(?!\$)" + body  # MQTT §4.7.2: leading wildcards skip $-topics
        return re.compile(body, re.DOTALL), tuple(checks)

    @cached_property
    def static_levels(self) -> tuple[str, ...] | None:
        """The levels as text when there is no variable, else None."""
        return None if self.has_variables else tuple(level.text for level in self.levels)

    def substitute(
        self, values: Mapping[str, str | None], *, widen: bool
    ) -> tuple[str, ...] | None:
        """The levels with variables substituted.

        A level whose variable has no safe value makes the whole pattern None, or with
        ``widen`` (for denies) turns into ``+`` so the deny covers more, never less.
        """
        static = self.static_levels
        if static is not None:
            return static
        out: list[str] = []
        for level in self.levels:
            text = level.render(values)
            if text is None:
                if not widen:
                    return None
                text = PLUS
            out.append(text)
        return tuple(out)


def check_pattern(kind: ResourceKind, text: str) -> Pattern:
    """Validate a resource pattern of ``kind`` (InvalidInput naming what is wrong)."""
    if not isinstance(text, str) or text == "":
        raise InvalidInput(f"a {_NOUN[kind]} must be a non-empty string")
    if _CONTROL.search(text):
        raise InvalidInput(f"{_NOUN[kind]} {text!r} contains a control character")
    if kind is ResourceKind.CLIENT:
        if text == ANY:
            return Pattern(kind, text, ())
        if ANY in text:
            raise InvalidInput(f"client pattern {text!r}: '*' must be the whole pattern")
        if "\x00" in text or len(text.encode("utf-8", "surrogatepass")) > 65535:
            raise InvalidInput(f"client pattern {text!r} has a NUL or is too long")
        return Pattern(kind, text, (parse_template(text, "client pattern"),))
    if kind is ResourceKind.PATH:
        if not text.startswith("/"):
            raise InvalidInput(f"path {text!r} must start with '/'")
        if len(text) > MAX_PATH_CHARS or "?" in text:
            raise InvalidInput(f"path {text!r} is too long or has a query string")
    what = _NOUN[kind]
    check_topic_filter(text, what)
    levels = tuple(
        _WILD if level == PLUS else parse_template(level, what, text)
        for level in text.split("/")
    )
    for level in levels:
        if not level.is_literal and (PLUS in level.text or HASH in level.text):
            raise InvalidInput(f"{what} {text!r}: a wildcard cannot share a level with a variable")
    return Pattern(kind, text, levels)


_NOUN = {
    ResourceKind.TOPIC: "topic filter",
    ResourceKind.CLIENT: "client pattern",
    ResourceKind.PATH: "path",
}


@lru_cache(maxsize=65536)
def cached_pattern(kind: ResourceKind, text: str) -> Pattern:
    """``check_pattern`` for patterns already checked at write time, shared across policies."""
    return check_pattern(kind, text)
