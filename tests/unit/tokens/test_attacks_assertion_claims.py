"""G10: client assertions with hostile claims or from a client no longer trusted.

Each is refused with invalid_client (RFC 6749 §5.2, never a 5xx), issues no token and
leaves an audited refusal.
"""

from __future__ import annotations

import pytest
from joserfc.jwk import ECKey

from tokens.oauthkit import DeviceIdentity, OAuthKit, refused


def test_fail_expired(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.assertion("d1", d1.key, exp=kit.now - 120, iat=kit.now - 180),
            "expired")


def test_fail_not_yet_valid(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.assertion("d1", d1.key, nbf=kit.now + 300, exp=kit.now + 400),
            "not valid yet")


def test_fail_missing_exp(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.assertion("d1", d1.key, drop=("exp",)), "'exp' is required")


def test_fail_exp_far_in_the_future(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.assertion("d1", d1.key, exp=kit.now + 86400), "too far")


def test_fail_aud_as_an_array(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.assertion("d1", d1.key, aud=[kit.issuer]), "single string")


def test_fail_aud_is_the_token_endpoint(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.assertion("d1", d1.key, aud=f"{kit.issuer}/oauth2/token"),
            "not the token endpoint")


def test_fail_replayed_jti(kit: OAuthKit, d1: DeviceIdentity) -> None:
    assertion = kit.assertion("d1", d1.key, jti="once")
    assert kit.token(assertion=assertion).status_code == 200
    refused(kit, assertion, "replayed")
    # a new assertion with the same jti is a replay too
    refused(kit, kit.assertion("d1", d1.key, jti="once"), "replayed")


def test_fail_access_token_used_as_client_assertion(kit: OAuthKit, d1: DeviceIdentity) -> None:
    refused(kit, kit.access_token(d1), "typ")


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "id_token+jwt", "JWS"])
def test_fail_wrong_typ(kit: OAuthKit, d1: DeviceIdentity, typ: str) -> None:
    refused(kit, kit.assertion("d1", d1.key, header={"typ": typ}), "typ")


@pytest.mark.parametrize("typ", [None, "JWT", "client-authentication+jwt",
                                 "application/client-authentication+jwt"])
def test_ok_accepted_typs(kit: OAuthKit, d1: DeviceIdentity, typ: str | None) -> None:
    assertion = kit.assertion("d1", d1.key, header={"typ": typ} if typ else {})
    if typ is None:
        # joserfc adds typ JWT by default; forge one without any typ header
        from joserfc import jwt

        claims = {"iss": "d1", "sub": "d1", "aud": kit.issuer, "exp": kit.now + 60,
                  "jti": "no-typ"}
        assertion = jwt.encode({"alg": "ES256"}, claims, ECKey.import_key(d1.key),
                               default_type=None)
    assert kit.token(assertion=assertion).status_code == 200


def test_fail_iss_or_sub_of_another_client(kit: OAuthKit, d1: DeviceIdentity) -> None:
    kit.device("d2")
    refused(kit, kit.assertion("d2", d1.key), "does not verify")
    refused(kit, kit.assertion("d1", d1.key, sub="d2"), "'iss' and 'sub'")


@pytest.mark.parametrize("how", ["certificate-revoked", "quarantined", "suspended",
                                 "decommissioned", "client-revoked"])
def test_fail_revoked_devices_client(kit: OAuthKit, d1: DeviceIdentity, how: str) -> None:
    api = kit.api
    if how == "certificate-revoked":
        assert api.post(f"/v1/certificates/{d1.serial}/revoke",
                        json={"reason": "keyCompromise"}).status_code == 200
    elif how == "client-revoked":
        assert api.post("/v1/oauth/clients/d1/revoke").status_code == 200
    else:
        assert api.post("/v1/devices/d1/state", json={"state": how}).status_code == 200
    if how in ("quarantined", "suspended"):
        # out of service for now: an authenticated client is told so (test_oauth_interop)
        answer = kit.token(assertion=kit.assertion("d1", d1.key))
        kit.assert_oauth_error(answer, "access_denied", 400, f"device {how}: ")
        return
    refused(kit, kit.assertion("d1", d1.key))
    answer = kit.token(cert=d1, client_id="d1")
    kit.assert_oauth_error(answer, "invalid_client", 401)
