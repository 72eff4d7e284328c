"""The web console, mounted on the admin API at ``/console``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from iotiam.api.problems import status_for
from iotiam.bootstrap import Services
from iotiam.errors import IamError
from iotiam.local_keys import console_session_key
from iotiam.web.console import PREFIX, SignInNeeded, render, signed_in
from iotiam.web.pages import (
    audit,
    compliance,
    devices,
    enrollment,
    findings,
    oidc,
    overview,
    policies,
    risk,
    sign_in,
)
from iotiam.web.sessions import CookieSealer, Sessions

STATIC = Path(__file__).with_name("static")

#: no inline script or style anywhere, nothing from another origin, no framing
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds the console's security headers to every answer it gives."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n not in names]
                message["headers"] = kept + SECURITY_HEADERS
            await send(message)

        await self._app(scope, receive, with_headers)


def create_console_app(services: Services) -> ASGIApp:
    """The console's pages, its sign-in and its static assets."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    key = console_session_key(services.settings)
    app.state.sessions = sessions = Sessions(key, services.clock)
    sign_in.register(sessions, services)
    if services.sso is not None:
        oidc.register(sessions, services.sso)
    app.state.oidc_flow = CookieSealer(key, oidc.FLOW_PURPOSE)
    _install_error_pages(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in (sign_in, oidc, overview, devices, risk, findings, policies, enrollment,
                   compliance, audit):
        app.include_router(module.router)
    return SecurityHeaders(app)


def _install_error_pages(app: FastAPI) -> None:
    async def sign_in_needed(request: Request, error: Exception) -> Response:
        assert isinstance(error, SignInNeeded)
        query = urlencode({"next": error.back_to, "why": error.reason[:120]})
        return RedirectResponse(f"{PREFIX}/sign-in?{query}", status_code=303)

    async def iam_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, IamError)
        return _error_page(request, status_for(error), error.detail)

    async def bad_request(request: Request, error: Exception) -> Response:
        return _error_page(request, 400, "the request's parameters are not valid")

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return _error_page(request, error.status_code, str(error.detail))

    app.add_exception_handler(SignInNeeded, sign_in_needed)
    app.add_exception_handler(IamError, iam_error)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _error_page(request: Request, status: int, detail: str) -> Response:
    try:
        session = signed_in(request)
    except SignInNeeded:
        session = None
    return render(request, session, "error.html", status=status, status_code=status,
                  detail=detail)
