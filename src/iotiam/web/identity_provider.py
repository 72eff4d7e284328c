"""The console's OpenID Connect provider over HTTP (``sso.ports.IdentityProvider``):
discovery, the authorization URL, the code exchange and its signing keys. Foreign
errors (httpx, JSON) are turned into ``SignInRefused`` here, once."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from joserfc.jwk import Key

from iotiam.errors import InvalidInput, Unauthenticated
from iotiam.sso.models import OidcConfig, PendingSignIn, SignInRefused
from iotiam.sso.pkce import check_provider_url, code_challenge
from iotiam.tokens import jws
from iotiam.tokens.verify import RemoteJwks, client_tls_context
from iotiam.untrusted import load_json

#: providers publish a handful of signing keys (rotation overlaps); bound what we read
MAX_PROVIDER_KEYS = 50
TIMEOUT = 5.0


@dataclass(frozen=True)
class ProviderMetadata:
    """The part of the discovery document the console uses (OIDC Discovery §3)."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class OidcProvider:
    """One provider, discovered on first use; its keys cached and refetched when a token
    is signed by one we do not hold yet (rotation)."""

    def __init__(self, config: OidcConfig, redirect_uri: str, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._config = config
        self.redirect_uri = redirect_uri
        verify = client_tls_context(str(config.ca_file) if config.ca_file else True)
        self._http = httpx.Client(verify=verify, timeout=TIMEOUT, transport=transport,
                                  follow_redirects=False)
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._jwks: RemoteJwks | None = None
        self._keys: list[Key] = []

    def close(self) -> None:
        """Release the HTTP connections."""
        self._http.close()

    def metadata(self) -> ProviderMetadata:
        """The discovery document, fetched once (OIDC Discovery §4)."""
        with self._lock:
            return self._metadata_held()

    def _metadata_held(self) -> ProviderMetadata:
        if self._metadata is None:
            self._metadata = self._discover()
        return self._metadata

    def _discover(self) -> ProviderMetadata:
        url = self._config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        body = self._get_json(url, "the provider's discovery document")
        # OIDC Discovery §4.3: the document's issuer is exactly the configured one
        if body.get("issuer") != self._config.issuer:
            raise SignInRefused(f"the provider's discovery document names the issuer "
                                f"{str(body.get('issuer'))[:200]!r}, not "
                                f"{self._config.issuer!r} (IOTIAM_OIDC_ISSUER)")
        methods = body.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise SignInRefused("the provider does not support PKCE with S256")
        found: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = body.get(name)
            if not isinstance(value, str):
                raise SignInRefused(f"the provider's discovery document has no {name}")
            try:
                check_provider_url(value, name)
            except InvalidInput as e:
                raise SignInRefused(e.detail) from e
            found[name] = value
        return ProviderMetadata(**found)

    def authorization_url(self, pending: PendingSignIn) -> str:
        """Where to send the browser: code flow with state, nonce and PKCE S256."""
        endpoint = self.metadata().authorization_endpoint
        query = urlencode({
            "response_type": "code", "client_id": self._config.client_id,
            "redirect_uri": self.redirect_uri, "scope": self._config.scopes,
            "state": pending.state, "nonce": pending.nonce,
            "code_challenge": code_challenge(pending.verifier),
            "code_challenge_method": "S256"})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def exchange(self, code: str, verifier: str) -> str:
        """The ID token the token endpoint gives for ``code`` (RFC 6749 §4.1.3)."""
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": self.redirect_uri, "code_verifier": verifier}
        headers = {"accept": "application/json"}
        secret = self._config.client_secret
        if secret is None:
            form["client_id"] = self._config.client_id
        else:
            # RFC 6749 §2.3.1: each part form-encoded before the Basic encoding
            pair = f"{quote(self._config.client_id, safe='')}:{quote(secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = self._http.post(self.metadata().token_endpoint, data=form,
                                       headers=headers)
        except httpx.HTTPError as e:
            raise SignInRefused(f"the provider's token endpoint did not answer: {e}") from e
        body = self._json(response, "the token endpoint's answer", any_status=True)
        if response.status_code != 200:
            error = str(body.get("error", response.status_code))[:100]
            said = str(body.get("error_description", ""))[:200]
            raise SignInRefused(f"the provider refused the code: {error} {said}".strip())
        token = body.get("id_token")
        if not isinstance(token, str):
            raise SignInRefused("the provider's token answer holds no ID token")
        return token

    def keys(self, *, refresh: bool = False) -> list[Key]:
        """The provider's signing keys; ``refresh`` asks again (rate limited)."""
        with self._lock:
            if self._jwks is None:
                self._jwks = RemoteJwks(self._metadata_held().jwks_uri,
                                        client=self._http)
            if not self._keys or refresh:
                try:
                    value = dict(self._jwks())
                    signing = [k for k in value.get("keys", []) if isinstance(k, dict)
                               and k.get("use", "sig") == "sig"
                               and k.get("kty") in ("EC", "RSA", "OKP")]
                    self._keys = jws.public_key_set({"keys": signing},
                                                    max_keys=MAX_PROVIDER_KEYS)
                except InvalidInput as e:
                    raise SignInRefused(f"the provider's JWKS cannot be used: {e.detail}"
                                        ) from e
                except Unauthenticated as e:
                    raise SignInRefused(e.detail) from e
            return self._keys

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"accept": "application/json"})
        except httpx.HTTPError as e:
            raise SignInRefused(f"{what} could not be fetched: {e}") from e
        return self._json(response, what)

    @staticmethod
    def _json(response: httpx.Response, what: str, *, any_status: bool = False
              ) -> dict[str, Any]:
        if response.status_code != 200 and not any_status:
            raise SignInRefused(f"{what} answered HTTP {response.status_code}")
        try:
            body = load_json(response.content, what=what, max_bytes=512 * 1024)
        except InvalidInput as e:
            raise SignInRefused(e.detail) from e
        if not isinstance(body, dict):
            raise SignInRefused(f"{what} is not a JSON object")
        return body
