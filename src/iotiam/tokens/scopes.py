"""Scopes are policy actions on resources, so the policy decision point grants them.

A scope is ``<action>:<resource>`` with a concrete action of the policy vocabulary
(``policy/actions.py``):

* ``mqtt:publish:<topic or filter>``, ``mqtt:subscribe:<filter>``,
  ``mqtt:receive:<topic or filter>`` — e.g. ``mqtt:publish:devices/d1/telemetry``;
* ``mqtt:connect:<client id>``;
* ``http:<METHOD>:<path>`` — e.g. ``http:GET:/readings``.

A client registers the scopes it may ask for; every time a token is issued each scope
is also put to the PDP for the client's subject (the device, or for a service client
a subject with the client id, type ``service`` and its org unit) in the current
context. A topic filter with wildcards is granted only if an allow covers all of it
and no deny meets any of it, as for subscriptions. So a policy change, quarantine or
a guardrail shows in the next token, never later.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable

from iotiam.clock import Clock
from iotiam.errors import InvalidInput
from iotiam.inventory.models import Device
from iotiam.policy.actions import ACTION_KINDS, PUBLISH, RECEIVE, SUBSCRIBE, ResourceKind
from iotiam.policy.models import (
    Decision,
    Deny,
    DevicePosture,
    IpAddress,
    RequestContext,
    Subject,
)
from iotiam.policy.ports import PolicyDecisions
from iotiam.policy.topics import HASH, PLUS, check_topic_filter
from iotiam.tokens.models import InvalidScope, OAuthClient

MAX_SCOPES = 50
MAX_SCOPE_LENGTH = 512
#: RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
SERVICE_TYPE = "service"


#: longest first, so that an action that prefixes another never shadows it
_ACTIONS_LONGEST_FIRST = tuple(sorted(ACTION_KINDS, key=len, reverse=True))


def parse_scope(text: str) -> tuple[str, str]:
    """Split a scope into (action, resource), or raise InvalidScope."""
    if not _SCOPE_TOKEN.fullmatch(text) or len(text) > MAX_SCOPE_LENGTH:
        raise InvalidScope(f"scope {text[:60]!r} is not an RFC 6749 scope token")
    for action in _ACTIONS_LONGEST_FIRST:
        if text.startswith(action + ":") and len(text) > len(action) + 1:
            return action, text[len(action) + 1:]
    raise InvalidScope(f"scope {text[:60]!r} must be <action>:<resource> with a policy "
                       "action such as mqtt:publish, mqtt:subscribe or http:GET")


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> IpAddress | None:
    """A request's source address; None (unknown: conditions on it fail) if malformed."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


#: how each kind of resource is shown in a scope's form
_PLACEHOLDERS = {ResourceKind.TOPIC: "{topic-or-filter}", ResourceKind.CLIENT: "{client-id}",
                 ResourceKind.PATH: "{path}"}


def scope_forms() -> list[str]:
    """RFC 8414 ``scopes_supported``: the form of every scope, one per policy action.

    A scope names a resource (``mqtt:publish:devices/d1/telemetry``), so the set of
    scopes is not finite: each action is listed with a placeholder for its resource.
    """
    return [f"{action}:{_PLACEHOLDERS[kind]}" for action, kind in ACTION_KINDS.items()]


def split_scopes(text: str | None) -> tuple[str, ...] | None:
    """RFC 6749 §3.3: space-delimited, order-insensitive, duplicates collapsed."""
    if text is None:
        return None
    parts = tuple(dict.fromkeys(p for p in text.split(" ") if p))
    if not parts:
        raise InvalidScope("scope is empty")
    if len(parts) > MAX_SCOPES:
        raise InvalidScope(f"at most {MAX_SCOPES} scopes per request")
    for part in parts:
        parse_scope(part)
    return parts


def check_registered(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validate scopes an admin registers for a client."""
    found = tuple(dict.fromkeys(scopes))
    if len(found) > MAX_SCOPES:
        raise InvalidInput(f"a client may register at most {MAX_SCOPES} scopes")
    for scope in found:
        try:
            action, resource = parse_scope(scope)
            _check_resource(action, resource)
        except InvalidScope as e:
            raise InvalidInput(e.detail) from e
    return found


def _check_resource(action: str, resource: str) -> None:
    kind = ACTION_KINDS[action]
    try:
        if kind is ResourceKind.TOPIC:
            check_topic_filter(resource, "scope topic")
        elif kind is ResourceKind.PATH and not resource.startswith("/"):
            raise InvalidInput(f"scope path {resource!r} must start with '/'")
    except InvalidInput as e:
        raise InvalidScope(e.detail) from e


def subject_of(client: OAuthClient, device: Device | None, groups: Iterable[str] = (),
               posture: DevicePosture | None = None) -> Subject:
    """The PDP subject a client's scopes are judged for (a device's with its posture)."""
    if device is not None:
        return Subject.from_device(device, groups, posture)
    return Subject(device_id=client.client_id, type_name=SERVICE_TYPE,
                   org_unit_id=client.org_unit_id, org_path=client.org_path)


class ScopeGrant:
    """Puts scopes to the policy decision point."""

    def __init__(self, decisions: PolicyDecisions, clock: Clock) -> None:
        self._decisions = decisions
        self._clock = clock

    def decide(self, subject: Subject, scope: str, *, source_ip: str | None = None
               ) -> Decision:
        """Permit or Deny one scope for ``subject`` now."""
        action, resource = parse_scope(scope)
        _check_resource(action, resource)
        context = RequestContext(self._clock.now(), _address(source_ip) if source_ip else None)
        if action in (PUBLISH, RECEIVE) and (PLUS in resource or HASH in resource):
            return self._decisions.decide_filter(subject, action, resource, context)
        try:
            return self._decisions.decide_in(subject, action, resource, context)
        except InvalidInput as e:
            raise InvalidScope(e.detail) from e

    def grant(self, client: OAuthClient, subject: Subject, requested: tuple[str, ...] | None,
              *, source_ip: str | None = None) -> tuple[str, ...]:
        """The scopes to put in a token: asked-for ones must all pass, defaults are filtered."""
        if requested is None:
            granted = tuple(s for s in client.scopes
                            if self.decide(subject, s, source_ip=source_ip).allowed)
            if not granted:
                raise InvalidScope("no scope was requested and policy allows none of the "
                                   "client's registered scopes")
            return granted
        for scope in requested:
            if scope not in client.scopes:
                raise InvalidScope(f"scope {scope!r} is not registered for client "
                                   f"{client.client_id!r}")
            decision = self.decide(subject, scope, source_ip=source_ip)
            if isinstance(decision, Deny):
                raise InvalidScope(f"scope {scope!r} is refused by policy: {decision.reason}")
        return requested


__all__ = ["SUBSCRIBE", "ScopeGrant", "check_registered", "parse_scope", "split_scopes",
           "subject_of"]
