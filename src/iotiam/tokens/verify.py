"""``iotiam.tokens.verify``: accept iotiam access tokens in a Python resource server.

A resource server builds one :class:`TokenVerifier` and calls :meth:`TokenVerifier.verify`
for every request::

    verifier = TokenVerifier(
        issuer="https://iam.example:8443",
        audience="urn:iotiam:fleet",
        jwks=RemoteJwks("https://iam.example:8443/oauth2/jwks", verify="ca.pem"),
        revocation_check=IntrospectionCheck(           # optional: see below
            "https://iam.example:8443/oauth2/introspect",
            headers={"Authorization": "Bearer <an iotiam admin token, viewer role>"},
            verify="ca.pem"),
    )
    token = verifier.verify(bearer, certificate=peer_certificate_der)
    if not token.has_scope("mqtt:publish:devices/d1/telemetry"): ...

What it checks, locally: the JWS header (``alg`` ES256 only, so ``none`` and HMAC are
refused; ``kid`` of a key in the JWKS; ``jwk``/``jku``/``x5u`` headers ignored, never
fetched), ``typ`` ``at+jwt`` (RFC 9068 §4), the signature, ``iss``, ``aud``, ``exp``
(required), ``nbf`` and ``iat`` with a small leeway, and for a certificate-bound token
(``cnf`` ``x5t#S256``, RFC 8705 §3) that the TLS client certificate of the request is
the one it is bound to.

What it cannot know locally: that a token was revoked (RFC 7009), or that its device
was quarantined or its certificate revoked since it was issued. Those take effect at
the issuer at once (G3): its introspection endpoint answers ``active: false``, and
keeps answering it after a quarantine is lifted or a suspension ends (a token from
before it stays dead; the device gets new ones). A
resource server that must honour them before the token expires (minutes) passes a
``revocation_check``: :class:`IntrospectionCheck` asks the issuer (optionally caching
answers for a few seconds), or any callable ``(token, verified) -> bool`` that answers
whether the token is still active (e.g. one fed by a deny-list subscription).
Without one, a revoked token is accepted until it expires.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from iotiam.clock import Clock, SystemClock
from iotiam.errors import InvalidInput, Unauthenticated
from iotiam.tokens import jws
from iotiam.tokens.client_auth import x5t_s256
from iotiam.tokens.models import ACCESS_TOKEN_TYP, SIGNING_ALGORITHM
from iotiam.untrusted import load_json

if TYPE_CHECKING:  # imported where used: resource servers load this module cheaply
    import httpx

JwksSource = Mapping[str, Any] | Callable[[], Mapping[str, Any]]
#: a client certificate as httpx took it: a PEM file with the key, ``(cert, key)`` or
#: ``(cert, key, password)``
ClientCertificate = str | tuple[str, str] | tuple[str, str, str]
#: ``(token, verified) -> still active?``
RevocationCheck = Callable[[str, "VerifiedToken"], bool]


class TokenRejected(Unauthenticated):
    """The presented access token is not acceptable; ``detail`` says why."""

    kind = "invalid-token"
    title = "Invalid access token"


@dataclass(frozen=True)
class VerifiedToken:
    """An access token that passed every check."""

    claims: dict[str, Any]

    @property
    def subject(self) -> str:
        """``sub``: the client, or the person who approved a device code."""
        return str(self.claims["sub"])

    @property
    def client_id(self) -> str:
        """The OAuth client the token was issued to."""
        return str(self.claims["client_id"])

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes."""
        return frozenset(str(self.claims.get("scope", "")).split())

    @property
    def jti(self) -> str:
        """The token's id."""
        return str(self.claims["jti"])

    @property
    def expires_at(self) -> datetime:
        """When it expires."""
        return datetime.fromtimestamp(float(self.claims["exp"]), UTC)

    @property
    def bound_thumbprint(self) -> str | None:
        """RFC 8705 ``x5t#S256`` of the certificate it is bound to, if any."""
        cnf = self.claims.get("cnf")
        return str(cnf["x5t#S256"]) if isinstance(cnf, dict) and "x5t#S256" in cnf else None

    def has_scope(self, scope: str) -> bool:
        """Whether ``scope`` was granted."""
        return scope in self.scopes


