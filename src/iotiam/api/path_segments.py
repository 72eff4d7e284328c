"""A request path whose raw form encodes ``/`` names nothing: 404 before routing."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from iotiam.api.problems import problem_response


class EncodedSlashRefusal:
    """Answer 404 problem+json when the raw path holds ``%2F``.

    The ASGI server decodes the path before routing, so ``/v1/devices/x%2Ftrust`` would
    be routed as ``/v1/devices/x/trust``: a typed id would pick another route and
    another object. An encoded slash is data inside one segment (RFC 3986 §2.2), and no
    iotiam id contains a slash, so such a path names no resource. OCSP GET, whose
    base64 legitimately encodes ``/`` (RFC 6960 §A.1), is answered in front of this.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        raw: bytes = (scope.get("raw_path") or b"") if scope["type"] == "http" else b""
        if b"%2f" in raw.lower():
            response = problem_response(404, "not-found", "Not found",
                                        "no resource has an encoded '/' in its path")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
