"""HEAD answered as GET without the body, for every route of both apps.

RFC 9110 §9.3.2: a server that supports GET on a resource must support HEAD, with the
same status and headers and no content. FastAPI routes take only the methods they are
declared with (so ``curl -I /healthz`` was a 405), and the fast paths in front of the
framework answer their own methods. Doing it once, outermost, covers them all without a
HEAD operation per route in the OpenAPI document.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """ASGI middleware: run a HEAD request as its GET and send the answer without body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)  # the start: status, Content-Type, Content-Length
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b""})

        # authentication, rate limits and audit apply as to the GET it stands for
        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
