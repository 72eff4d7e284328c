"""RFC 9068 JWT access tokens: what goes into one, signed with the current key."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from iotiam.tokens import jws
from iotiam.tokens.models import (
    ACCESS_TOKEN_TYP,
    SIGNING_ALGORITHM,
    Audience,
    AuthenticatedClient,
    InvalidClient,
    IssuedToken,
    TokenConfig,
)
from iotiam.tokens.signing_keys import KeyRing, SigningKeys

#: private claim: serial (hex) of the device certificate the client authenticated with;
#: introspection checks its status, so revoking the certificate ends the token (G3)
CERTIFICATE_CLAIM = "iotiam_cert"


class AccessTokenMinter:
    """Builds and signs access tokens."""

    def __init__(self, config: TokenConfig) -> None:
        self._config = config

    def mint(self, client: AuthenticatedClient, *, subject: str, scopes: Sequence[str],
             audience: Audience, now: datetime, ring: KeyRing
             ) -> tuple[IssuedToken, dict[str, Any]]:
        """A signed token and its claims (for the audit record).

        ``ring`` is fetched by the caller before its transaction: loading it may create or
        rotate a key, which is a write of its own.
        """
        expires = now + self._config.access_token_lifetime
        # a token never outlives the certificate that authenticated (or is bound to) it
        if client.certificate_not_after is not None:
            expires = min(expires, client.certificate_not_after)
        lifetime = int((expires - now).total_seconds())
        if lifetime < 1:
            raise InvalidClient("the client's certificate expires now; renew it first")
        issued_at = int(now.timestamp())
        claims: dict[str, Any] = {
            # RFC 9068 §2.2
            "iss": self._config.issuer,
            "sub": subject,
            "aud": audience if isinstance(audience, str) else list(audience),
            "exp": issued_at + lifetime,
            "iat": issued_at,
            "jti": secrets.token_urlsafe(16),
            "client_id": client.client.client_id,
            "scope": " ".join(scopes),
        }
        if client.x5t_s256 is not None:
            # RFC 8705 §3.1: certificate-bound access token
            claims["cnf"] = {"x5t#S256": client.x5t_s256}
        if client.certificate_serial is not None:
            claims[CERTIFICATE_CLAIM] = client.certificate_serial
        token = jws.sign_with(claims, ring.sign, ring.signing_kid, ACCESS_TOKEN_TYP)
        return IssuedToken(access_token=token, expires_in=lifetime, scope=claims["scope"],
                           jti=claims["jti"], bound=client.x5t_s256 is not None), claims


@dataclass(frozen=True)
class SignedAccessToken:
    """An access token iotiam signed (signature, type and issuer checked; nothing else)."""

    claims: dict[str, Any]
    client_id: str
    jti: str
    exp: float


def read_signed(token: str, keys: SigningKeys, issuer: str) -> SignedAccessToken | None:
    """The claims of one of our access tokens, or None (malformed, forged, other type)."""
    try:
        header, _ = jws.split(token)
        jws.check_header(header, (SIGNING_ALGORITHM,))
        if jws.typ_of(header) != ACCESS_TOKEN_TYP:
            return None
        kid = header.get("kid")
        key = keys.key_for(kid) if isinstance(kid, str) else None
        if key is None:
            return None
        _, claims, _ = jws.verify(token, [key], (SIGNING_ALGORITHM,))
    except jws.JoseRejected:
        return None
    exp, client_id, jti = claims.get("exp"), claims.get("client_id"), claims.get("jti")
    if claims.get("iss") != issuer or isinstance(exp, bool) or \
            not isinstance(exp, int | float) or not isinstance(client_id, str) or \
            not isinstance(jti, str):
        return None
    return SignedAccessToken(claims, client_id, jti, float(exp))
