"""RFC 7662 introspection and RFC 7009 revocation; G3 (at once) and G9 (tenants)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from fleet import add_org_unit, issue
from joserfc.jwk import ECKey
from sqlalchemy import select

from iotiam.detection.models import Finding, FindingType, Severity
from iotiam.inventory.models import DeviceState
from iotiam.kernel import SYSTEM
from iotiam.storage.tables.audit import audit_records
from iotiam.testing import make_key
from iotiam.tokens.verify import TokenRejected, TokenVerifier
from tokens.oauthkit import INTROSPECT, REVOKE, DeviceIdentity, OAuthKit


def last_audit(kit: OAuthKit) -> tuple[str, str, str]:
    """(tag, outcome, actor) of the newest audit record."""
    with kit.inst.services.database.engine.connect() as conn:
        row = conn.execute(select(audit_records.c.tag, audit_records.c.outcome,
                                  audit_records.c.actor)
                           .order_by(audit_records.c.seq.desc()).limit(1)).one()
    return row.tag, row.outcome, row.actor


def verifier_asking(kit: OAuthKit) -> TokenVerifier:
    """A resource server whose revocation check is the issuer's introspection."""
    def still_active(token: str, _verified: object) -> bool:
        return kit.introspect(token)["active"] is True

    return TokenVerifier(issuer=kit.issuer, audience="urn:iotiam:fleet",
                         jwks=kit.inst.services.oauth.keys.jwks, clock=kit.inst.clock,
                         revocation_check=still_active)


@pytest.mark.parametrize("how", ["certificate-revoked", "quarantined", "suspended",
                                 "decommissioned", "client-revoked", "rfc7009"])
def test_ok_g3_inactive_at_once(kit: OAuthKit, d1: DeviceIdentity, how: str) -> None:
    token = kit.access_token(d1, mtls=True)
    verifier = verifier_asking(kit)
    assert verifier.verify(token, certificate=d1.certificate)
    api = kit.api
    if how == "certificate-revoked":
        answer = api.post(f"/v1/certificates/{d1.serial}/revoke", json={"reason": "keyCompromise"})
    elif how == "client-revoked":
        answer = api.post("/v1/oauth/clients/d1/revoke")
    elif how == "rfc7009":
        answer = kit.http.post(REVOKE, data={"token": token},
                               headers={"Authorization": f"Bearer {kit.inst.admin_token}"})
    else:
        answer = api.post("/v1/devices/d1/state", json={"state": how})
    assert answer.status_code == 200, answer.text
    # G3: the moment the call returned
    assert kit.introspect(token) == {"active": False}
    with pytest.raises(TokenRejected, match="revoked"):
        verifier.verify(token, certificate=d1.certificate)


def test_ok_revoking_an_old_certificate_spares_tokens_of_the_new_one(
        kit: OAuthKit, d1: DeviceIdentity) -> None:
    old_token = kit.access_token(d1)
    new_key = make_key()
    issue(kit.api, "d1", new_key)  # rotation: both certificates live for a while
    answer = kit.token(assertion=kit.assertion("d1", new_key))
    assert answer.status_code == 200, answer.text
    new_token = answer.json()["access_token"]
    assert kit.api.post(f"/v1/certificates/{d1.serial}/revoke",
                        json={"reason": "superseded"}).status_code == 200
    assert kit.introspect(old_token) == {"active": False}
    assert kit.introspect(new_token)["active"] is True
    # and the old key no longer authenticates
    answer = kit.token(assertion=kit.assertion("d1", d1.key))
    kit.assert_oauth_error(answer, "invalid_client", 401)


def test_ok_client_revokes_its_own_token(kit: OAuthKit, d1: DeviceIdentity) -> None:
    token = kit.access_token(d1)
    answer = kit.http.post(REVOKE, data={"token": token, "token_type_hint": "access_token",
                                         "client_id": "d1"}, headers=kit.cert_header(d1))
    assert answer.status_code == 200 and answer.content == b""
    assert kit.introspect(token) == {"active": False}
    assert last_audit(kit)[0] == "device:access-token:revoked"


