"""Decoding of data that arrives from outside: bounded in size and depth, strict in form.

Every JSON document that an attacker can send (request bodies, JWS headers and claims,
events, imports, manifests, JWKS) goes through :func:`load_json`, so that a hostile
document is refused the same way everywhere: an ``InvalidInput`` with one clear line,
never a ``RecursionError`` or a ``MemoryError`` escaping into a batch shared with
other requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from iotiam.errors import InvalidInput, PayloadTooLarge

#: deepest nesting any iotiam document needs (policies are the deepest, at ~6)
MAX_DEPTH = 32
#: default bound on a document's size; callers with bigger inputs say so
MAX_BYTES = 1024 * 1024


class MalformedDocument(InvalidInput):
    """A document from outside that is not the well-formed JSON/YAML it must be."""

    kind = "malformed-document"
    title = "Malformed document"


def load_json(
    data: bytes | str, *, what: str = "the document", max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
) -> Any:
    """Parse untrusted JSON: size and depth bounded, duplicate keys and NaN refused."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"{what} is larger than {max_bytes} bytes")
    try:
        value = json.loads(data, object_pairs_hook=_refuse_duplicate_keys,
                           parse_constant=_refuse_constant)
    except _DuplicateKey as e:
        raise MalformedDocument(f"{what} has the key {e.key!r} twice") from None
    except _NonFiniteNumber as e:
        raise MalformedDocument(f"{what} has {e.literal}, which is not a JSON number") from None
    except RecursionError:
        raise MalformedDocument(f"{what} is nested more than {max_depth} deep") from None
    except UnicodeDecodeError:
        raise MalformedDocument(f"{what} is not UTF-8") from None
    except ValueError as e:
        message = (f"{e.msg} at line {e.lineno} column {e.colno}"
                   if isinstance(e, json.JSONDecodeError) else str(e))
        raise MalformedDocument(f"{what} is not valid JSON: {message}") from None
    check_depth(value, max_depth=max_depth, what=what, text=data)
    return value


def check_depth(
    value: Any, *, max_depth: int = MAX_DEPTH, what: str = "the document",
    text: bytes | str | None = None,
) -> None:
    """Refuse a decoded value nested deeper than ``max_depth`` (iteratively, no recursion)."""
    if text is not None and _openings(text) <= max_depth:
        return  # cannot be deeper than the number of brackets it opens
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > max_depth:
            raise MalformedDocument(f"{what} is nested more than {max_depth} deep")
        stack.extend((child, depth + 1) for child in children)


def _openings(text: bytes | str) -> int:
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{")
    return text.count("[") + text.count("{")


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _NonFiniteNumber(Exception):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(literal: str) -> Any:
    raise _NonFiniteNumber(literal)
