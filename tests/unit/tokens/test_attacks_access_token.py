"""G10: hostile access tokens, refused by the resource-server helper and by introspection."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey

from iotiam.testing import make_key
from iotiam.tokens.verify import TokenRejected, TokenVerifier
from tokens.oauthkit import DeviceIdentity, OAuthKit, forge, forge_hs256


@pytest.fixture
def verifier(kit: OAuthKit) -> TokenVerifier:
    """A resource server for the default audience, on the installation's clock."""
    return TokenVerifier(issuer=kit.issuer, audience="urn:iotiam:fleet",
                         jwks=kit.inst.services.oauth.keys.jwks, clock=kit.inst.clock)


def good_claims(kit: OAuthKit, **changes: Any) -> dict[str, Any]:
    """Claims of a token iotiam could have issued to d1."""
    claims: dict[str, Any] = {"iss": kit.issuer, "sub": "d1", "aud": "urn:iotiam:fleet",
                              "exp": kit.now + 300, "iat": kit.now, "jti": "forged",
                              "client_id": "d1", "scope": "mqtt:publish:devices/d1/#"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed_by_issuer(kit: OAuthKit, claims: dict[str, Any], typ: str | None = "at+jwt",
                     **header: Any) -> str:
    """A token signed with the real signing key (as if iotiam had a bug)."""
    ring = kit.inst.services.oauth.keys.ring()
    head = {"alg": "ES256", "kid": ring.signing_kid, **header}
    if typ is not None:
        head["typ"] = typ
    return jwt.encode(head, claims, ring.signing_key, algorithms=["ES256"], default_type=None)


def rejected(kit: OAuthKit, verifier: TokenVerifier, token: str, reason: str) -> None:
    """The helper refuses with ``reason`` and introspection says only inactive."""
    with pytest.raises(TokenRejected) as caught:
        verifier.verify(token)
    assert reason in caught.value.detail
    assert kit.introspect(token) == {"active": False}


def test_ok_a_real_token_passes(kit: OAuthKit, d1: DeviceIdentity,
                                verifier: TokenVerifier) -> None:
    token = kit.access_token(d1)
    verified = verifier.verify(token)
    assert verified.client_id == "d1" and verified.has_scope("mqtt:publish:devices/d1/#")
    assert kit.introspect(token)["active"] is True
    # a forged token with good claims signed by the real key would pass: the baseline
    assert verifier.verify(signed_by_issuer(kit, good_claims(kit))).subject == "d1"


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_fail_alg_none(kit: OAuthKit, d1: DeviceIdentity, verifier: TokenVerifier,
                       alg: str) -> None:
    kid = kit.inst.services.oauth.keys.ring().signing_kid
    rejected(kit, verifier, forge({"alg": alg, "typ": "at+jwt", "kid": kid}, good_claims(kit)),
             "not accepted")


def test_fail_hs256_signed_with_the_issuers_public_key(kit: OAuthKit, d1: DeviceIdentity,
                                                       verifier: TokenVerifier) -> None:
    ring = kit.inst.services.oauth.keys.ring()
    public_pem = ring.signing_key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    token = forge_hs256({"alg": "HS256", "typ": "at+jwt", "kid": ring.signing_kid},
                        good_claims(kit), public_pem)
    rejected(kit, verifier, token, "HS256")


def test_fail_embedded_jwk_with_the_attackers_key(kit: OAuthKit, verifier: TokenVerifier
                                                  ) -> None:
    attacker = ECKey.import_key(make_key())
    kid = kit.inst.services.oauth.keys.ring().signing_kid
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": kid,
                        "jwk": attacker.as_dict(private=False)}, good_claims(kit), attacker)
    rejected(kit, verifier, token, "does not verify")


