"""RFC conformance that third-party OAuth clients rely on, on both token paths.

Certificate binding (RFC 8705), RFC 8414 metadata, RFC 6749 §3.2 / §5.2 wire details,
RFC 6750 §3 challenges, RFC 8707 resources, and what a quarantined device is told.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from iotiam.tokens.models import CLIENT_ASSERTION_TYPE
from tokens.oauthkit import INTROSPECT, TOKEN, DeviceIdentity, OAuthKit, token_fast_path

PATHS = ("fast-path", "route")


def token_client(kit: OAuthKit, path: str) -> TestClient:
    """The whole app (the fast path answers) or the app behind the fast path (the route)."""
    if path == "fast-path":
        return kit.http
    app = token_fast_path(kit)
    route = TestClient(app.app, raise_server_exceptions=False, client=("127.0.0.1", 50000))
    kit.inst._clients.append(route)
    return route


def post_token(kit: OAuthKit, path: str, data: dict[str, str] | list[tuple[str, str]], *,
               cert: DeviceIdentity | None = None,
               headers: dict[str, str] | None = None) -> httpx.Response:
    """POST the token endpoint through one path (a list of pairs may repeat a name)."""
    return token_client(kit, path).post(
        TOKEN, content=urlencode(data),
        headers={"content-type": "application/x-www-form-urlencoded",
                 **kit.cert_header(cert), **(headers or {})})


def signed(kit: OAuthKit, device: DeviceIdentity) -> dict[str, str]:
    """client_credentials with a private_key_jwt assertion of ``device``."""
    return {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": kit.assertion(device.device_id, device.key)}


# -- item 6: a presented certificate must be the client's -----------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_fail_private_key_jwt_with_another_devices_certificate(
        kit: OAuthKit, d1: DeviceIdentity, path: str) -> None:
    d2 = kit.device("d2")
    answer = post_token(kit, path, signed(kit, d1), cert=d2)
    kit.assert_oauth_error(answer, "invalid_client", 401, "does not belong to client 'd1'")


@pytest.mark.parametrize("path", PATHS)
def test_ok_private_key_jwt_with_its_own_certificate_is_bound(
        kit: OAuthKit, d1: DeviceIdentity, path: str) -> None:
    answer = post_token(kit, path, signed(kit, d1), cert=d1)
    assert answer.status_code == 200, answer.text
    assert "x5t#S256" in kit.introspect(answer.json()["access_token"])["cnf"]


# -- item 14: RFC 8414 metadata ----------------------------------------------------------------


def test_ok_metadata_validates_with_authlib(kit: OAuthKit) -> None:
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    answer = kit.http.get("/.well-known/oauth-authorization-server")
    assert answer.status_code == 200
    body = answer.json()
    AuthorizationServerMetadata(body).validate()
    assert body["response_types_supported"]
    # every action a scope can name is advertised, as a well-formed scope token
    scopes = body["scopes_supported"]
    for action in ("mqtt:connect", "mqtt:publish", "mqtt:subscribe", "mqtt:receive",
                   "http:GET"):
        assert any(s.startswith(action + ":") for s in scopes), action
    assert all(re.fullmatch(r"[\x21\x23-\x5b\x5d-\x7e]+", s) for s in scopes)


# -- item 14: WWW-Authenticate matches the scheme used (RFC 6749 §5.2, RFC 6750 §3) ------------


@pytest.mark.parametrize("path", PATHS)
def test_fail_basic_authentication_is_challenged_with_basic(kit: OAuthKit, d1: DeviceIdentity,
                                                           path: str) -> None:
    answer = post_token(kit, path, {"grant_type": "client_credentials"},
                        headers={"Authorization": "Basic ZDE6aHVudGVyMg=="})
    kit.assert_oauth_error(answer, "invalid_client", 401)
    assert answer.headers["www-authenticate"].startswith("Basic ")


@pytest.mark.parametrize("path", PATHS)
def test_fail_assertion_refusal_does_not_challenge_a_scheme_not_used(
        kit: OAuthKit, d1: DeviceIdentity, path: str) -> None:
    data = signed(kit, d1)
    data["client_assertion"] = kit.assertion("d1", d1.key, aud="https://elsewhere")
    answer = post_token(kit, path, data)
    kit.assert_oauth_error(answer, "invalid_client", 401)
    # no Authorization header was used: a Bearer challenge would send the client astray
    assert "bearer" not in answer.headers.get("www-authenticate", "").lower()


def test_fail_bad_bearer_at_introspection_gets_an_rfc6750_challenge(
        kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.http.post(INTROSPECT, data={"token": "x"},
                           headers={"Authorization": "Bearer not-a-real-admin-token"})
    assert answer.status_code == 401, answer.text
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


# -- item 14: error_description within RFC 6749's character set -------------------------------

_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


@pytest.mark.parametrize("path", PATHS)
def test_fail_error_description_stays_in_the_rfc6749_character_set(
        kit: OAuthKit, d1: DeviceIdentity, path: str) -> None:
    answer = post_token(kit, path, {"grant_type": 'pa"ss\\wörd\x7f'})
    kit.assert_oauth_error(answer, "unsupported_grant_type", 400)
    assert _DESCRIPTION.fullmatch(answer.json()["error_description"]), answer.text


# -- item 14: empty parameters are omitted ones (RFC 6749 §3.2) --------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_ok_empty_parameters_are_treated_as_omitted(kit: OAuthKit, d1: DeviceIdentity,
                                                    path: str) -> None:
    answer = post_token(kit, path, {"grant_type": "client_credentials", "client_id": "d1",
                                    "scope": "", "resource": "", "client_assertion": "",
                                    "client_assertion_type": "", "client_secret": ""},
                        cert=d1)
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"]  # the client's scopes, as if none were asked for


# -- item 14: several resources (RFC 8707 §2) ---------------------------------------------------

A, B = "https://a.example/api", "https://b.example/api"


@pytest.mark.parametrize("path", PATHS)
def test_ok_several_resources_make_an_audience_list(kit: OAuthKit, path: str) -> None:
    d1 = kit.device("d1", audiences=[A, B])
    answer = post_token(kit, path, [("grant_type", "client_credentials"), ("client_id", "d1"),
                                    ("resource", A), ("resource", B)], cert=d1)
    assert answer.status_code == 200, answer.text
    assert kit.introspect(answer.json()["access_token"])["aud"] == [A, B]


@pytest.mark.parametrize("path", PATHS)
def test_fail_one_unregistered_resource_among_several(kit: OAuthKit, path: str) -> None:
    d1 = kit.device("d1", audiences=[A, B])
    answer = post_token(kit, path, [("grant_type", "client_credentials"), ("client_id", "d1"),
                                    ("resource", A), ("resource", "https://c.example/")],
                        cert=d1)
    kit.assert_oauth_error(answer, "invalid_target", 400, "https://c.example/")


# -- item 14: a quarantined device is told why --------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("state", ["quarantined", "suspended"])
def test_fail_a_quarantined_device_is_told_why(kit: OAuthKit, d1: DeviceIdentity, path: str,
                                               state: str) -> None:
    assert kit.api.post("/v1/devices/d1/state", json={"state": state}).status_code == 200
    for answer in (post_token(kit, path, signed(kit, d1)),
                   post_token(kit, path, {"grant_type": "client_credentials",
                                          "client_id": "d1"}, cert=d1)):
        kit.assert_oauth_error(answer, "access_denied", 400, f"device {state}: ")


def test_fail_a_device_authorization_for_several_resources(kit: OAuthKit) -> None:
    panel = kit.device("panel", grant_types=["device_code"], audiences=[A, B])
    answer = kit.http.post("/oauth2/device_authorization", content=urlencode([
        ("client_id", "panel"), ("resource", A), ("resource", B)]),
        headers={"content-type": "application/x-www-form-urlencoded",
                 **kit.cert_header(panel)})
    kit.assert_oauth_error(answer, "invalid_target", 400, "one resource")
    answer = kit.http.post("/oauth2/device_authorization", content=urlencode([
        ("client_id", "panel"), ("resource", B)]),
        headers={"content-type": "application/x-www-form-urlencoded",
                 **kit.cert_header(panel)})
    assert answer.status_code == 200, answer.text