class TokenVerifier:
    """Checks iotiam access tokens for one resource server (audience)."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksSource,
        revocation_check: RevocationCheck | None = None,
        clock: Clock | None = None,
        leeway: timedelta = timedelta(seconds=30),
        require_binding: bool = False,
        cache_size: int = 10_000,
    ) -> None:
        self._issuer = issuer.rstrip("/")
        self._audience = audience
        self._jwks = jwks
        self._check = revocation_check
        self._clock = clock or SystemClock()
        self._leeway = leeway.total_seconds()
        self._require_binding = require_binding
        self._keys: dict[str, Key] = {}
        self._keys_from: object = None
        self._lock = threading.Lock()
        # signature and claim checks of a token are cached; expiry, binding and the
        # revocation check are not (ES256 verification dominates the cost)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str, *, certificate: x509.Certificate | bytes | None = None
               ) -> VerifiedToken:
        """The verified token, or ``TokenRejected`` with the reason."""
        if not isinstance(token, str) or not token:
            raise TokenRejected("no access token")
        claims = self._cache.get(token)
        if claims is None:
            claims = self._verify_signed(token)
            if self._cache_size:
                with self._lock:
                    self._cache[token] = claims
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        now = self._clock.now().timestamp()
        if float(claims["exp"]) + self._leeway <= now:
            raise TokenRejected("the access token has expired")
        verified = VerifiedToken(claims)
        self._check_binding(verified, certificate)
        if self._check is not None and not self._check(token, verified):
            raise TokenRejected("the access token was revoked or its client is no longer "
                                "trusted")
        return verified

    # -- the signed part -----------------------------------------------------------------

    def _verify_signed(self, token: str) -> dict[str, Any]:
        try:
            header, _ = jws.split(token)
            jws.check_header(header, (SIGNING_ALGORITHM,))
            typ = jws.typ_of(header)
        except jws.JoseRejected as e:
            raise TokenRejected(e.detail) from e
        # RFC 9068 §4: the typ keeps ID tokens and client assertions out
        if typ != ACCESS_TOKEN_TYP:
            raise TokenRejected(f"typ {typ!r} is not {ACCESS_TOKEN_TYP!r}: not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenRejected("the access token has no 'kid'")
        key = self._key(kid)
        if key is None:
            raise TokenRejected(f"no published key has kid {kid!r}")
        try:
            _, claims, _ = jws.verify(token, [key], (SIGNING_ALGORITHM,))
        except jws.JoseRejected as e:
            raise TokenRejected(e.detail) from e
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != self._issuer:
            raise TokenRejected("the access token is from another issuer")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._audience not in audiences:
            raise TokenRejected(f"the access token is not for audience {self._audience!r}")
        now = self._clock.now().timestamp()
        exp = _numeric(claims, "exp", required=True)
        assert exp is not None
        if exp + self._leeway <= now:
            raise TokenRejected("the access token has expired")
        nbf = _numeric(claims, "nbf")
        if nbf is not None and nbf - self._leeway > now:
            raise TokenRejected("the access token is not valid yet")
        iat = _numeric(claims, "iat", required=True)
        assert iat is not None
        if iat - self._leeway > now:
            raise TokenRejected("the access token was issued in the future")
        for name in ("sub", "client_id", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise TokenRejected(f"the access token has no {name!r}")
        cnf = claims.get("cnf")
        if cnf is not None and not (isinstance(cnf, dict)
                                    and isinstance(cnf.get("x5t#S256"), str)):
            raise TokenRejected("the access token has a confirmation method this resource "
                                "server does not support")

    def _check_binding(self, token: VerifiedToken, certificate: x509.Certificate | bytes | None
                       ) -> None:
        bound = token.bound_thumbprint
        if bound is None:
            if self._require_binding:
                raise TokenRejected("this resource server needs a certificate-bound token")
            return
        # RFC 8705 §3.2: the request must come over mTLS with the very same certificate
        if certificate is None:
            raise TokenRejected("the access token is bound to a client certificate; none "
                                "was presented")
        der = certificate if isinstance(certificate, bytes) else \
            certificate.public_bytes(serialization.Encoding.DER)
        if x5t_s256(der) != bound:
            raise TokenRejected("the access token is bound to another client certificate")

    # -- keys ----------------------------------------------------------------------------

    def _key(self, kid: str) -> Key | None:
        key = self._keys.get(kid)
        if key is not None:
            return key
        self._load_keys()
        return self._keys.get(kid)

    def _load_keys(self) -> None:
        source = self._jwks() if callable(self._jwks) else self._jwks
        if source is self._keys_from:
            return
        try:
            keys = KeySet.import_key_set(dict(source))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as e:
            raise TokenRejected(f"the issuer's JWKS cannot be read: {e}") from e
        found = {}
        for key in keys.keys:
            if key.kid and not key.is_private:
                found[key.kid] = key
        with self._lock:
            self._keys = found
            self._keys_from = source


class RemoteJwks:
    """A JWKS fetched over HTTPS and cached; an unknown kid refetches (rate limited)."""

    def __init__(self, url: str, *, verify: ssl.SSLContext | str | bool = True,
                 min_refetch: float = 10.0, timeout: float = 5.0,
                 client: httpx.Client | None = None) -> None:
        self._url = url
        #: a caller's own client (its TLS trust, its transport); else one request each
        self._client = client
        self._verify = client_tls_context(verify)
        self._min_refetch = min_refetch
        self._timeout = timeout
        self._jwks: Mapping[str, Any] | None = None
        self._fetched = 0.0

    def __call__(self) -> Mapping[str, Any]:
        """The JWKS; the verifier asks again only for an unknown kid, which refetches at
        most every ``min_refetch`` seconds."""
        if self._jwks is None or time.monotonic() - self._fetched >= self._min_refetch:
            self._fetch()
        assert self._jwks is not None
        return self._jwks

    def _fetch(self) -> None:
        import httpx

        try:
            response = (self._client.get(self._url) if self._client is not None else
                        httpx.get(self._url, verify=self._verify, timeout=self._timeout))
            response.raise_for_status()
            body = load_json(response.content, what="the issuer's JWKS")
        except (httpx.HTTPError, InvalidInput) as e:
            if self._jwks is not None:
                return  # keep the last good set
            raise TokenRejected(f"cannot fetch the issuer's JWKS: {e}") from e
        if not isinstance(body, dict):
            raise TokenRejected("the issuer's JWKS is not a JSON object")
        self._jwks = body
        self._fetched = time.monotonic()


class IntrospectionCheck:
    """A ``revocation_check`` that asks the issuer's RFC 7662 endpoint (G3 at the RS).

    Authenticate with ``headers`` (an iotiam admin token of any role:
    ``{"Authorization": "Bearer ..."}``), with ``client_assertion`` (a callable
    returning a fresh private_key_jwt assertion, plus ``client_id``), or with mTLS
    (``cert``). ``cache_seconds`` > 0 trades that much revocation delay for fewer calls.
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None,
                 client_id: str | None = None,
                 client_assertion: Callable[[], str] | None = None,
                 cert: ClientCertificate | None = None,
                 verify: ssl.SSLContext | str | bool = True, cache_seconds: float = 0.0,
                 timeout: float = 5.0) -> None:
        import httpx

        self._url = url
        self._client_id = client_id
        self._assertion = client_assertion
        self._http = httpx.Client(headers=dict(headers or {}),
                                  verify=client_tls_context(verify, cert), timeout=timeout)
        self._cache_seconds = cache_seconds
        self._answers: dict[str, tuple[float, bool]] = {}

    def __call__(self, token: str, verified: VerifiedToken) -> bool:
        """Whether the issuer says the token is active (fails closed)."""
        import httpx

        key = hashlib.sha256(token.encode()).hexdigest()
        if self._cache_seconds:
            cached = self._answers.get(key)
            if cached is not None and time.monotonic() - cached[0] < self._cache_seconds:
                return cached[1]
        form = {"token": token, "token_type_hint": "access_token"}
        if self._client_id:
            form["client_id"] = self._client_id
        if self._assertion is not None:
            form["client_assertion_type"] = \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = self._assertion()
        try:
            response = self._http.post(self._url, data=form)
            answer = load_json(response.content, what="the introspection answer") \
                if response.status_code == 200 else None
            active = isinstance(answer, dict) and answer.get("active") is True
        except (httpx.HTTPError, InvalidInput):
            active = False
        if self._cache_seconds:
            if len(self._answers) > 10_000:
                self._answers.clear()
            self._answers[key] = (time.monotonic(), active)
        return active

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()


