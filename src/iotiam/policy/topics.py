"""MQTT topic names and filters: validation, matching, subsumption and overlap.

Everything here works on *levels*: a topic split at ``/``. Empty levels are legal
(``a//b``, ``/a``, ``a/``) and distinct from missing ones. Rules implemented:

* MQTT 3.1.1 §4.7.1 / MQTT 5 §4.7.1: ``#`` is a whole level and the last one; ``+`` is
  a whole level; both may only appear in filters, never in topic names.
* §4.7.1.2: ``a/#`` also matches the parent level ``a``.
* §4.7.2: a filter starting with a wildcard does not match a topic starting with ``$``.
* §4.7.3: topics are at least one character; §1.5.3 (3.1.1) / §1.5.4 (5): UTF-8, no
  U+0000, at most 65535 bytes encoded.

``fnmatch`` is not an MQTT matcher (``*`` crosses ``/``): never use it for topics.
"""

from __future__ import annotations

from collections.abc import Sequence

from iotiam.errors import InvalidInput

MAX_TOPIC_BYTES = 65535
PLUS = "+"
HASH = "#"
SHARE_PREFIX = "$share/"

Levels = tuple[str, ...]


def _check_string(topic: str, what: str) -> None:
    if not isinstance(topic, str):
        raise InvalidInput(f"{what} must be a string")
    if topic == "":
        raise InvalidInput(f"{what} is empty (MQTT topics have at least one character)")
    if "\x00" in topic:
        raise InvalidInput(f"{what} {topic!r} contains a NUL character")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidInput(f"{what} is not valid UTF-8 (lone surrogate)") from e
    if size > MAX_TOPIC_BYTES:
        raise InvalidInput(
            f"{what} is {size} bytes of UTF-8; MQTT allows at most {MAX_TOPIC_BYTES}"
        )


def check_topic_name(topic: str, what: str = "topic") -> Levels:
    """Validate a topic name (what is published) and return its levels."""
    _check_string(topic, what)
    if PLUS in topic or HASH in topic:
        raise InvalidInput(f"{what} {topic!r} contains a wildcard; a topic name may not")
    return tuple(topic.split("/"))


def check_topic_filter(topic_filter: str, what: str = "topic filter") -> Levels:
    """Validate a topic filter (what is subscribed to) and return its levels."""
    _check_string(topic_filter, what)
    levels = tuple(topic_filter.split("/"))
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if HASH in level and (level != HASH or i != last):
            raise InvalidInput(
                f"{what} {topic_filter!r}: '#' must be a whole level and the last one"
            )
        if PLUS in level and level != PLUS:
            raise InvalidInput(f"{what} {topic_filter!r}: '+' must be a whole level")
    return levels


def split_shared(topic_filter: str) -> tuple[str | None, str]:
    """``$share/<name>/<filter>`` -> (name, filter); other filters -> (None, filter).

    MQTT 5 §4.8.2: the share name is one level without wildcards and the filter after
    it is what the subscription matches; access is judged on that filter.
    """
    if not topic_filter.startswith(SHARE_PREFIX):
        return None, topic_filter
    name, sep, inner = topic_filter[len(SHARE_PREFIX):].partition("/")
    if not sep or not name or PLUS in name or HASH in name or not inner:
        raise InvalidInput(f"shared subscription {topic_filter!r} is malformed: "
                           "use $share/<name>/<filter>")
    return name, inner


def has_wildcard(levels: Sequence[str]) -> bool:
    """Whether any level is ``+`` or ``#``."""
    return any(level in (PLUS, HASH) for level in levels)


def _dollar_blocked(filter_first: str, topic_first: str) -> bool:
    # MQTT §4.7.2: leading wildcards never match $-topics ($SYS/..., $CONTROL/...)
    return filter_first in (PLUS, HASH) and topic_first.startswith("$")


def matches(topic_filter: Levels, topic: Levels) -> bool:
    """Whether the filter matches the topic name (both given as levels)."""
    if _dollar_blocked(topic_filter[0], topic[0]):
        return False
    n = len(topic)
    for i, level in enumerate(topic_filter):
        if level == HASH:
            return True  # also the parent: "a/#" matches "a" (§4.7.1.2)
        if i >= n:
            return False
        if level != PLUS and level != topic[i]:
            return False
    return len(topic_filter) == n


def covers(outer: Levels, inner: Levels) -> bool:
    """Whether every topic ``inner`` can match is also matched by ``outer``.

    This is what a subscribe check needs: a subscription to ``inner`` may only be
    granted by an allowed filter ``outer`` that covers it.
    """
    if outer[0] in (PLUS, HASH) and inner[0] not in (PLUS, HASH) and inner[0].startswith("$"):
        return False
    n = len(inner)
    for i, level in enumerate(outer):
        if level == HASH:
            return True  # covers the rest, whatever it is
        if i >= n:
            return False
        mine = inner[i]
        if mine == HASH:
            return False  # inner reaches deeper (and the parent) than a single level
        if level == PLUS:
            continue
        if mine != level:
            return False  # a literal covers only the same literal, never '+'
    return len(outer) == n


def overlap(a: Levels, b: Levels) -> bool:
    """Whether some topic name is matched by both filters."""
    first_a, first_b = a[0], b[0]
    # $-topics are reachable only by filters with a literal first level
    if _dollar_blocked(first_a, first_b) or _dollar_blocked(first_b, first_a):
        return False
    shorter = min(len(a), len(b))
    for i in range(shorter):
        x, y = a[i], b[i]
        if x == HASH or y == HASH:
            return True
        if x != y and x != PLUS and y != PLUS:
            return False
    if len(a) == len(b):
        return True
    # one goes on: only a '#' right after the other's end still meets it (the parent)
    longer = a if len(a) > len(b) else b
    return longer[shorter] == HASH