@pytest.fixture
def listener() -> Iterator[tuple[str, socket.socket]]:
    """A local port that would notice a fetch."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/jwks", sock
    finally:
        sock.close()


@pytest.mark.parametrize("header", ["jku", "x5u"])
def test_fail_jku_x5u_never_fetched(kit: OAuthKit, verifier: TokenVerifier, header: str,
                                    listener: tuple[str, socket.socket]) -> None:
    url, sock = listener
    attacker = ECKey.import_key(make_key())
    token = jwt.encode({"alg": "ES256", "typ": "at+jwt", "kid": "attacker", header: url},
                       good_claims(kit), attacker)
    rejected(kit, verifier, token, "no published key")
    with pytest.raises(BlockingIOError):
        sock.accept()


@pytest.mark.parametrize("kid", ["../../../etc/passwd", "' OR '1'='1", "a/../../b"])
def test_fail_kid_path_traversal_or_sql(kit: OAuthKit, verifier: TokenVerifier, kid: str
                                        ) -> None:
    rejected(kit, verifier, signed_by_issuer(kit, good_claims(kit), kid=kid), "kid")


def test_fail_expired(kit: OAuthKit, d1: DeviceIdentity, verifier: TokenVerifier) -> None:
    token = kit.access_token(d1)
    kit.inst.clock.advance(timedelta(minutes=11))
    rejected(kit, verifier, token, "expired")


def test_fail_not_yet_valid(kit: OAuthKit, verifier: TokenVerifier) -> None:
    token = signed_by_issuer(kit, good_claims(kit, nbf=kit.now + 600, exp=kit.now + 900))
    with pytest.raises(TokenRejected, match="not valid yet"):
        verifier.verify(token)


def test_fail_missing_exp(kit: OAuthKit, verifier: TokenVerifier) -> None:
    rejected(kit, verifier, signed_by_issuer(kit, good_claims(kit, exp=None)), "'exp'")


def test_fail_wrong_audience(kit: OAuthKit, d1: DeviceIdentity) -> None:
    other = TokenVerifier(issuer=kit.issuer, audience="https://billing.example",
                          jwks=kit.inst.services.oauth.keys.jwks, clock=kit.inst.clock)
    with pytest.raises(TokenRejected, match="audience"):
        other.verify(kit.access_token(d1))


@pytest.mark.parametrize("typ", [None, "JWT", "client-authentication+jwt"])
def test_fail_wrong_typ(kit: OAuthKit, verifier: TokenVerifier, typ: str | None) -> None:
    rejected(kit, verifier, signed_by_issuer(kit, good_claims(kit), typ=typ), "typ")


def test_fail_client_assertion_used_as_access_token(kit: OAuthKit, d1: DeviceIdentity,
                                                    verifier: TokenVerifier) -> None:
    rejected(kit, verifier, kit.assertion("d1", d1.key), "typ")


def test_fail_token_of_another_issuer(kit: OAuthKit, verifier: TokenVerifier) -> None:
    rejected(kit, verifier, signed_by_issuer(kit, good_claims(kit, iss="https://evil")),
             "another issuer")


def test_fail_bound_token_with_another_certificate_or_none(kit: OAuthKit, d1: DeviceIdentity,
                                                          verifier: TokenVerifier) -> None:
    other = kit.device("d2")
    token = kit.access_token(d1, mtls=True)
    assert verifier.verify(token, certificate=d1.certificate).client_id == "d1"
    assert verifier.verify(token, certificate=d1.der).client_id == "d1"
    with pytest.raises(TokenRejected, match="another client certificate"):
        verifier.verify(token, certificate=other.certificate)
    with pytest.raises(TokenRejected, match="none was presented"):
        verifier.verify(token)


def test_ok_unbound_token_and_require_binding(kit: OAuthKit, d1: DeviceIdentity) -> None:
    strict = TokenVerifier(issuer=kit.issuer, audience="urn:iotiam:fleet",
                           jwks=kit.inst.services.oauth.keys.jwks, clock=kit.inst.clock,
                           require_binding=True)
    with pytest.raises(TokenRejected, match="certificate-bound"):
        strict.verify(kit.access_token(d1), certificate=d1.certificate)
    assert strict.verify(kit.access_token(d1, mtls=True), certificate=d1.certificate)


@pytest.mark.parametrize("garbage", ["", "a.b", "a.b.c.d", "!!!.???.***", "x" * 10_000,
                                     "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.sig"])
def test_fail_garbage(kit: OAuthKit, verifier: TokenVerifier, garbage: str) -> None:
    with pytest.raises(TokenRejected):
        verifier.verify(garbage)
    answer = kit.http.post("/oauth2/introspect", data={"token": garbage or "-"},
                           headers={"Authorization": f"Bearer {kit.inst.admin_token}"})
    if len(garbage) > 8192:  # over any parameter's size: a malformed request
        kit.assert_oauth_error(answer, "invalid_request", detail="too long")
    else:
        assert answer.json() == {"active": False}