def test_ok_unknown_or_invalid_token_revocation_is_200(kit: OAuthKit, d1: DeviceIdentity
                                                       ) -> None:
    for token in ("nonsense", "a.b.c", kit.assertion("d1", d1.key)):
        answer = kit.http.post(REVOKE, data={"token": token},
                               headers={"Authorization": f"Bearer {kit.inst.admin_token}"})
        assert answer.status_code == 200


def test_fail_client_cannot_revoke_anothers_token(kit: OAuthKit, d1: DeviceIdentity) -> None:
    other = kit.device("d2")
    token = kit.access_token(d1)
    answer = kit.http.post(REVOKE, data={"token": token, "client_id": "d2"},
                           headers=kit.cert_header(other))
    assert answer.status_code == 200  # §2.2: nothing said
    assert kit.introspect(token)["active"] is True  # nothing done
    assert last_audit(kit)[:2] == ("admin:access-token:denied", "denied")


def test_fail_introspection_without_authentication(kit: OAuthKit, d1: DeviceIdentity) -> None:
    token = kit.access_token(d1)
    answer = kit.http.post(INTROSPECT, data={"token": token})
    kit.assert_oauth_error(answer, "invalid_client", 401)
    assert "active" not in answer.json() and token not in answer.text
    assert last_audit(kit)[:2] == ("admin:access:denied", "denied")
    answer = kit.http.post(INTROSPECT, data={"token": token},
                           headers={"Authorization": "Bearer iotiam_0000000000000000_" + "x" * 40})
    kit.assert_oauth_error(answer, "invalid_client", 401)
    answer = kit.http.post(REVOKE, data={"token": token})
    kit.assert_oauth_error(answer, "invalid_client", 401)
    assert kit.introspect(token)["active"] is True


def test_fail_introspection_across_tenants(kit: OAuthKit) -> None:
    for tenant in ("acme", "globex"):
        add_org_unit(kit.api, tenant, "tenant")
    acme = kit.device("acme-d1", org="acme")
    globex = kit.device("globex-d1", org="globex")
    acme_viewer = kit.inst.token("viewer", "acme")
    acme_token, globex_token = kit.access_token(acme), kit.access_token(globex)
    assert kit.introspect(acme_token, acme_viewer)["active"] is True
    # nothing about the other tenant's token: not even that it exists
    assert kit.introspect(globex_token, acme_viewer) == {"active": False}
    tag, outcome, actor = last_audit(kit)
    assert (tag, outcome) == ("admin:access-token:denied", "denied")
    assert actor.startswith("token:viewer")
    # an acme viewer may not revoke (operator+), and never another tenant's token
    for bearer, token in ((acme_viewer, acme_token), (kit.inst.token("operator", "acme"),
                                                      globex_token)):
        answer = kit.http.post(REVOKE, data={"token": token},
                               headers={"Authorization": f"Bearer {bearer}"})
        assert answer.status_code == 200
    assert kit.introspect(acme_token)["active"] is True
    assert kit.introspect(globex_token)["active"] is True


def test_ok_device_client_introspects_only_its_own_tokens(kit: OAuthKit, d1: DeviceIdentity
                                                          ) -> None:
    other = kit.device("d2")
    mine, theirs = kit.access_token(d1), kit.access_token(other)

    def ask(token: str) -> dict[str, object]:
        answer = kit.http.post(INTROSPECT, data={"token": token, "client_id": "d1"},
                               headers=kit.cert_header(d1))
        assert answer.status_code == 200, answer.text
        body: dict[str, object] = answer.json()
        return body

    assert ask(mine)["active"] is True
    assert ask(theirs) == {"active": False}


