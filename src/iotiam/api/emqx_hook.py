"""The EMQX 5 HTTP authorizer, answered in front of the framework.

EMQX asks before every publish and subscribe of a client that its cache does not
cover, so this endpoint must answer thousands of times a second, and it must fail
closed: EMQX treats any status but 200/204 as "ignore" and then applies its
``no_match`` setting (``allow`` by default). So every answer here is 200 with
``{"result": "allow"}`` or ``{"result": "deny"}``, also for a bad token, a malformed
body, an unknown device or a database hiccup; the reason of a deny goes into the
``x-iotiam-reason`` header for whoever debugs it.

The request body is EMQX's template (JSON, or a form, or the query string of a GET):

    {"clientid": "${clientid}", "username": "${username}", "peerhost": "${peerhost}",
     "topic": "${topic}", "action": "${action}", "qos": "${qos}", "retain": "${retain}"}

``username`` is the device id (with ``peer_cert_as_username = cn``, the certificate
CN); ``clientid`` is chosen by the client and so never names the device. Per request
there is no database query: the bearer token's principal (or its refusal, audited) is
kept for ``TOKEN_CACHE_SECONDS`` and device subjects come from
``DeviceSubjects.cached``, which drops a device as soon as the store says it changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from iotiam.api.limits import read_body
from iotiam.api.one_send import send_response
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.bootstrap import Services
from iotiam.errors import IamError, InvalidInput, Unauthenticated
from iotiam.kernel import ROOT_PATH, Principal
from iotiam.policy.actions import PUBLISH, SUBSCRIBE
from iotiam.policy.mqtt_requests import decide_mqtt_request
from iotiam.untrusted import load_json

log = logging.getLogger("iotiam.api.emqx")

HOOK_PATH = "/v1/hooks/emqx/authz"
#: a topic may be 65,535 bytes; the rest of EMQX's template is small
MAX_HOOK_BODY = 128 * 1024
#: how long an authenticated hook token is trusted without asking the store again
TOKEN_CACHE_SECONDS = 1.0
_TOKEN_CACHE_ENTRIES = 256
#: EMQX's ``${action}`` and the policy action each one is decided as
ACTIONS = {"publish": PUBLISH, "subscribe": SUBSCRIBE}

_ALLOW = b'{"result":"allow"}'
_DENY = b'{"result":"deny"}'
_JSON = (b"content-type", b"application/json")
_FORM = "application/x-www-form-urlencoded"


class MalformedHookRequest(InvalidInput):
    """The hook request is not an EMQX authorization request."""


def hook_fields(content_type: str, body: bytes, query: bytes) -> Mapping[str, Any]:
    """The fields of an EMQX request: a JSON object or a form body, else the query."""
    media = content_type.partition(";")[0].strip().lower()
    if body.strip():
        if media == _FORM:
            return _form(body)
        try:
            fields = load_json(body, what="the body", max_bytes=MAX_HOOK_BODY)
        except InvalidInput as e:
            raise MalformedHookRequest(e.detail) from None
        if not isinstance(fields, dict):
            raise MalformedHookRequest("the body is not a JSON object")
        return fields
    return _form(query)


def _form(data: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(data.decode("utf-8"), keep_blank_values=True,
                              strict_parsing=False, max_num_fields=32))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedHookRequest("the form is not valid") from e


def answer_hook(services: Services, caller: Principal, fields: Mapping[str, Any]
                ) -> tuple[bool, str]:
    """(allowed, reason) for one EMQX request; anything unexpected denies."""
    username = fields.get("username")
    if not isinstance(username, str) or not username:
        return False, "no username: the device id (certificate CN) is the username"
    named = fields.get("action")
    action = ACTIONS.get(named) if isinstance(named, str) else None
    if action is None:
        return False, "action must be 'publish' or 'subscribe'"
    topic = fields.get("topic")
    if not isinstance(topic, str) or not topic:
        return False, "no topic"
    peer = fields.get("peerhost")
    source_ip = peer if isinstance(peer, str) and peer and peer != "undefined" else None
    decision = decide_mqtt_request(services.subjects, services.decisions, username, action,
                                   topic, source_ip=source_ip, visible=caller.sees)
    return decision.allowed, "" if decision.allowed else decision.reason


class EmqxHookFastPath:
    """ASGI middleware answering ``HOOK_PATH`` itself; everything else goes on."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        #: Authorization header -> (principal, None if refused; monotonic expiry)
        self._principals: dict[bytes, tuple[Principal | None, float]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["path"] != HOOK_PATH or \
                scope["method"] not in ("POST", "GET"):
            await self.app(scope, receive, send)
            return
        authorization = content_type = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
        try:
            body = await read_body(receive, MAX_HOOK_BODY)
            allowed, reason = self._answer(authorization, content_type, body,
                                           scope.get("query_string", b""))
        except Exception:  # fail closed, never a 5xx (EMQX would "ignore" it)
            log.exception("the EMQX authorization hook failed; denying")
            allowed, reason = False, "internal error; the error was logged"
        if allowed:
            await send_response(send, 200, [_JSON], _ALLOW)
            return
        await send_response(send, 200, [_JSON, (b"x-iotiam-reason",
                                                header_text(reason).encode())], _DENY)

    def _answer(self, authorization: bytes, content_type: bytes, body: bytes | None,
                query: bytes) -> tuple[bool, str]:
        caller = self._principal(authorization)
        if caller is None:
            return False, "unauthenticated: send a viewer (or higher) admin token as Bearer"
        if body is None:
            return False, f"the request body is larger than {MAX_HOOK_BODY} bytes"
        try:
            fields = hook_fields(content_type.decode("latin-1"), body, query)
            return answer_hook(self.services, caller, fields)
        except IamError as e:
            return False, e.detail

    def _principal(self, authorization: bytes) -> Principal | None:
        known = self._principals.get(authorization)
        now = time.monotonic()
        if known is not None and known[1] > now:
            return known[0]
        scheme, _, value = authorization.decode("latin-1").partition(" ")
        draft = AuditDraft(tag=AuditTag.ACCESS_DENIED, actor="anonymous", org_path=ROOT_PATH,
                           subject=f"POST {HOOK_PATH}")
        caller: Principal | None = None
        try:
            with self.services.audit.refusals(draft):
                if scheme.lower() != "bearer" or not value.strip():
                    raise Unauthenticated("send an admin token as 'Authorization: Bearer …'")
                caller = self.services.admin_tokens.authenticate(value)
        except IamError:
            pass  # refused (and audited): a misconfigured broker is audited once a second
        if len(self._principals) >= _TOKEN_CACHE_ENTRIES:
            self._principals.clear()
        self._principals[authorization] = (caller, now + TOKEN_CACHE_SECONDS)
        return caller


def header_text(reason: str) -> str:
    """A reason fit for a header: one line of printable ASCII, at most 300 characters."""
    if reason.isascii() and reason.isprintable():
        return reason[:300]
    text = reason.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if " " <= c <= "~" else " " for c in text)[:300]
