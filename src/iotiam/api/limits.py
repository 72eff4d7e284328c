"""Request body size limit, enforced before a handler reads the body."""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotiam.api.problems import PROBLEM_JSON, TYPE_PREFIX


class BodySizeLimit:
    """Answer 413 problem+json for bodies over ``max_bytes`` (declared or streamed);
    ``larger`` names the paths that stream their bodies, with their own bound."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope.get("path", ""), self.default_max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = max_bytes + 1
                if declared > max_bytes:
                    await self._refuse(send, max_bytes)
                    return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    raise _TooLarge(max_bytes)
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            if refused:
                await self._refuse(send, max_bytes)

    @staticmethod
    async def _refuse(send: Send, max_bytes: int) -> None:
        body = json.dumps({
            "type": TYPE_PREFIX + "payload-too-large",
            "title": "Payload too large",
            "status": 413,
            "detail": f"request body exceeds {max_bytes} bytes",
        }).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(HTTPException):
    """A streamed body went over the limit. An HTTPException, because FastAPI turns any
    other error raised while it reads a body into a 400 "error parsing the body"."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body exceeds {max_bytes} bytes")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None if it is over ``limit`` or the client left."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)
