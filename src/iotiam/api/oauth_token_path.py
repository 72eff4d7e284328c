"""The token endpoint without the framework: ``POST /oauth2/token`` thousands of times a second.

The request is read and answered here, exactly as the FastAPI route would (the same
form rules and RFC 6749 §5.2 errors, from ``oauth_wire.py``); everything else goes on
to the app behind. Requests are combined into batches (group commit, a
``iotiam.fast.batching.LoopCombiner`` built by ``group_commits.token_batches``: only the
composition root imports ``iotiam.fast``), each answered by
``AuthorizationServer.issue_tokens`` in one transaction, on the event loop when
SQLite's writer is free and on one worker thread otherwise: under load, one commit
serves many tokens; alone, a request is its own batch and waits for no one.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from iotiam.api.limits import read_body
from iotiam.api.oauth_wire import (
    NO_STORE,
    client_credentials,
    error_answer,
    json_bytes,
    parse_form,
    token_request,
)
from iotiam.api.one_send import send_response
from iotiam.api.tls import CLIENT_CERT_HEADER, client_address, client_certificate_der
from iotiam.bootstrap import Services
from iotiam.errors import IamError
from iotiam.group_commits import token_batches
from iotiam.tokens.models import IssuedToken, TokenRequest

log = logging.getLogger("iotiam.api.oauth")

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path
#: requests answered by one transaction at most (bounds a batch's latency)
MAX_BATCH = 64

Outcome = IssuedToken | IamError
_JSON = (b"content-type", b"application/json")
_NO_STORE_JSON = [*((name.lower().encode(), value.encode()) for name, value in NO_STORE.items()),
                  _JSON]
_PROXY_HEADERS = frozenset({CLIENT_CERT_HEADER.encode(), b"x-forwarded-for"})
_SERVER_ERROR = json_bytes({"error": "server_error",
                            "error_description": "internal error; the error was logged"})


class OAuthTokenFastPath:
    """ASGI middleware answering ``POST /oauth2/token`` itself.

    It sits outside the body size limit: a body declared too large, or not declared at
    all (chunked), goes on to the app behind, which refuses or answers it as usual.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.batcher = token_batches(services, max_batch=MAX_BATCH)
        self._max_body = services.settings.max_body_bytes
        self._trusted = services.settings.trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["path"] != TOKEN_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = _TokenHeaders(scope["headers"])
        if headers.length is None or headers.length > self._max_body:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self._max_body)
        if body is None:
            return  # the client left
        try:
            outcome = await self.batcher.submit(self._request(scope, headers, body))
        except IamError as e:
            outcome = e
        except Exception:
            log.exception("the token endpoint failed")
            await send_response(send, 500, [_JSON], _SERVER_ERROR)
            return
        if isinstance(outcome, IamError):
            status, extra, content = error_answer(outcome, headers.authorization)
            await send_response(send, status, [
                *((k.lower().encode(), v.encode()) for k, v in extra.items()), _JSON],
                json_bytes(content))
            return
        await send_response(send, 200, _NO_STORE_JSON, json_bytes(outcome.to_response()))

    def _request(self, scope: Scope, headers: _TokenHeaders, body: bytes) -> TokenRequest:
        form = parse_form(headers.content_type, body)
        der: bytes | None = scope.get("extensions", {}).get("tls", {}).get("client_cert_der")
        if headers.proxied or not der:
            # what a trusted proxy says it forwarded: read as the framework route reads it
            request = Request(scope)
            der = client_certificate_der(request, self._trusted)
            source = client_address(request, self._trusted)
        else:
            client = scope.get("client")
            source = client[0] if client else "unknown"
        credentials = client_credentials(form, certificate_der=der,
                                         authorization=headers.authorization, source=source)
        return token_request(form, credentials)


class _TokenHeaders:
    """The few request headers the token endpoint reads."""

    __slots__ = ("authorization", "content_type", "length", "proxied")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.content_type = self.authorization = ""
        self.length: int | None = None
        self.proxied = False
        for name, value in raw:
            if name == b"content-length":
                self.length = int(value) if value.isdigit() else None
            elif name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name in _PROXY_HEADERS:
                self.proxied = True
