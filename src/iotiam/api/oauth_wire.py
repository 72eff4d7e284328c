"""RFC 6749 on the wire, without a framework: form bodies in, §5.1 / §5.2 JSON out.

Shared by the FastAPI routes (``routes/oauth.py``) and the token endpoint's fast path
(``oauth_token_path.py``), so that both read a request and word an error the same way.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from iotiam.errors import (
    Conflict,
    Forbidden,
    IamError,
    InternalError,
    InvalidInput,
    NotFound,
    Unauthenticated,
)
from iotiam.tokens.models import (
    ClientCredentials,
    InvalidClient,
    InvalidRequest,
    OAuthError,
    TokenRequest,
    UnauthorizedClient,
)

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_FIELDS = 20
MAX_VALUE = 8192


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    """RFC 6749 §3.2 parameters of a form body; a parameter sent twice is an error."""
    if content_type.split(";")[0].strip().lower() != FORM:
        raise InvalidRequest(f"send the parameters as {FORM}")
    try:
        # bytes beyond ASCII read as latin-1 and %-escapes as UTF-8, as Starlette reads forms
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS)
    except ValueError as e:
        raise InvalidRequest(f"at most {MAX_FIELDS} parameters") from e
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated")
        if len(value) > MAX_VALUE or "\x00" in value:
            raise InvalidRequest(f"parameter {name[:40]!r} is too long or has a NUL byte")
        values[name] = value
    return values


def client_credentials(form: dict[str, str], *, certificate_der: bytes | None,
                       authorization: str, source: str) -> ClientCredentials:
    """What a request presented to authenticate its client."""
    scheme = authorization.partition(" ")[0].lower()
    return ClientCredentials(
        client_id=form.get("client_id"),
        assertion_type=form.get("client_assertion_type"),
        assertion=form.get("client_assertion"),
        certificate_der=certificate_der,
        secret_presented="client_secret" in form or scheme == "basic",
        source=source,
    )


def token_request(form: dict[str, str], credentials: ClientCredentials) -> TokenRequest:
    """RFC 6749 §4.4.2 / RFC 8628 §3.4 request of the token endpoint."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    return TokenRequest(grant_type=grant_type, credentials=credentials, scope=form.get("scope"),
                        resource=form.get("resource"), device_code=form.get("device_code"))


def error_answer(error: IamError) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and RFC 6749 §5.2 body for any iotiam error of an OAuth request."""
    if not isinstance(error, OAuthError):
        if isinstance(error, Unauthenticated):
            error = InvalidClient(error.detail)
        elif isinstance(error, Forbidden):
            error = UnauthorizedClient(error.detail)
        elif isinstance(error, InvalidInput | NotFound | Conflict):
            error = InvalidRequest(error.detail)
        elif isinstance(error, InternalError):  # a bug met by this request alone
            return 500, dict(NO_STORE), {"error": "server_error",
                                         "error_description": error.detail[:300]}
        else:
            # storage trouble: the one case that is not the client's fault
            return 503, {**NO_STORE, "Retry-After": "1"}, {
                "error": "temporarily_unavailable", "error_description": error.detail[:300]}
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="iotiam", error="invalid_client"'
    return error.status, headers, error.to_response()


_AS_STARLETTE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None,
                                 separators=(",", ":"))


def json_bytes(content: dict[str, Any]) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse`` renders it."""
    return _AS_STARLETTE.encode(content).encode("utf-8")