def test_ok_service_client_introspects_its_subtree(kit: OAuthKit, d1: DeviceIdentity) -> None:
    from joserfc.jwk import ECKey

    key = make_key()
    jwks = {"keys": [ECKey.import_key(key).as_dict(private=False, kid="rs-1")]}
    answer = kit.api.post("/v1/oauth/clients", json={
        "client_id": "readings-api", "jwks": jwks,
        "scopes": ["mqtt:subscribe:devices/readings-api/#"]})
    assert answer.status_code == 201, answer.text
    token = kit.access_token(d1)
    result = kit.http.post(INTROSPECT, data={
        "token": token, "client_assertion_type":
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": kit.assertion("readings-api", key, header={"kid": "rs-1"})})
    assert result.status_code == 200, result.text
    assert result.json()["active"] is True and result.json()["client_id"] == "d1"


def test_ok_expired_token_is_inactive(kit: OAuthKit, d1: DeviceIdentity) -> None:
    from datetime import timedelta

    token = kit.access_token(d1)
    kit.inst.clock.advance(timedelta(minutes=10, seconds=1))
    assert kit.introspect(token) == {"active": False}



def quarantine_by_detection(kit: OAuthKit, device_id: str) -> None:
    """A playbook in enforce mode quarantines the device, as ``iotiam detect`` would."""
    response = kit.inst.services.response
    response.set_mode(SYSTEM, "sensor", "enforce")
    response.handle([Finding(type=FindingType.RATE_CHANGE, severity=Severity.HIGH,
                             at=kit.inst.clock.now().timestamp(), device_id=device_id,
                             summary="rate change", detector="test-detector",
                             evidence={"observed": 60, "baseline": 1})])


@pytest.mark.parametrize("how", ["quarantine-lifted", "suspension-ended",
                                 "device-credentials-revoked"])
def test_fail_a_token_from_before_a_distrust_stays_dead(kit: OAuthKit, how: str) -> None:
    # signs with a registered key, so no certificate of its own ties its tokens' fate
    jwk_key = make_key()
    public = ECKey.import_key(jwk_key).as_dict(private=False, kid="k1")
    d1 = kit.device("d1", jwks={"keys": [public]})
    bound = kit.access_token(d1, mtls=True)
    answer = kit.token(assertion=kit.assertion("d1", ECKey.import_key(jwk_key),
                                               header={"kid": "k1"}))
    assert answer.status_code == 200, answer.text
    by_jwk = answer.json()["access_token"]
    verifier = verifier_asking(kit)
    api = kit.api
    presented = d1.certificate
    kit.inst.clock.advance(timedelta(seconds=1))
    if how == "quarantine-lifted":
        quarantine_by_detection(kit, "d1")
        kit.inst.clock.advance(timedelta(seconds=5))
        answer = api.post("/v1/devices/d1/quarantine/lift")
    elif how == "suspension-ended":
        assert api.post("/v1/devices/d1/state", json={"state": "suspended"}).status_code == 200
        kit.inst.clock.advance(timedelta(seconds=5))
        answer = api.post("/v1/devices/d1/state", json={"state": "active"})
    else:
        answer = api.post("/v1/devices/d1/revoke-certificates",
                          json={"reason": "keyCompromise"})
        kit.inst.clock.advance(timedelta(seconds=5))
        d1 = certify_again(kit, d1)  # enrolled again with a new key
    assert answer.status_code == 200, answer.text
    assert kit.inst.services.inventory.get_device(SYSTEM, "d1").state is DeviceState.ACTIVE
    for token in (bound, by_jwk):
        assert kit.introspect(token) == {"active": False}
        with pytest.raises(TokenRejected, match="revoked"):
            verifier.verify(token, certificate=presented)
    # the device is trusted again: what it gets now is active
    fresh = kit.access_token(d1, mtls=True)
    assert kit.introspect(fresh)["active"] is True
    assert verifier.verify(fresh, certificate=d1.certificate).client_id == "d1"


def certify_again(kit: OAuthKit, device: DeviceIdentity) -> DeviceIdentity:
    """The device with a new key and certificate."""
    key = make_key()
    issued = issue(kit.api, device.device_id, key)
    cert = x509.load_pem_x509_certificate(issued["pem"].encode())
    return DeviceIdentity(device.device_id, key, cert, issued["serial"])
