"""The HTTP side of single sign-on (``web.identity_provider``) against answers a provider
could give, over httpx's mock transport (the real provider: test_console_sso.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest

from iotiam.kernel import Role
from iotiam.sso.models import OidcConfig, PendingSignIn, RoleGrant, SignInRefused
from iotiam.sso.pkce import code_challenge
from iotiam.web.identity_provider import OidcProvider

ISSUER = "https://idp.example/realms/iot"
CONFIG = OidcConfig(issuer=ISSUER, client_id="iot iam", client_secret="s:e/c",
                    role_map=(("g", RoleGrant(Role.VIEWER, "/root/")),))
DISCOVERY = {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
             "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/certs",
             "code_challenge_methods_supported": ["S256"]}
PENDING = PendingSignIn(state="st", nonce="no", verifier="v" * 43, next="/console/",
                        started_at=0.0)


def provider(answer: Callable[[httpx.Request], httpx.Response]) -> OidcProvider:
    return OidcProvider(CONFIG, "https://iam.example:8443/console/oidc/callback",
                        transport=httpx.MockTransport(answer))


def discovery(document: dict[str, object], then: Callable[[httpx.Request], httpx.Response]
              | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json=document)
        assert then is not None
        return then(request)
    return answer


def test_ok_authorization_url_carries_pkce_state_and_nonce() -> None:
    url = provider(discovery(DISCOVERY)).authorization_url(PENDING)
    assert url.startswith(f"{ISSUER}/auth?")
    query = {k: v[0] for k, v in parse_qs(url.split("?", 1)[1]).items()}
    assert query == {"response_type": "code", "client_id": "iot iam",
                     "redirect_uri": "https://iam.example:8443/console/oidc/callback",
                     "scope": "openid email profile", "state": "st", "nonce": "no",
                     "code_challenge": code_challenge("v" * 43),
                     "code_challenge_method": "S256"}
    assert "v" * 43 not in url  # only the verifier's hash leaves


def test_ok_exchange_sends_verifier_and_form_encoded_basic_auth() -> None:
    seen: list[httpx.Request] = []

    def token(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id_token": "a.b.c", "access_token": "x"})

    assert provider(discovery(DISCOVERY, token)).exchange("the-code", "v" * 43) == "a.b.c"
    form = {k: v[0] for k, v in parse_qs(seen[0].content.decode()).items()}
    assert form["code_verifier"] == "v" * 43 and form["code"] == "the-code"
    # RFC 6749 §2.3.1: id and secret form-encoded, then Basic
    basic = base64.b64decode(seen[0].headers["authorization"].split()[1]).decode()
    assert basic == "iot%20iam:s%3Ae%2Fc"


@pytest.mark.parametrize(("document", "says"), [
    ({**DISCOVERY, "issuer": "https://evil.example"}, "names the issuer"),
    ({**DISCOVERY, "token_endpoint": "http://idp.example/token"}, "https://"),
    ({**DISCOVERY, "code_challenge_methods_supported": ["plain"]}, "PKCE with S256"),
    ({k: v for k, v in DISCOVERY.items() if k != "jwks_uri"}, "no jwks_uri"),
], ids=["fail/issuer-mix-up", "fail/plain-http-endpoint", "fail/no-s256", "fail/no-jwks"])
def test_fail_discovery_document(document: dict[str, object], says: str) -> None:
    with pytest.raises(SignInRefused) as refused:
        provider(discovery(document)).authorization_url(PENDING)
    assert says in refused.value.detail


@pytest.mark.parametrize(("status", "body", "says"), [
    (400, {"error": "invalid_grant", "error_description": "PKCE verification failed"},
     "invalid_grant PKCE verification failed"),
    (200, {"access_token": "x"}, "no ID token"),
    (502, "<html>bad gateway</html>", "token endpoint"),
], ids=["fail/refused-code", "fail/no-id-token", "fail/not-json"])
def test_fail_token_answer(status: int, body: object, says: str) -> None:
    def token(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, str) else json.dumps(body)
        return httpx.Response(status, content=content.encode())

    with pytest.raises(SignInRefused) as refused:
        provider(discovery(DISCOVERY, token)).exchange("c", "v" * 43)
    assert says in refused.value.detail


def test_fail_provider_unreachable() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(SignInRefused, match="could not be fetched"):
        provider(down).authorization_url(PENDING)
