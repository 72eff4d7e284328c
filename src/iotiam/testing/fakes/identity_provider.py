"""An OpenID Connect provider in process (``sso.ports.IdentityProvider``), for unit tests
of the console's sign-in. It behaves where it matters as a real one does: a code is
good once and only with the verifier whose S256 hash came with the authorization
request (RFC 7636 §4.6), and ID tokens are ES256 JWS with the request's nonce. Tests
bend it to send what a broken or hostile provider would (``claims``, ``signer``).
The integration tests use a real provider (tests/integration/oidc_provider.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc.jwk import ECKey, Key

from iotiam.clock import Clock
from iotiam.sso.models import PendingSignIn, SignInRefused
from iotiam.sso.pkce import code_challenge
from iotiam.tokens import jws


@dataclass(frozen=True)
class Person:
    """Someone the provider can sign in."""

    sub: str
    email: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class _Code:
    challenge: str
    nonce: str
    person: Person


class FakeIdentityProvider:
    """Issues codes for people who "log in", and ID tokens for codes."""

    def __init__(self, issuer: str, client_id: str, clock: Clock) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._clock = clock
        self.key = ECKey.generate_key("P-256", private=True)
        #: what signs ID tokens (a test swaps in a key the provider never published)
        self.signer = self.key
        #: claims a test overrides in the next ID tokens (None: leave the claim out)
        self.claims: dict[str, Any] = {}
        self._codes: dict[str, _Code] = {}
        #: the key set a relying party last fetched (refreshed only when asked)
        self._served: list[Key] = []
        self.fetches = 0

    def authorization_url(self, pending: PendingSignIn) -> str:
        """The provider's authorization endpoint with the request's parameters."""
        query = urlencode({"client_id": self.client_id, "state": pending.state,
                           "nonce": pending.nonce,
                           "code_challenge": code_challenge(pending.verifier),
                           "code_challenge_method": "S256"})
        return f"{self.issuer}/auth?{query}"

    def log_in(self, authorization_url: str, person: Person) -> tuple[str, str]:
        """The person signs in at ``authorization_url``: the code and state the browser
        is sent back with."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        code = secrets.token_urlsafe(16)
        self._codes[code] = _Code(query["code_challenge"], query["nonce"], person)
        return code, query["state"]

    def exchange(self, code: str, verifier: str) -> str:
        """An ID token for a code presented with its verifier, once."""
        issued = self._codes.pop(code, None)
        if issued is None or code_challenge(verifier) != issued.challenge:
            raise SignInRefused("the provider refused the code: invalid_grant")
        now = int(self._clock.now().timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.client_id, "sub": issued.person.sub,
            "email": issued.person.email, "email_verified": True,
            "groups": list(issued.person.groups), "nonce": issued.nonce,
            "iat": now, "exp": now + 300}
        claims.update(self.claims)
        return jws.sign({k: v for k, v in claims.items() if v is not None}, self.signer,
                        "k1", "JWT")

    def rotate(self) -> None:
        """Publish a new signing key and sign with it from now on."""
        self.key = self.signer = ECKey.generate_key("P-256", private=True)

    def keys(self, *, refresh: bool = False) -> list[Key]:
        """The published key (public part), as fetched: a cached set until ``refresh``."""
        if refresh or not self._served:
            public = jws.key_from_public(self.key.public_key)
            assert public is not None
            self._served = [public]
            self.fetches += 1
        return self._served

    def close(self) -> None:
        """Nothing to release."""
