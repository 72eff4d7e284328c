"""OAuth2 access tokens for the device, from its own identity (no shared secret).

``tls_client_auth`` (the default) sends the device certificate on the TLS connection
and gets a token bound to it (RFC 8705); ``private_key_jwt`` signs a client assertion
with the device key (RFC 7523, ``aud`` = the issuer, a fresh ``jti`` each time).
Tokens are cached per (scope, audience) and replaced once 80 % of their lifetime has
passed, so a caller never holds one about to expire.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from iotiam.agent.paths import server_tls_context
from iotiam.clock import Clock
from iotiam.errors import IamError
from iotiam.pki.external_signer import ExternalKeySigner
from iotiam.pki.keys import PrivateKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: refresh when this share of the lifetime has passed
REFRESH_AT = 0.8
ASSERTION_LIFETIME = timedelta(seconds=60)


class TokenError(IamError):
    """The authorization server refused, or could not be reached."""

    kind = "agent-token"
    title = "Access token error"


@dataclass(frozen=True)
class CachedToken:
    """An access token and when to replace it."""

    value: str
    refresh_at: datetime
    expires_at: datetime
    scope: str


def _jose_key(key: PrivateKey) -> tuple[Key, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = "ES384" if key.curve.key_size == 384 else "ES256"
        return ECKey.import_key(key), alg
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return OKPKey.import_key(key), "EdDSA"
    if isinstance(key, rsa.RSAPrivateKey):
        return RSAKey.import_key(key), "PS256"
    raise TokenError(f"cannot sign a client assertion with a {type(key).__name__}")


class TokenSource:
    """Gets and caches access tokens for one device client."""

    def __init__(self, server_url: str, client_id: str, *, ssl_context: Callable[[],
                 ssl.SSLContext], key: Callable[[], PrivateKey | ExternalKeySigner],
                 server_ca: Path,
                 clock: Clock, method: str = "tls_client_auth",
                 issuer: str | None = None) -> None:
        if method not in ("tls_client_auth", "private_key_jwt"):
            raise TokenError("method must be tls_client_auth or private_key_jwt")
        self._url = server_url.rstrip("/")
        self._client_id = client_id
        self._ssl_context = ssl_context
        self._key = key
        self._server_ca = server_ca
        self._clock = clock
        self._method = method
        self._issuer = issuer
        self._cache: dict[tuple[str, str | None], CachedToken] = {}
        self._lock = threading.Lock()

    def token(self, scope: str, audience: str | None = None) -> str:
        """A valid access token for ``scope`` (space-separated), cached until 80 % of it."""
        key = (scope, audience)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self._clock.now() < cached.refresh_at:
                return cached.value
            fresh = self._fetch(scope, audience)
            self._cache[key] = fresh
            return fresh.value

    def forget(self) -> None:
        """Drop every cached token (e.g. after a certificate renewal)."""
        with self._lock:
            self._cache.clear()

    def _fetch(self, scope: str, audience: str | None) -> CachedToken:
        form = {"grant_type": "client_credentials", "client_id": self._client_id,
                "scope": scope}
        if audience:
            form["resource"] = audience
        if self._method == "private_key_jwt":
            form.update(client_assertion_type=CLIENT_ASSERTION_TYPE,
                        client_assertion=self._assertion())
            verify: ssl.SSLContext | str = server_tls_context(self._server_ca)
        else:
            verify = self._ssl_context()
        now = self._clock.now()
        try:
            with httpx.Client(base_url=self._url, verify=verify, timeout=30) as http:
                response = http.post("/oauth2/token", data=form)
        except (httpx.HTTPError, ssl.SSLError) as e:
            raise TokenError(f"cannot reach {self._url}: {e}") from e
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error_description") or body.get("error") or response.text[:200]
            raise TokenError(f"token request refused (HTTP {response.status_code}): {error}")
        lifetime = timedelta(seconds=max(1, int(body.get("expires_in", 60))))
        return CachedToken(value=str(body["access_token"]), refresh_at=now + lifetime * REFRESH_AT,
                           expires_at=now + lifetime, scope=str(body.get("scope", scope)))

    def _assertion(self) -> str:
        issuer = self._issuer or self._discover_issuer()
        now = int(self._clock.now().timestamp())
        claims = {"iss": self._client_id, "sub": self._client_id, "aud": issuer,
                  "iat": now, "exp": now + int(ASSERTION_LIFETIME.total_seconds()),
                  "jti": secrets.token_urlsafe(16)}
        device_key = self._key()
        if isinstance(device_key, ExternalKeySigner):
            return _token_signed_es256(device_key, claims)
        key, alg = _jose_key(device_key)
        return jwt.encode({"alg": alg, "typ": "client-authentication+jwt"}, claims, key,
                          algorithms=[alg])

    def _discover_issuer(self) -> str:
        """RFC 8414: the issuer identifier is the assertion's audience (rfc7523bis)."""
        context = server_tls_context(self._server_ca)
        try:
            response = httpx.get(f"{self._url}/.well-known/oauth-authorization-server",
                                 verify=context, timeout=30)
            issuer = response.json()["issuer"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            raise TokenError(f"cannot read the authorization server metadata: {e}") from e
        self._issuer = str(issuer)
        return self._issuer


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token_signed_es256(signer: ExternalKeySigner, claims: dict[str, object]) -> str:
    """A compact JWS (RFC 7515 §7.1) signed by a key in a token: ES256 over the signing
    input, the DER signature turned into the fixed-size ``r || s`` of RFC 7518 §3.4."""
    header = {"alg": "ES256", "typ": "client-authentication+jwt"}
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    r, s = decode_dss_signature(signer.sign_bytes(signing_input.encode()))
    return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
