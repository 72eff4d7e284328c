"""RFC 9457 problem details: one table maps each error family to a status and type."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.errors import (
    Conflict,
    Forbidden,
    IamError,
    InternalError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    SetupError,
    StreamUnavailable,
    TooManyRequests,
    Unauthenticated,
    UnsupportedMediaType,
)
from iotiam.kernel import ROOT_PATH

log = logging.getLogger("iotiam.api")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:iotiam:problem:"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# most specific first: PayloadTooLarge and UnsupportedMediaType are InvalidInputs
STATUS_BY_ERROR: tuple[tuple[type[IamError], int], ...] = (
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (InvalidInput, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooManyRequests, 429),
    (SetupError, 500),
    (InternalError, 500),
    (StreamUnavailable, 503),
)


def status_for(error: IamError) -> int:
    """HTTP status of an iotiam error (503 for storage trouble and other unknown kinds)."""
    for cls, status in STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 503


def problem_response(
    status: int, kind: str, title: str, detail: str, *,
    headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A ``application/problem+json`` response."""
    body = {"type": TYPE_PREFIX + kind, "title": title, "status": status, "detail": detail}
    body.update(extra)
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="iotiam"')
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON,
                        headers=all_headers or None)


def _field_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    errors = []
    for err in exc.errors():
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        errors.append({"field": location or "body", "message": str(err.get("msg", "invalid"))})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return f"{first['field']}: {first['message']}", errors


def audit_refused_request(request: Request, reason: str) -> None:
    """Record a request refused by the HTTP layer, attributed to its token when valid."""
    services = getattr(request.app.state, "services", None)
    if services is None:
        return
    actor, org_path = "anonymous", ROOT_PATH
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        try:
            caller = services.admin_tokens.authenticate(value)
            actor, org_path = caller.name, caller.org_path
        except IamError:
            pass
    try:
        services.audit.record(AuditDraft(
            tag=AuditTag.REQUEST_REFUSED, actor=actor, org_path=org_path,
            subject=f"{request.method} {request.url.path}"[:300], outcome=Outcome.FAILURE,
            reason=reason[:500],
        ))
    except IamError:
        log.warning("could not audit a refused request to %s", request.url.path)


def allow_header(methods: Iterable[str]) -> str:
    """The ``Allow`` value for a resource taking ``methods``: HEAD wherever GET is
    (RFC 9110 §9.3.2; ``head_requests.HeadAsGet`` answers it, undocumented)."""
    allowed = {m.upper() for m in methods}
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


def method_not_allowed(methods: Iterable[str]) -> JSONResponse:
    """A 405 problem naming the methods the resource takes (RFC 9110 §15.5.6)."""
    return problem_response(405, "method-not-allowed", "Method Not Allowed",
                            "Method Not Allowed", headers={"Allow": allow_header(methods)})


def allowed_methods(request: Request) -> list[str]:
    """Every method the API documents for the request's path.

    Starlette's own ``Allow`` names only the methods of the first route that matched the
    path (POST but not GET for ``/v1/devices``); the OpenAPI document has them all.
    """
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern, _, _ = compile_path(template)
        if pattern.match(request.url.path):
            methods |= {m.upper() for m in operations if m.upper() in HTTP_METHODS}
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    """Render every error as problem+json; never leak a traceback."""

    @app.exception_handler(IamError)
    async def _iam(request: Request, exc: IamError) -> JSONResponse:
        return problem_response(status_for(exc), exc.kind, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, errors = _field_errors(exc)
        # refused before any use case ran: audit it here, or it would leave no trace
        await run_in_threadpool(audit_refused_request, request, detail)
        return problem_response(400, "invalid-input", "Invalid input", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed",
                413: "payload-too-large"}.get(exc.status_code, "http-error")
        if exc.status_code == 413:
            await run_in_threadpool(audit_refused_request, request, str(exc.detail))
        title = {413: "Payload too large"}.get(exc.status_code, str(exc.detail))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110 §15.5.6: a 405 lists every method the resource has
            # (Starlette's own for a route the document leaves out, e.g. /docs)
            methods = allowed_methods(request) or headers.get("Allow", "").split(",")
            headers["Allow"] = allow_header(m.strip() for m in methods if m.strip())
        return problem_response(exc.status_code, kind, title, str(exc.detail),
                                headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal", "Internal error",
                                "the server failed; the error was logged")
