"""Requests timed by route template, for ``/metrics``.

The label is the route a request matched (``/v1/devices/{device_id}``), never its path:
a device id in a label would make a series per device. Routing happens deep inside the
app, on a scope that ``HeadAsGet`` may have copied, so the outermost middleware
(``RequestMetrics``) hands a slot down in the scope and the innermost one
(``RouteNote``, inside each FastAPI app) writes the matched template into it. The fast
paths answer in front of the framework, on fixed paths (``FAST_PATHS``).
"""

from __future__ import annotations

import time

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotiam.api.emqx_hook import HOOK_PATH
from iotiam.api.oauth_token_path import TOKEN_PATH
from iotiam.metrics import Metrics

#: where the template travels in the scope (a one-item list, shared by scope copies)
SLOT = "iotiam.route"
#: a request no route matched (a 404): one label, whatever its path
UNMATCHED = "unmatched"
#: methods labelled as themselves; any other a client sends counts as "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: the status label by the status's first digit
STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx")


def fast_path_route(path: str) -> str | None:
    """The template of a path answered in front of the framework."""
    if path in ("/ocsp", TOKEN_PATH, HOOK_PATH):
        return path
    if path.startswith("/ocsp/"):
        return "/ocsp/{request}"
    return None


class RouteNote:
    """Innermost: once the app answered, note the template of the route it matched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        try:
            await self.app(scope, receive, send)
        finally:
            slot: list[str] | None = scope.get(SLOT)
            route = scope.get("route")
            if slot is not None and route is not None:
                # a mount (static files, the console) adds its prefix to root_path
                inner = "/{path}" if isinstance(route, Mount) else route.path
                slot[0] = scope.get("root_path", "") + inner


class RequestMetrics:
    """Outermost: time each request and count it by listener, method, template, status."""

    def __init__(self, app: ASGIApp, metrics: Metrics, listener: str) -> None:
        self.app = app
        self.listener = listener
        self.times = metrics.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        slot = [UNMATCHED]
        scope[SLOT] = slot
        status = 500  # what the client sees when the app raises before it answers
        began = time.perf_counter()

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = fast_path_route(scope["path"]) or slot[0]
            self.times.observe((self.listener, method, route, STATUS_CLASSES[status // 100]),
                               time.perf_counter() - began)
