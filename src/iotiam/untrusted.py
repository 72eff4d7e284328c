"""Decoding of data that arrives from outside: bounded in size and depth, strict in form.

Every JSON document that an attacker can send (request bodies, JWS headers and claims,
events, imports, manifests, JWKS) goes through :func:`load_json`, and every YAML one
through :func:`compose_yaml`, so that a hostile document is refused the same way
everywhere: an ``InvalidInput`` with one clear line, never a ``RecursionError`` or a
``MemoryError`` escaping into a batch shared with other requests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

import yaml

from iotiam.errors import InvalidInput, PayloadTooLarge

#: deepest nesting any iotiam document needs (policies are the deepest, at ~6)
MAX_DEPTH = 32
#: default bound on a document's size; callers with bigger inputs say so
MAX_BYTES = 1024 * 1024


class MalformedDocument(InvalidInput):
    """A document from outside that is not the well-formed JSON/YAML it must be."""

    kind = "malformed-document"
    title = "Malformed document"

    def __init__(self, detail: str, *, line: int | None = None) -> None:
        super().__init__(detail)
        #: the 1-based line the problem is on, when the decoder knows it
        self.line = line


def load_json(
    data: bytes | str, *, what: str = "the document", max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parse untrusted JSON: size and depth bounded, duplicate keys, NaN and text that is
    not Unicode (a lone surrogate) refused."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{what} is larger than {max_bytes} bytes")
    try:
        if isinstance(data, bytes):  # as json.loads reads bytes (RFC 8259 §8.1), but
            data = data.decode(_encoding(data))  # strictly: no encoded lone surrogate
        elif not data.isascii() and (found := _SURROGATE.search(data)):
            raise _LoneSurrogate(found.group())
        value = _decode(data)
        # RFC 8259 §8.2: "\ud800" is valid JSON but no Unicode text; such a string breaks
        # whatever encodes it later (a database write, an answer). Looked for only in a
        # text with such an escape; a one-character ``in`` first, as most have no
        # backslash at all (measured: 14 ns a JSON line, where ``"\\u" in`` is 160 ns)
        if "\\" in data and _SURROGATE_ESCAPE.search(data):
            _refuse_lone_surrogates(value)
    except _LoneSurrogate as e:
        raise MalformedDocument(f"{what} has a lone surrogate (\\u{ord(e.code):04x}) in a "
                                "string, which is not Unicode text") from None
    except _DuplicateKey as e:
        raise MalformedDocument(f"{what} has the key {e.key!r} twice") from None
    except _NonFiniteNumber as e:
        raise MalformedDocument(f"{what} has {e.literal}, which is not a JSON number") from None
    except RecursionError:
        raise MalformedDocument(f"{what} is nested more than {max_depth} deep") from None
    except UnicodeDecodeError:
        raise MalformedDocument(f"{what} is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise MalformedDocument(
            f"{what} is not valid JSON: {e.msg} (line {e.lineno} column {e.colno})",
            line=e.lineno) from None
    except ValueError as e:  # e.g. an integer past Python's digit limit
        raise MalformedDocument(f"{what} is not valid JSON: {e}") from None
    check_depth(value, max_depth=max_depth, what=what, text=data)
    return value


def check_depth(
    value: Any, *, max_depth: int = MAX_DEPTH, what: str = "the document",
    text: bytes | str | None = None,
) -> None:
    """Refuse a decoded value nested deeper than ``max_depth`` (iteratively, no recursion)."""
    if text is not None and _openings(text) <= max_depth:
        return  # cannot be deeper than the number of brackets it opens
    # one level at a time, keeping only the containers: a bulk import's body has
    # 40,000 strings, which a walk of every node paid a tuple and a pop each for
    level: list[Any] = [value] if isinstance(value, _CONTAINERS) else []
    depth = 1
    while level:
        if depth > max_depth:
            raise MalformedDocument(f"{what} is nested more than {max_depth} deep")
        nested: list[Any] = []
        for node in level:
            children: Iterable[Any] = node.values() if isinstance(node, dict) else node
            nested += [child for child in children if isinstance(child, _CONTAINERS)]
        level = nested
        depth += 1


def compose_yaml(
    text: str, *, what: str = "the document", max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> yaml.Node | None:
    """Compose untrusted YAML into its node graph (None when empty), never into objects.

    Size and depth are bounded before PyYAML's recursive composer could overflow the
    stack; anchors and aliases are refused (an alias expands a node wherever it is
    used: "billion laughs"), and so are two equal keys in one mapping (the last would
    silently win). Tags are left to the caller, which knows which ones it reads.
    """
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise PayloadTooLarge(f"{what} is larger than {max_bytes} bytes")
    try:
        # the reader refuses control characters (YAML 1.1 §5.1) as it is made
        loader = _BoundedComposer(text, what, max_depth)
    except yaml.YAMLError as e:
        raise MalformedDocument(f"{what} is not valid YAML: {' '.join(str(e).split())}"
                                ) from None
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        message = " ".join(str(e.problem or e.context or "invalid YAML").split())
        raise MalformedDocument(f"{what} is not valid YAML: {message}",
                                line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as e:
        raise MalformedDocument(f"{what} is not valid YAML: {e}") from None
    finally:
        loader.dispose()


class _BoundedComposer(yaml.SafeLoader):
    """PyYAML's pure-Python composer with a depth count and no anchors or aliases."""

    def __init__(self, text: str, what: str, max_depth: int) -> None:
        super().__init__(text)
        self._what = what
        self._max_depth = max_depth
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise MalformedDocument(f"{self._what} uses YAML anchors or aliases, which are "
                                    "not allowed", line=line)
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        if self._depth >= self._max_depth:
            raise MalformedDocument(f"{self._what} is nested more than {self._max_depth} "
                                    "deep", line=line)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise MalformedDocument(f"{self._what} has the key {key.value!r} twice",
                                            line=key.start_mark.line + 1)
                seen.add(key.value)
        return node


