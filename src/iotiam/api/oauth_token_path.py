"""The token endpoint without the framework: ``POST /oauth2/token`` thousands of times a second.

The request is read and answered here, exactly as the FastAPI route would (the same
form rules and RFC 6749 §5.2 errors, from ``oauth_wire.py``); everything else goes on
to the app behind. Requests that arrive while a batch is with the database wait for
the next one, and a batch is answered by ``AuthorizationServer.issue_tokens`` in one
transaction (group commit), on the event loop when SQLite's writer is free and on one
worker thread otherwise (``TokenBatcher``): under load, one commit serves many tokens;
alone, a request is its own batch and waits for no one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

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
from iotiam.api.tls import CLIENT_CERT_HEADER, client_address, client_certificate_der
from iotiam.bootstrap import Services
from iotiam.errors import IamError
from iotiam.tokens.models import IssuedToken, TokenRequest

log = logging.getLogger("iotiam.api.oauth")

TOKEN_PATH = "/oauth2/token"  # noqa: S105 - a path
#: requests answered by one transaction at most (bounds a batch's latency)
MAX_BATCH = 64

Outcome = IssuedToken | IamError
_JSON = (b"content-type", b"application/json")
_NO_STORE = [(name.lower().encode(), value.encode()) for name, value in NO_STORE.items()]
_PROXY_HEADERS = frozenset({CLIENT_CERT_HEADER.encode(), b"x-forwarded-for"})
_SERVER_ERROR = json_bytes({"error": "server_error",
                            "error_description": "internal error; the error was logged"})


class TokenBatcher:
    """Gathers concurrent token requests into batches, answered one batch at a time.

    A batch runs on the event loop itself when ``writer_if_free`` holds the database's
    writer without waiting (SQLite, no other writer at that moment): no thread hand-off,
    and no contention for the GIL with a worker thread, which costs about a fifth of the
    endpoint's CPU (measured). When the writer is taken, or on PostgreSQL (where every
    statement waits on the network), batches go to one worker thread, so the loop never
    waits on a lock or a socket.
    """

    def __init__(self, issue: Callable[[Sequence[TokenRequest]], list[Outcome]],
                 writer_if_free: Callable[[], AbstractContextManager[bool]] | None = None
                 ) -> None:
        self._issue = issue
        self._writer_if_free = writer_if_free
        self._lock = threading.Lock()
        self._waiting: list[tuple[TokenRequest, asyncio.Future[Outcome]]] = []
        self._running = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oauth-tokens")

    async def issue(self, request: TokenRequest) -> Outcome:
        """The token or the error for one request (raises what a bug raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        with self._lock:
            self._waiting.append((request, future))
            start = not self._running
            self._running = True
        if start:
            if self._writer_if_free is None:
                self._thread.submit(self._drain)
            else:
                # after the requests this loop iteration reads: they join the batch
                loop.call_soon(self._drain_here)
        return await future

    def _drain_here(self) -> None:
        """One batch on the event loop if the writer is free, else hand over to the thread."""
        assert self._writer_if_free is not None
        answered = None
        try:
            with self._writer_if_free() as free:
                if free:
                    answered = self._answer(self._next_batch())
        except Exception:  # the lock itself failed: the thread's way waits for it
            log.exception("taking the database writer failed")
        if answered is None:
            self._thread.submit(self._drain)
            return
        _settle(answered)
        with self._lock:
            if not self._waiting:
                self._running = False
                return
        asyncio.get_running_loop().call_soon(self._drain_here)

    def _drain(self) -> None:
        """On the worker thread: batches until no request waits."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._running = False
                    return
            batch = self._next_batch()
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Any]]] = {}
            for future, outcome in self._answer(batch):
                by_loop.setdefault(future.get_loop(), []).append((future, outcome))
            for loop, settled in by_loop.items():
                # a closed loop (RuntimeError) has no one waiting any more
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, settled)

    def _next_batch(self) -> list[tuple[TokenRequest, asyncio.Future[Outcome]]]:
        with self._lock:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            return batch

    def _answer(self, batch: list[tuple[TokenRequest, asyncio.Future[Outcome]]]
                ) -> list[tuple[asyncio.Future[Outcome], Any]]:
        try:
            outcomes: list[Any] = self._issue([request for request, _ in batch])
        except Exception as e:  # a bug: every caller of the batch hears of it
            log.exception("token batch failed")
            outcomes = [e] * len(batch)
        return [(future, outcome) for (_, future), outcome in zip(batch, outcomes, strict=True)]

    def close(self) -> None:
        """Stop the worker thread once the queued batches are answered."""
        self._thread.shutdown(wait=True)


def _settle(settled: list[tuple[asyncio.Future[Outcome], Any]]) -> None:
    for future, outcome in settled:
        if future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(outcome, IssuedToken | IamError):
            future.set_result(outcome)
        else:
            future.set_exception(outcome)


class OAuthTokenFastPath:
    """ASGI middleware answering ``POST /oauth2/token`` itself.

    It sits outside the body size limit: a body declared too large, or not declared at
    all (chunked), goes on to the app behind, which refuses or answers it as usual.
    """

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services
        self.batcher = TokenBatcher(services.oauth.issue_tokens,
                                    writer_if_free=services.database.writer_if_free)
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
            outcome = await self.batcher.issue(self._request(scope, headers, body))
        except IamError as e:
            outcome = e
        except Exception:
            log.exception("the token endpoint failed")
            await _answer(send, 500, _SERVER_ERROR, [])
            return
        if isinstance(outcome, IamError):
            status, extra, content = error_answer(outcome, headers.authorization)
            await _answer(send, status, json_bytes(content),
                          [(k.lower().encode(), v.encode()) for k, v in extra.items()])
            return
        await _answer(send, 200, json_bytes(outcome.to_response()), _NO_STORE)

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


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
                  ) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, _JSON, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
