"""ID token validation, OpenID Connect Core 1.0 §3.1.3.7, with no I/O.

The signature is checked by ``tokens.jws`` (the one place iotiam touches JOSE: an
explicit algorithm allow-list, so ``none`` and HMAC are refused, keys only from the
provider's JWKS, never from the token's headers).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from joserfc.jwk import Key

from iotiam.errors import InvalidInput
from iotiam.sso.models import Identity, SignInRefused
from iotiam.tokens import jws


class SignatureNotVerified(SignInRefused):
    """No key we hold verifies the ID token: perhaps the provider rotated its keys."""


#: what providers sign ID tokens with (RS256 is the OIDC default, §15.1); no HMAC
ID_TOKEN_ALGORITHMS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")
MAX_GROUPS = 500


def verify_id_token(token: str, keys: Sequence[Key], *, issuer: str, client_id: str,
                    nonce: str, now: float, leeway: int, groups_claim: str) -> Identity:
    """The person an ID token vouches for, or SignInRefused saying which check failed."""
    try:
        _, claims, _ = jws.verify(token, keys, ID_TOKEN_ALGORITHMS)
    except InvalidInput as e:
        unverified = "signature" in e.detail  # jws.verify's one message for "no key fits"
        raise (SignatureNotVerified if unverified else SignInRefused)(
            f"the ID token is not valid: {e.detail}") from e
    # §3.1.3.7 step 2: iss exactly the provider's issuer
    if claims.get("iss") != issuer:
        raise SignInRefused("the ID token was issued by another issuer")
    # step 3: our client id among aud; step 4/5: azp, when present, is us
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or client_id not in audiences:
        raise SignInRefused("the ID token is not addressed to this console (aud)")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise SignInRefused("the ID token was issued to another party (azp)")
    # step 9: exp (required) not passed; step 10: iat (required) not in the future
    exp, iat = _time(claims, "exp"), _time(claims, "iat")
    if now > exp + leeway:
        raise SignInRefused("the ID token has expired")
    if iat > now + leeway:
        raise SignInRefused("the ID token was issued in the future (check the clocks)")
    nbf = claims.get("nbf")
    if nbf is not None and _time(claims, "nbf") > now + leeway:
        raise SignInRefused("the ID token is not valid yet (nbf)")
    # step 11: the nonce this browser's sign-in sent (binds the token to it: no replay)
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(presented.encode(),
                                                                 nonce.encode()):
        raise SignInRefused("the ID token's nonce is not this sign-in's")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise SignInRefused("the ID token has no subject (sub)")
    return Identity(sub=sub, email=_email(claims), groups=_groups(claims, groups_claim))


def _time(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignInRefused(f"the ID token has no numeric {name!r}")
    return float(value)


def _email(claims: dict[str, Any]) -> str | None:
    email = claims.get("email")
    # an address the provider says it did not verify names nobody: audit the sub alone
    if not isinstance(email, str) or len(email) > 320 or claims.get("email_verified") is False:
        return None
    return email


def _groups(claims: dict[str, Any], name: str) -> tuple[str, ...]:
    value = claims.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or len(value) > MAX_GROUPS \
            or not all(isinstance(g, str) for g in value):
        raise SignInRefused(f"the ID token's {name!r} claim is not a list of names")
    return tuple(value)
