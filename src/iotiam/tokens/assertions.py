"""Client assertions (``private_key_jwt``): RFC 7523 §3 with the rfc7523bis rules.

The checks, in the order the RFC lists them, run on a verified JWS; nothing here
touches storage (the single-use ``jti`` is recorded by the caller, atomically).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc.jwk import Key

from iotiam.tokens import jws
from iotiam.tokens.models import (
    ACCESS_TOKEN_TYP,
    ASSERTION_ALGORITHMS,
    CLIENT_ASSERTION_TYP,
    InvalidClient,
    TokenConfig,
)

_JTI = re.compile(r"[\x21-\x7e]{1,256}")
#: typ values a client assertion may carry; absent is accepted for RFC 7523 clients
_ACCEPTED_TYPS = frozenset({None, "jwt", CLIENT_ASSERTION_TYP})


@dataclass(frozen=True)
class VerifiedAssertion:
    """A client assertion that passed every check but the single-use one."""

    client_id: str
    jti: str
    expires_at: datetime
    key_index: int


def claimed_client(assertion: str) -> str:
    """The client an assertion says it is from (unverified: only to find its keys)."""
    try:
        header, claims = jws.split(assertion)
    except jws.JoseRejected as e:
        raise InvalidClient(f"client assertion: {e.detail}") from e
    _check_header(header)
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer or len(issuer) > 128:
        raise InvalidClient("client assertion: 'iss' must be the client id")
    return issuer


def _check_header(header: dict[str, Any]) -> None:
    try:
        jws.check_header(header, ASSERTION_ALGORITHMS)
        typ = jws.typ_of(header)
    except jws.JoseRejected as e:
        raise InvalidClient(f"client assertion: {e.detail}") from e
    # rfc7523bis §4: an explicit type keeps an access token (at+jwt), an ID token or any
    # other JWT from being replayed as a client assertion
    if typ not in _ACCEPTED_TYPS:
        raise InvalidClient(f"client assertion: typ {typ!r} is not accepted; use "
                            f"{CLIENT_ASSERTION_TYP!r}"
                            + (" (an access token is not a client assertion)"
                               if typ == ACCESS_TOKEN_TYP else ""))


def verify_assertion(
    assertion: str, keys: Sequence[Key], *, client_id: str, config: TokenConfig,
    now: datetime,
) -> VerifiedAssertion:
    """Verify signature and claims of a client assertion for ``client_id``."""
    try:
        header, _ = jws.split(assertion)
    except jws.JoseRejected as e:
        raise InvalidClient(f"client assertion: {e.detail}") from e
    _check_header(header)
    if not keys:
        raise InvalidClient(f"client {client_id!r} has no key to verify an assertion with "
                            "(register a jwks, or enroll the device for a certificate)")
    try:
        _, claims, index = jws.verify(assertion, keys, ASSERTION_ALGORITHMS)
    except jws.JoseRejected as e:
        raise InvalidClient(f"client assertion: {e.detail}") from e
    return _check_claims(claims, client_id=client_id, config=config, now=now, index=index)


def _check_claims(claims: dict[str, Any], *, client_id: str, config: TokenConfig,
                  now: datetime, index: int) -> VerifiedAssertion:
    # RFC 7523 §3 items 1 and 2: iss and sub are the client id
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise InvalidClient("client assertion: 'iss' and 'sub' must both be the client id")
    # item 3 with rfc7523bis §5: the audience is the issuer identifier as a single string
    audience = claims.get("aud")
    if isinstance(audience, list):
        raise InvalidClient("client assertion: 'aud' must be a single string, the issuer "
                            f"{config.issuer!r}, not an array")
    if audience != config.issuer:
        hint = (" (not the token endpoint)" if audience == config.token_endpoint else "")
        raise InvalidClient(f"client assertion: 'aud' must be the issuer {config.issuer!r}"
                            + hint)
    skew = config.clock_skew.total_seconds()
    stamp = now.timestamp()
    # item 4: exp is required and in the future; far-future assertions are refused so
    # that a used jti need only be remembered briefly
    exp = _number(claims, "exp", required=True)
    assert exp is not None
    if exp + skew <= stamp:
        raise InvalidClient("client assertion has expired")
    if exp - stamp > config.max_assertion_lifetime.total_seconds() + skew:
        raise InvalidClient("client assertion: 'exp' is too far in the future (at most "
                            f"{int(config.max_assertion_lifetime.total_seconds())} s)")
    # item 5: not before
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf - skew > stamp:
        raise InvalidClient("client assertion is not valid yet ('nbf' is in the future)")
    # item 6: issued at, if given, not in the future
    iat = _number(claims, "iat")
    if iat is not None and iat - skew > stamp:
        raise InvalidClient("client assertion: 'iat' is in the future")
    # item 7: a jti, used once within the assertion's lifetime (recorded by the caller)
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
        raise InvalidClient("client assertion: 'jti' must be 1-256 printable characters")
    return VerifiedAssertion(client_id=client_id, jti=jti,
                             expires_at=datetime.fromtimestamp(exp, UTC), key_index=index)


def _number(claims: dict[str, Any], name: str, *, required: bool = False) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidClient(f"client assertion: '{name}' is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
            or abs(value) > 1e11:
        raise InvalidClient(f"client assertion: '{name}' must be a NumericDate")
    return float(value)
