"""Registering OAuth2 clients: bound to a device or service and an org unit, G9, G10."""

from __future__ import annotations

from typing import Any

import pytest
from fleet import add_device, add_org_unit
from joserfc.jwk import ECKey, OctKey, RSAKey
from sqlalchemy import func, select

from iotiam.storage.tables.tokens import oauth_clients
from iotiam.testing import make_key
from tokens.oauthkit import DeviceIdentity, OAuthKit


def client_count(kit: OAuthKit) -> int:
    """Stored clients."""
    with kit.inst.services.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(oauth_clients)
                                ).scalar_one())


def public_jwks() -> dict[str, Any]:
    """A JWKS with one EC public key."""
    return {"keys": [ECKey.import_key(make_key()).as_dict(private=False, kid="k1")]}


def test_ok_device_client_defaults(kit: OAuthKit, d1: DeviceIdentity) -> None:
    client = kit.api.get("/v1/oauth/clients/d1").json()
    assert client["kind"] == "device" and client["device"] == "d1"
    assert client["token_endpoint_auth_methods"] == ["tls_client_auth", "private_key_jwt"]
    assert client["grant_types"] == ["client_credentials"]
    assert "mqtt:publish:devices/d1/#" in client["scope"].split()
    assert [c["client_id"] for c in kit.api.get("/v1/oauth/clients").json()["items"]] == ["d1"]


def test_ok_service_client_with_jwks(kit: OAuthKit) -> None:
    answer = kit.api.post("/v1/oauth/clients", json={
        "client_id": "billing", "jwks": public_jwks(), "scopes": ["http:GET:/readings"],
        "audiences": ["https://billing.example"]})
    # the default policy grants services nothing over HTTP
    assert answer.status_code == 400 and "not allowed by policy" in answer.json()["detail"]
    answer = kit.api.post("/v1/oauth/clients", json={
        "client_id": "billing", "jwks": public_jwks(),
        "scopes": ["mqtt:subscribe:devices/billing/#"]})
    assert answer.status_code == 201, answer.text
    assert answer.json()["kind"] == "service"


@pytest.mark.parametrize("body, detail", [
    ({"device": "nope"}, "not found"),
    ({"client_id": "svc"}, "jwks"),
    ({"client_id": "svc", "jwks": {"keys": []}}, "1-10 keys"),
    ({"client_id": "svc", "jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "oct"),
    ({"client_id": "svc", "auth_methods": ["tls_client_auth"]}, "device client"),
    ({"client_id": "../etc", "jwks": None}, ""),
    ({"client_id": "admin", "device": None}, ""),
    ({"device": "d1", "scopes": ["mqtt:publish:devices/d2/x"]}, "not allowed by policy"),
    ({"device": "d1", "scopes": ["read all"]}, "scope"),
    ({"device": "d1", "scopes": ["mqtt:publish:a/#/b"]}, "'#'"),
    ({"device": "d1", "grant_types": ["password"]}, "not offered"),
    ({"device": "d1", "auth_methods": ["client_secret_basic"]}, ""),
    ({"device": "d1", "surprise": 1}, ""),
])
def test_fail_bad_registrations(kit: OAuthKit, body: dict[str, Any], detail: str) -> None:
    add_device(kit.api, "d1")
    before = client_count(kit)
    answer = kit.api.post("/v1/oauth/clients", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert detail in answer.json()["detail"]
    assert client_count(kit) == before


@pytest.mark.parametrize("private", ["ec", "rsa", "oct"])
def test_fail_jwks_with_private_keys(kit: OAuthKit, private: str) -> None:
    key: Any
    if private == "ec":
        key = ECKey.import_key(make_key()).as_dict(private=True)
    elif private == "rsa":
        key = RSAKey.generate_key(2048).as_dict(private=True)
    else:
        key = OctKey.generate_key(256).as_dict()
    answer = kit.api.post("/v1/oauth/clients", json={"client_id": "svc",
                                                     "jwks": {"keys": [key]}})
    assert answer.status_code == 400


def test_fail_duplicate_and_second_client_for_a_device(kit: OAuthKit, d1: DeviceIdentity
                                                       ) -> None:
    assert kit.api.post("/v1/oauth/clients", json={"device": "d1"}).status_code == 409
    answer = kit.api.post("/v1/oauth/clients", json={"device": "d1", "client_id": "d1-bis"})
    assert answer.status_code == 409 and "already has" in answer.json()["detail"]


def test_ok_revoke_is_final(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.api.post("/v1/oauth/clients/d1/revoke")
    assert answer.status_code == 200 and answer.json()["status"] == "revoked"
    assert kit.api.post("/v1/oauth/clients/d1/revoke").status_code == 409


def test_fail_other_tenants_clients_are_invisible(kit: OAuthKit) -> None:
    for tenant in ("acme", "globex"):
        add_org_unit(kit.api, tenant, "tenant")
    kit.device("acme-d1", org="acme")
    kit.device("globex-d1", org="globex")
    acme = kit.inst.api(kit.inst.token("admin", "acme"))
    assert [c["client_id"] for c in acme.get("/v1/oauth/clients").json()["items"]] == [
        "acme-d1"]
    assert acme.get("/v1/oauth/clients/globex-d1").status_code == 404
    assert acme.post("/v1/oauth/clients/globex-d1/revoke").status_code == 404
    assert acme.post("/v1/oauth/clients", json={"device": "globex-d1",
                                                "client_id": "x"}).status_code == 404
    viewer = kit.inst.api(kit.inst.token("viewer", "acme"))
    assert viewer.post("/v1/oauth/clients/acme-d1/revoke").status_code == 403
    assert kit.api.get("/v1/oauth/clients/globex-d1").json()["status"] == "active"


def nested(depth: int) -> Any:
    """``[[[…]]]`` nested ``depth`` deep, as decoded data."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("where", ["key-member", "set-member"])
def test_fail_deep_jwks(kit: OAuthKit, where: str) -> None:
    """A JWKS nested beyond any JWK (10 deep: within the body bound of 32, past a JWK's 4) is
    refused before it is stored, where it would break every later read of the client."""
    jwks = public_jwks()
    if where == "key-member":
        jwks["keys"][0]["ext_data"] = nested(10)
    else:
        jwks["extra"] = nested(10)
    before = client_count(kit)
    answer = kit.api.post("/v1/oauth/clients", json={
        "client_id": "svc", "jwks": jwks, "scopes": ["mqtt:subscribe:devices/svc/#"]})
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert "jwks is nested more than 4 deep" in answer.json()["detail"]
    assert client_count(kit) == before
