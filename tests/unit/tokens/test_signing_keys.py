"""Signing keys: ES256, encrypted at rest, rotated with overlap."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from iotiam.storage.tables.tokens import oauth_signing_keys
from iotiam.tokens.verify import TokenVerifier
from tokens.oauthkit import DeviceIdentity, OAuthKit


def test_ok_private_key_encrypted_at_rest(kit: OAuthKit, d1: DeviceIdentity) -> None:
    kit.access_token(d1)
    with kit.inst.services.database.engine.connect() as conn:
        rows = list(conn.execute(select(oauth_signing_keys)))
    assert len(rows) == 1
    assert rows[0].encrypted_key_pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert '"d"' not in rows[0].public_jwk


def test_ok_rotation_keeps_the_old_key_published_until_its_last_token_expires(
        kit: OAuthKit, d1: DeviceIdentity) -> None:
    keys = kit.inst.services.oauth.keys
    old_token = kit.access_token(d1)
    old_kid = keys.ring().signing_kid
    answer = kit.api.post("/v1/oauth/signing-keys/rotate")
    assert answer.status_code == 201, answer.text
    new_kid = answer.json()["kid"]
    assert new_kid != old_kid
    published = {k["kid"] for k in kit.http.get("/oauth2/jwks").json()["keys"]}
    assert published == {old_kid, new_kid}
    # new tokens use the new key; the old token still verifies and is active
    new_token = kit.access_token(d1)
    verifier = TokenVerifier(issuer=kit.issuer, audience="urn:iotiam:fleet",
                             jwks=keys.jwks, clock=kit.inst.clock)
    assert verifier.verify(old_token) and verifier.verify(new_token)
    assert kit.introspect(old_token)["active"] is True
    listed = {k["kid"]: k for k in kit.api.get("/v1/oauth/signing-keys").json()["items"]}
    assert listed[old_kid]["retired_at"] and listed[old_kid]["publish_until"]
    # once the old key's last token has expired, the key leaves the JWKS
    kit.inst.clock.advance(timedelta(minutes=10, seconds=31))
    keys.reload()
    published = {k["kid"] for k in kit.http.get("/oauth2/jwks").json()["keys"]}
    assert published == {new_kid}
    assert kit.introspect(old_token) == {"active": False}


def test_ok_scheduled_rotation_after_the_maximum_age(kit: OAuthKit, d1: DeviceIdentity) -> None:
    keys = kit.inst.services.oauth.keys
    first = keys.ring().signing_kid
    kit.inst.clock.advance(timedelta(days=31))
    assert keys.reload().signing_kid != first


def test_fail_rotation_needs_a_root_admin(kit: OAuthKit) -> None:
    from fleet import add_org_unit

    add_org_unit(kit.api, "acme", "tenant")
    tenant_admin = kit.inst.api(kit.inst.token("admin", "acme"))
    assert tenant_admin.post("/v1/oauth/signing-keys/rotate").status_code == 403
    operator = kit.inst.api(kit.inst.token("operator"))
    assert operator.post("/v1/oauth/signing-keys/rotate").status_code == 403
