"""The closed vocabulary of actions a policy statement can name, and what each acts on."""

from __future__ import annotations

import difflib
import enum

from iotiam.errors import InvalidInput


class ResourceKind(enum.StrEnum):
    """What an action acts on; the value is the statement field that lists such resources."""

    TOPIC = "topics"  # MQTT topic filters
    CLIENT = "clients"  # MQTT client ids / enrolled identities (certificate CN)
    PATH = "paths"  # HTTP request paths


CONNECT = "mqtt:connect"
PUBLISH = "mqtt:publish"
SUBSCRIBE = "mqtt:subscribe"
RECEIVE = "mqtt:receive"
ENROLL = "est:enroll"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

#: every concrete action and the kind of resource it is checked against
ACTION_KINDS: dict[str, ResourceKind] = {
    CONNECT: ResourceKind.CLIENT,
    PUBLISH: ResourceKind.TOPIC,
    SUBSCRIBE: ResourceKind.TOPIC,
    RECEIVE: ResourceKind.TOPIC,
    ENROLL: ResourceKind.CLIENT,
    **{f"http:{method}": ResourceKind.PATH for method in HTTP_METHODS},
}
MQTT_ACTIONS = (CONNECT, PUBLISH, SUBSCRIBE, RECEIVE)
TOPIC_ACTIONS = (PUBLISH, SUBSCRIBE, RECEIVE)

#: action wildcards and what they stand for
WILDCARDS: dict[str, tuple[str, ...]] = {
    "*": tuple(ACTION_KINDS),
    "mqtt:*": MQTT_ACTIONS,
    "http:*": tuple(f"http:{method}" for method in HTTP_METHODS),
    "est:*": (ENROLL,),
}


def expand_action(pattern: str) -> tuple[str, ...]:
    """The concrete actions an action or action wildcard stands for (InvalidInput if unknown)."""
    if pattern in ACTION_KINDS:
        return (pattern,)
    if pattern in WILDCARDS:
        return WILDCARDS[pattern]
    hint = ""
    family, _, method = pattern.partition(":")
    if family == "http" and method.upper() in HTTP_METHODS:
        hint = f" (HTTP methods are upper case: 'http:{method.upper()}')"
    else:
        close = difflib.get_close_matches(pattern, [*ACTION_KINDS, *WILDCARDS], n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
    raise InvalidInput(f"action {pattern!r} is unknown{hint}")


def kind_of(action: str) -> ResourceKind:
    """The resource kind of a concrete action (InvalidInput for wildcards and unknown ones)."""
    kind = ACTION_KINDS.get(action)
    if kind is None:
        raise InvalidInput(f"action {action!r} is not a concrete action")
    return kind
