"""The OAuth2 protocol endpoints: token, introspection, revocation, device authorization,
JWKS and RFC 8414 metadata.

Requests are ``application/x-www-form-urlencoded`` (RFC 6749 §3.2); errors are
RFC 6749 §5.2 JSON (``{"error": ..., "error_description": ...}``), never problem+json,
so that unmodified OAuth clients understand them. Client authentication is
``private_key_jwt`` or ``tls_client_auth`` with the TLS client certificate the server
verified (or a trusted proxy forwarded). Introspection and revocation also accept an
admin bearer token.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from iotiam.admin.models import ROOT_PATH
from iotiam.api.auth import Wired, principal
from iotiam.api.tls import client_address, client_certificate
from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.bootstrap import Services
from iotiam.errors import Conflict, Forbidden, IamError, InvalidInput, NotFound, Unauthenticated
from iotiam.tokens.introspection import Caller
from iotiam.tokens.models import (
    ClientCredentials,
    InvalidClient,
    InvalidRequest,
    OAuthError,
    TokenRequest,
    UnauthorizedClient,
)

log = logging.getLogger("iotiam.oauth")
router = APIRouter(tags=["oauth2"])

FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FIELDS = 20
_MAX_VALUE = 8192


def _oauth_error(error: IamError) -> JSONResponse:
    """RFC 6749 §5.2 for any iotiam error raised while serving an OAuth request."""
    if not isinstance(error, OAuthError):
        if isinstance(error, Unauthenticated):
            error = InvalidClient(error.detail)
        elif isinstance(error, Forbidden):
            error = UnauthorizedClient(error.detail)
        elif isinstance(error, InvalidInput | NotFound | Conflict):
            error = InvalidRequest(error.detail)
        else:
            # storage trouble: the one case that is not the client's fault
            return JSONResponse({"error": "temporarily_unavailable",
                                 "error_description": error.detail[:300]},
                                status_code=503, headers={**_NO_STORE, "Retry-After": "1"})
    headers = dict(_NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="iotiam", error="invalid_client"'
    return JSONResponse(error.to_response(), status_code=error.status, headers=headers)


async def _form(request: Request) -> dict[str, str]:
    """The form body; RFC 6749 §3.2 parameters sent twice are an error."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        raise InvalidRequest(f"send the parameters as {FORM}")
    try:
        form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
    except HTTPException as e:
        if e.status_code == 413:
            raise  # the body size limit answers this one
        raise InvalidRequest("the form body cannot be parsed") from e
    except (ValueError, KeyError) as e:
        raise InvalidRequest("the form body cannot be parsed") from e
    if len(form) > _MAX_FIELDS:
        raise InvalidRequest(f"at most {_MAX_FIELDS} parameters")
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise InvalidRequest(f"parameter {name[:40]!r} must be text")
        if name in values:
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated")
        if len(value) > _MAX_VALUE or "\x00" in value:
            raise InvalidRequest(f"parameter {name[:40]!r} is too long or has a NUL byte")
        values[name] = value
    return values


def _credentials(request: Request, form: dict[str, str], svc: Services) -> ClientCredentials:
    trusted = svc.settings.trusted_proxies
    cert = client_certificate(request, trusted)
    scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
    return ClientCredentials(
        client_id=form.get("client_id"),
        assertion_type=form.get("client_assertion_type"),
        assertion=form.get("client_assertion"),
        certificate_der=cert.public_bytes(serialization.Encoding.DER) if cert else None,
        secret_presented="client_secret" in form or scheme == "basic",
        source=client_address(request, trusted),
    )


@router.post("/oauth2/token")
async def token(request: Request, svc: Wired) -> Response:
    """RFC 6749 §4.4 client credentials and RFC 8628 §3.4 device code grants."""
    try:
        form = await _form(request)
        credentials = _credentials(request, form, svc)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise InvalidRequest("grant_type is required")
        token_request = TokenRequest(
            grant_type=grant_type, credentials=credentials, scope=form.get("scope"),
            resource=form.get("resource"), device_code=form.get("device_code"))
        issued = await run_in_threadpool(svc.oauth.token, token_request,
                                         source_ip=credentials.source or None)
    except IamError as e:
        return _oauth_error(e)
    return JSONResponse(issued.to_response(), headers=_NO_STORE)


