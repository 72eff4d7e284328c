"""Reading policy text (YAML or JSON) into located values, and typed field readers.

Every value keeps the line it came from (YAML node marks; JSON has none, so its
errors name the field path). YAML is composed, never constructed into arbitrary
objects (``iotiam.untrusted.compose_yaml`` bounds size and depth and refuses
anchors/aliases (billion laughs) and duplicate keys: two ``effect:`` keys where the
last silently wins); custom tags are refused here. Plain scalars keep their raw text,
so ``start: 18:00`` stays "18:00" instead of YAML 1.1's sexagesimal 1080.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from iotiam.policy.models import PolicySyntaxError, Problem
from iotiam.untrusted import MalformedDocument, check_depth, compose_yaml, load_json

MAX_SOURCE_BYTES = 256 * 1024
MAX_DEPTH = 16
_SAFE_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in
                       ("map", "seq", "str", "int", "float", "bool", "null", "timestamp"))


@dataclass(frozen=True, slots=True)
class Located:
    """A value from a document: dict[str, Located] | list[Located] | scalar, and its line."""

    value: Any
    line: int | None = None
    raw: str | None = None  # a YAML scalar's text as written


def load_source(text: str | bytes, fmt: str = "auto") -> Located:
    """Parse YAML or JSON text (``fmt``: auto, yaml or json) into located values."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PolicySyntaxError([Problem(f"policy is not UTF-8 text ({e.reason})")]) from e
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise PolicySyntaxError([Problem(f"policy is larger than {MAX_SOURCE_BYTES} bytes")])
    if fmt not in ("auto", "yaml", "json"):
        raise ValueError(f"unknown policy format {fmt!r}")
    looks_json = text.lstrip().startswith("{")
    if fmt == "json" or (fmt == "auto" and looks_json):
        try:
            return _load_json(text)
        except PolicySyntaxError:
            if fmt == "json":
                raise
            try:  # a YAML flow mapping also starts with "{"
                return _load_yaml(text)
            except PolicySyntaxError:
                pass
            raise
    return _load_yaml(text)


def wrap(value: Any) -> Located:
    """Plain Python data (a decoded JSON body) as located values without lines."""
    try:
        check_depth(value, max_depth=MAX_DEPTH, what="the policy")
    except MalformedDocument as e:
        raise PolicySyntaxError([Problem(e.detail)]) from None
    return _wrapped(value)


def _wrapped(value: Any) -> Located:
    if isinstance(value, Mapping):
        return Located({str(k): _wrapped(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return Located([_wrapped(v) for v in value])
    return Located(value)


def _load_json(text: str) -> Located:
    try:
        data = load_json(text, what="the policy", max_bytes=MAX_SOURCE_BYTES,
                         max_depth=MAX_DEPTH)
    except MalformedDocument as e:
        raise PolicySyntaxError([Problem(e.detail, line=e.line)]) from None
    return wrap(data)


def _load_yaml(text: str) -> Located:
    try:
        node = compose_yaml(text, what="the policy", max_bytes=MAX_SOURCE_BYTES,
                            max_depth=MAX_DEPTH)
    except MalformedDocument as e:
        raise PolicySyntaxError([Problem(e.detail, line=e.line)]) from None
    if node is None:
        raise PolicySyntaxError([Problem("policy document is empty")])
    return _YamlConverter().convert(node)


class _YamlConverter:
    """Located values from a composed node graph (bounded, with no aliases: see
    ``compose_yaml``), reading scalars with the safe constructor only."""

    def __init__(self) -> None:
        self._scalars = SafeConstructor()

    def convert(self, node: yaml.Node) -> Located:
        """The located value of ``node``."""
        line = node.start_mark.line + 1
        if node.tag not in _SAFE_TAGS:
            raise PolicySyntaxError([Problem(f"YAML tag {node.tag!r} is not allowed", line)])
        if isinstance(node, yaml.MappingNode):
            items: dict[str, Located] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise PolicySyntaxError([Problem("mapping keys must be plain text",
                                                     key_node.start_mark.line + 1)])
                items[key_node.value] = self.convert(value_node)
            return Located(items, line)
        if isinstance(node, yaml.SequenceNode):
            return Located([self.convert(item) for item in node.value], line)
        try:
            value = self._scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError) as e:
            # ValueError: e.g. an integer past Python's digit limit
            raise PolicySyntaxError([Problem(f"bad value {node.value[:64]!r}: {e}", line)]
                                    ) from None
        return Located(value, line, node.value)


# -- typed readers ------------------------------------------------------------------------


class Reader:
    """Collects every problem of a document instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, src: Located | None, where: str, message: str) -> None:
        """Record a problem at ``src``'s line."""
        self.problems.append(Problem(message, src.line if src else None, where))

    def check(self) -> None:
        """Raise PolicySyntaxError if anything was recorded."""
        if self.problems:
            raise PolicySyntaxError(self.problems)

    def mapping(self, src: Located, where: str, what: str) -> dict[str, Located] | None:
        """A mapping, or None after recording a problem."""
        if isinstance(src.value, dict):
            return src.value
        self.fail(src, where, f"{what} must be a mapping")
        return None

    def known_fields(
        self, fields: dict[str, Located], known: Iterable[str], where: str, parent: Located
    ) -> None:
        """Record every field not in ``known``, with a suggestion."""
        names = list(known)
        for key, value in fields.items():
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                line_src = value if value.line else parent
                self.fail(line_src, where, f"field {key!r} is unknown{hint}")

    def text(self, src: Located, where: str, what: str) -> str | None:
        """A string. A YAML scalar read as something else is taken as written: ``18:00``
        stays "18:00" (not YAML 1.1's 1080), ``yes`` stays "yes" (not True)."""
        value = src.value
        if isinstance(value, str):
            return value
        if src.raw is not None and value is not None:
            return src.raw
        self.fail(src, where, f"{what} must be a string")
        return None

    def texts(self, src: Located, where: str, what: str, limit: int) -> list[tuple[str, Located]]:
        """A list of strings (one string counts as a list of one); empty lists refused."""
        items = src.value if isinstance(src.value, list) else [src]
        if not items:
            self.fail(src, where, f"{what} is empty")
            return []
        if len(items) > limit:
            self.fail(src, where, f"{what} has {len(items)} entries; at most {limit}")
            return []
        out = []
        for item in items:
            value = self.text(item, where, f"each of {what}")
            if value is not None:
                out.append((value, item))
        return out

    def integer(self, src: Located, where: str, what: str) -> int | None:
        """An integer (not a boolean)."""
        if isinstance(src.value, int) and not isinstance(src.value, bool):
            return src.value
        self.fail(src, where, f"{what} must be an integer")
        return None

    def number(self, src: Located, where: str, what: str) -> float | None:
        """An int or float (not a boolean)."""
        if isinstance(src.value, int | float) and not isinstance(src.value, bool):
            return float(src.value)
        self.fail(src, where, f"{what} must be a number")
        return None

    def boolean(self, src: Located, where: str, what: str) -> bool | None:
        """true or false."""
        if isinstance(src.value, bool):
            return src.value
        self.fail(src, where, f"{what} must be true or false")
        return None