def _refuse_lone_surrogates(value: Any) -> None:
    """Raise ``_LoneSurrogate`` for the first key or string of ``value`` holding one.

    A surrogate pair escaped in JSON decodes to one character, so any surrogate left in
    a decoded string is a lone one. Iterative: the depth is not checked yet.
    """
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and (found := _SURROGATE.search(node)):
                raise _LoneSurrogate(found.group())
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


_CONTAINERS = (dict, list, tuple)


def _openings(text: bytes | str) -> int:
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{")
    return text.count("[") + text.count("{")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _LoneSurrogate(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _NonFiniteNumber(Exception):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # dict() in C, then a look for the duplicate only when one exists: this runs for
    # every object of every JWS header and payload on the token path
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


def _refuse_constant(literal: str) -> Any:
    raise _NonFiniteNumber(literal)


def _encoding(data: bytes) -> str:
    """``json.detect_encoding``, answered at once for a document that opens with ``{``
    and no NUL (UTF-8: no byte order mark or UTF-16/32 text starts so)."""
    if data[:1] == b"{" and data[1:2] != b"\x00":
        return "utf-8"
    return json.detect_encoding(data)


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``; an object with no white space around it goes straight
    to the C scanner (the two white-space matches cost a third of a JSON line's parse)."""
    if text[:1] != "{" or text[-1:] != "}":
        return _DECODER.decode(text)
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:  # the scanner's "no value here": the decoder says where and what
        return _DECODER.decode(text)
    if end != len(text):  # something after the object: the decoder says where and what
        return _DECODER.decode(text)
    return value


#: a surrogate code point: in a decoded string, one that no pair joined (RFC 3629 §3)
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: a JSON escape of a surrogate (half of a pair, or a lone one)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

# made once and shared, as json.loads shares its own default decoder: json.loads with
# hooks builds a decoder and its C scanner on every call, which cost more than parsing
# a JWS header (measured, CPU time: load_json 4.2 µs this way, 2.7 µs now; json.loads
# alone 2.1 µs)
_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_duplicate_keys,
                            parse_constant=_refuse_constant)
#: the decoder's C scanner: ``(value, end)`` of the JSON value at an index (an attribute
#: JSONDecoder sets in ``__init__``, which typeshed does not declare)
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
