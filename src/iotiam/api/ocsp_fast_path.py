"""OCSP without the framework: the one endpoint that must answer thousands per second.

RFC 6960 Appendix A.1 (POST, and GET with base64 in the path). Everything else goes
to the FastAPI app behind it. The lookup reads the live status every time (G3); the
work per request is small enough to run on the event loop without a thread hop.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from iotiam.api.limits import read_body
from iotiam.api.one_send import send_response
from iotiam.api.problems import method_not_allowed
from iotiam.bootstrap import Services
from iotiam.pki.ocsp import parse_ocsp_get_path

MAX_OCSP_REQUEST = 8 * 1024
_HEADERS_POST = [(b"content-type", b"application/ocsp-response")]
_HEADERS_GET = [(b"content-type", b"application/ocsp-response"),
                (b"cache-control", b"no-cache")]


class OcspFastPath:
    """ASGI middleware answering ``/ocsp`` itself."""

    def __init__(self, app: ASGIApp, services: Services) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        path: str = scope.get("path", "") if scope["type"] == "http" else ""
        if path == "/ocsp":
            if scope["method"] != "POST":  # a 405, not the framework's 404 (RFC 9110)
                await method_not_allowed(["POST"])(scope, receive, send)
                return
            body = await read_body(receive, MAX_OCSP_REQUEST)
            # an oversized or unreadable request is answered as malformedRequest
            await send_response(send, 200, _HEADERS_POST,
                                self.services.pki.ocsp_response(body or b""))
            return
        if path.startswith("/ocsp/"):
            if scope["method"] != "GET":  # HEAD arrives as GET (head_requests.HeadAsGet)
                await method_not_allowed(["GET"])(scope, receive, send)
                return
            try:
                request_der = parse_ocsp_get_path(unquote(scope["raw_path"].decode()[6:]))
            except Exception:
                request_der = b""
            await send_response(send, 200, _HEADERS_GET,
                                self.services.pki.ocsp_response(request_der))
            return
        await self.app(scope, receive, send)
