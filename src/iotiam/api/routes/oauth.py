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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from iotiam.api import oauth_wire
from iotiam.api.auth import Wired, principal
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.oauth_wire import (
    NO_STORE,
    OAuthForm,
    client_credentials,
    error_answer,
    parse_form,
)
from iotiam.api.openapi import OAUTH_FORM, oauth
from iotiam.api.tls import client_address, client_certificate_der
from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.bootstrap import Services
from iotiam.errors import IamError
from iotiam.kernel import ROOT_PATH
from iotiam.tokens.introspection import Caller
from iotiam.tokens.models import ClientCredentials, InvalidClient, InvalidRequest

log = logging.getLogger("iotiam.oauth")
router = APIRouter(tags=["oauth2"], route_class=UntrustedJsonRoute)

_TOKEN = {"type": "object", "required": ["access_token", "token_type", "expires_in"],
          "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                         "expires_in": {"type": "integer"}, "scope": {"type": "string"}}}
_DEVICE_CODE = {"type": "object",
                "required": ["device_code", "user_code", "verification_uri", "expires_in"],
                "properties": {"device_code": {"type": "string"},
                               "user_code": {"type": "string"},
                               "verification_uri": {"type": "string"},
                               "verification_uri_complete": {"type": "string"},
                               "expires_in": {"type": "integer"},
                               "interval": {"type": "integer"}}}
_INTROSPECTION = {"type": "object", "required": ["active"],
                  "properties": {"active": {"type": "boolean"}}}
_JWKS = {"type": "object", "required": ["keys"],
         "properties": {"keys": {"type": "array", "items": {"type": "object"}}}}


def _oauth_error(error: IamError, request: Request) -> JSONResponse:
    """RFC 6749 §5.2 for any iotiam error raised while serving an OAuth request."""
    status, headers, body = error_answer(error, request.headers.get("authorization", ""))
    return JSONResponse(body, status_code=status, headers=headers)


async def _form(request: Request) -> OAuthForm:
    """The form body (RFC 6749 §3.2)."""
    return parse_form(request.headers.get("content-type", ""), await request.body())


def _credentials(request: Request, form: dict[str, str], svc: Services) -> ClientCredentials:
    trusted = svc.settings.trusted_proxies
    return client_credentials(form, certificate_der=client_certificate_der(request, trusted),
                              authorization=request.headers.get("authorization", ""),
                              source=client_address(request, trusted))


@router.post("/oauth2/token", response_class=Response, openapi_extra=OAUTH_FORM,
             responses=oauth(_TOKEN))
async def token(request: Request, svc: Wired) -> Response:
    """RFC 6749 §4.4 client credentials and RFC 8628 §3.4 device code grants.

    Served by ``api/oauth_token_path.py`` in front of the framework; this route documents
    the endpoint and answers exactly as the fast path does.
    """
    try:
        form = await _form(request)
        token_request = oauth_wire.token_request(form, _credentials(request, form, svc))
        issued = await run_in_threadpool(svc.oauth.token, token_request)
    except IamError as e:
        return _oauth_error(e, request)
    return JSONResponse(issued.to_response(), headers=NO_STORE)


@router.post("/oauth2/device_authorization", response_class=Response,
             openapi_extra=OAUTH_FORM, responses=oauth(_DEVICE_CODE))
async def device_authorization(request: Request, svc: Wired) -> Response:
    """RFC 8628 §3.1: a device code and a user code for an admin to approve."""
    try:
        form = await _form(request)
        credentials = _credentials(request, form, svc)
        started = await run_in_threadpool(
            svc.oauth.device_authorization, credentials, form.get("scope"),
            form.every("resource"), source_ip=credentials.source or None)
    except IamError as e:
        return _oauth_error(e, request)
    return JSONResponse(started.to_response(), headers=NO_STORE)


async def _caller(request: Request, form: OAuthForm, svc: Services) -> Caller:
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


@router.post("/oauth2/introspect", response_class=Response, openapi_extra=OAUTH_FORM,
             responses=oauth(_INTROSPECTION))
async def introspect(request: Request, svc: Wired) -> Response:
    """RFC 7662: whether a token is active now (G3); ``{"active": false}`` otherwise."""
    try:
        caller, token_value = await _caller_and_token(request, svc)
        answer: dict[str, Any] = await run_in_threadpool(svc.oauth.introspect, caller,
                                                         token_value)
    except IamError as e:
        return _oauth_error(e, request)
    return JSONResponse(answer, headers=NO_STORE)


@router.post("/oauth2/revoke", response_class=Response, openapi_extra=OAUTH_FORM,
             responses=oauth(None))
async def revoke(request: Request, svc: Wired) -> Response:
    """RFC 7009: revoke an access token (200 also for unknown or invalid tokens, §2.2)."""
    try:
        caller, token_value = await _caller_and_token(request, svc)
        await run_in_threadpool(svc.oauth.revoke, caller, token_value)
    except IamError as e:
        return _oauth_error(e, request)
    return Response(status_code=200, headers=NO_STORE)


@router.get("/oauth2/jwks", response_class=Response,
            responses=oauth(_JWKS, "application/jwk-set+json"))
async def jwks(request: Request, svc: Wired) -> Response:
    """RFC 7517 JWK set of the access-token signing keys (old ones during the overlap)."""
    try:
        keys = await run_in_threadpool(svc.oauth.keys.jwks)
    except IamError as e:
        return _oauth_error(e, request)
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
