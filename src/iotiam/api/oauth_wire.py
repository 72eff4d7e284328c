"""RFC 6749 on the wire, without a framework: form bodies in, §5.1 / §5.2 JSON out.

Shared by the FastAPI routes (``routes/oauth.py``) and the token endpoint's fast path
(``oauth_token_path.py``), so that both read a request and word an error the same way.
"""

from __future__ import annotations

import json
import re
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
#: RFC 8707 §2: the one parameter a request may repeat (a token for several resources)
REPEATABLE = frozenset({"resource"})
#: RFC 6749 §5.2: error_description = 1*( %x20-21 / %x23-5B / %x5D-7E )
_NOT_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_DESCRIPTION_SWAPS = str.maketrans({'"': "'", "\\": "/"})


class OAuthForm(dict[str, str]):
    """Form parameters: one value each (the first of a repeatable one), and all of them."""

    __slots__ = ("_repeated",)

    def __init__(self) -> None:
        super().__init__()
        self._repeated: dict[str, list[str]] = {}

    def again(self, name: str, value: str) -> None:
        """A parameter sent before: an error unless it is ``REPEATABLE``."""
        if name not in REPEATABLE:
            raise InvalidRequest(f"parameter {name[:40]!r} is repeated")
        self._repeated.setdefault(name, [self[name]]).append(value)

    def every(self, name: str) -> tuple[str, ...]:
        """Every value of a parameter, in the order sent."""
        if name in self._repeated:
            return tuple(self._repeated[name])
        return (self[name],) if name in self else ()


def parse_form(content_type: str, body: bytes) -> OAuthForm:
    """RFC 6749 §3.2 parameters of a form body; a parameter sent twice is an error."""
    if content_type.split(";")[0].strip().lower() != FORM:
        raise InvalidRequest(f"send the parameters as {FORM}")
    try:
        # bytes beyond ASCII read as latin-1 and %-escapes as UTF-8, as Starlette reads forms
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=MAX_FIELDS)
    except ValueError as e:
        raise InvalidRequest(f"at most {MAX_FIELDS} parameters") from e
    values = OAuthForm()
    for name, value in pairs:
        if len(value) > MAX_VALUE or "\x00" in value:
            raise InvalidRequest(f"parameter {name[:40]!r} is too long or has a NUL byte")
        # §3.2: "parameters sent without a value MUST be treated as if they were omitted"
        if not value:
            continue
        if name in values:
            values.again(name, value)
        else:
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


def token_request(form: OAuthForm, credentials: ClientCredentials) -> TokenRequest:
    """RFC 6749 §4.4.2 / RFC 8628 §3.4 request of the token endpoint."""
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    return TokenRequest(grant_type=grant_type, credentials=credentials, scope=form.get("scope"),
                        resources=form.every("resource"), device_code=form.get("device_code"))


def description(text: str) -> str:
    """``text`` within RFC 6749 §5.2's error_description characters (quotes, backslashes,
    control and non-ASCII characters replaced), so that every client can read it."""
    return _NOT_DESCRIPTION.sub("?", text.translate(_DESCRIPTION_SWAPS))


def error_answer(error: IamError, authorization: str = ""
                 ) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and RFC 6749 §5.2 body for any iotiam error of an OAuth request.

    ``authorization`` is the request's Authorization header: a 401 challenges the scheme
    the client used (RFC 6749 §5.2: Basic for client_secret_basic; RFC 6750 §3: Bearer
    for a bearer token). A client that authenticated in the body (private_key_jwt,
    tls_client_auth) used no HTTP authentication scheme, and none is named to it.
    """
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
                "error": "temporarily_unavailable",
                "error_description": description(error.detail[:300])}
    body = error.to_response()
    body["error_description"] = description(body["error_description"])
    headers = dict(NO_STORE)
    if error.status == 401:
        scheme = authorization.partition(" ")[0].lower()
        if scheme == "basic":
            headers["WWW-Authenticate"] = 'Basic realm="iotiam"'
        elif scheme == "bearer":
            headers["WWW-Authenticate"] = (
                'Bearer realm="iotiam", error="invalid_token", '
                f'error_description="{body["error_description"][:200]}"')
    return error.status, headers, body


_AS_STARLETTE = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None,
                                 separators=(",", ":"))


def json_bytes(content: dict[str, Any]) -> bytes:
    """JSON exactly as Starlette's ``JSONResponse`` renders it."""
    return _AS_STARLETTE.encode(content).encode("utf-8")