def client_tls_context(verify: ssl.SSLContext | str | bool = True,
                       cert: ClientCertificate | None = None) -> ssl.SSLContext | bool:
    """The one TLS context for the helpers' HTTPS calls: trust ``verify``, present ``cert``.

    httpx 0.28 deprecated ``cert=`` and a path as ``verify=``, and returns early for a
    path, so ``cert`` was silently dropped and mTLS introspection refused every token.
    Building the context here keeps the client certificate whatever httpx does with them.
    """
    if cert is None and not isinstance(verify, str):
        return verify
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif isinstance(verify, str) and os.path.isdir(verify):
        context = ssl.create_default_context(capath=verify)
    elif isinstance(verify, str):
        context = ssl.create_default_context(cafile=verify)
    elif verify:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if isinstance(cert, str):
        context.load_cert_chain(cert)
    elif cert is not None:
        context.load_cert_chain(*cert)
    return context


def _numeric(claims: dict[str, Any], name: str, *, required: bool = False) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise TokenRejected(f"the access token has no {name!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
            or abs(value) > 1e11:
        raise TokenRejected(f"the access token's {name!r} is not a NumericDate")
    return float(value)


__all__ = ["ClientCertificate", "IntrospectionCheck", "RemoteJwks", "RevocationCheck",
           "TokenRejected", "TokenVerifier", "VerifiedToken", "client_tls_context"]