@router.post("/oauth2/device_authorization")
async def device_authorization(request: Request, svc: Wired) -> Response:
    """RFC 8628 §3.1: a device code and a user code for an admin to approve."""
    try:
        form = await _form(request)
        credentials = _credentials(request, form, svc)
        started = await run_in_threadpool(
            svc.oauth.device_authorization, credentials, form.get("scope"),
            form.get("resource"), source_ip=credentials.source or None)
    except IamError as e:
        return _oauth_error(e)
    return JSONResponse(started.to_response(), headers=_NO_STORE)


async def _caller(request: Request, form: dict[str, str], svc: Services) -> Caller:
    """An admin bearer token or an authenticated client; anyone else is refused (audited)."""
    scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
    if scheme == "bearer":
        return await run_in_threadpool(principal, request)
    credentials = _credentials(request, form, svc)
    if not credentials.present:
        await run_in_threadpool(svc.audit.record, AuditDraft(
            tag=AuditTag.ACCESS_DENIED, actor="anonymous", org_path=ROOT_PATH,
            subject=f"POST {request.url.path}"[:300], outcome=Outcome.DENIED,
            reason="no client authentication"))
        raise InvalidClient("authenticate: an admin bearer token, private_key_jwt or "
                            "tls_client_auth")
    return await run_in_threadpool(svc.oauth.authenticate_caller, credentials)


async def _caller_and_token(request: Request, svc: Services) -> tuple[Caller, str]:
    """The authenticated caller and the ``token`` form field (RFC 7662 §2.1, RFC 7009 §2.1)."""
    form = await _form(request)
    caller = await _caller(request, form, svc)
    token_value = form.get("token")
    if not token_value:
        raise InvalidRequest("token is required")
    return caller, token_value


@router.post("/oauth2/introspect")
async def introspect(request: Request, svc: Wired) -> Response:
    """RFC 7662: whether a token is active now (G3); ``{"active": false}`` otherwise."""
    try:
        caller, token_value = await _caller_and_token(request, svc)
        answer: dict[str, Any] = await run_in_threadpool(svc.oauth.introspect, caller,
                                                         token_value)
    except IamError as e:
        return _oauth_error(e)
    return JSONResponse(answer, headers=_NO_STORE)


@router.post("/oauth2/revoke")
async def revoke(request: Request, svc: Wired) -> Response:
    """RFC 7009: revoke an access token (200 also for unknown or invalid tokens, §2.2)."""
    try:
        caller, token_value = await _caller_and_token(request, svc)
        await run_in_threadpool(svc.oauth.revoke, caller, token_value)
    except IamError as e:
        return _oauth_error(e)
    return Response(status_code=200, headers=_NO_STORE)


@router.get("/oauth2/jwks")
async def jwks(svc: Wired) -> Response:
    """RFC 7517 JWK set of the access-token signing keys (old ones during the overlap)."""
    try:
        keys = await run_in_threadpool(svc.oauth.keys.jwks)
    except IamError as e:
        return _oauth_error(e)
    return JSONResponse(keys, headers={"Cache-Control": "public, max-age=60"},
                        media_type="application/jwk-set+json")


@router.get("/.well-known/oauth-authorization-server")
def metadata(svc: Wired) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    return svc.oauth.metadata()


@router.get("/oauth2/device", response_class=PlainTextResponse)
def device_verification(user_code: str | None = None) -> str:
    """RFC 8628 §3.3 verification URI: approval is an admin's act, through the API or CLI."""
    code = user_code[:20] if user_code and user_code.replace("-", "").isalnum() else "<code>"
    return ("This device asks for access. An iotiam administrator approves it with:\n\n"
            f"    iotiam device-code approve {code}\n")
