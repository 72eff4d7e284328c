"""The token endpoint: client credentials with private_key_jwt and tls_client_auth."""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import select

from iotiam.storage.tables.audit import audit_records
from iotiam.tokens.client_auth import x5t_s256
from tokens.oauthkit import TOKEN, DeviceIdentity, OAuthKit

DEFAULT_SCOPES = {"mqtt:connect:d1", "mqtt:publish:devices/d1/#",
                  "mqtt:subscribe:devices/d1/#", "mqtt:receive:devices/d1/#"}


def claims_of(kit: OAuthKit, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, verified with the published key."""
    ring = kit.inst.services.oauth.keys.ring()
    decoded = jwt.decode(token, ECKey.import_key(ring.jwks["keys"][-1]), algorithms=["ES256"])
    return dict(decoded.header), dict(decoded.claims)


def test_ok_private_key_jwt_with_the_certificate_key(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(assertion=kit.assertion("d1", d1.key))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 600
    assert set(body["scope"].split()) == DEFAULT_SCOPES
    header, claims = claims_of(kit, body["access_token"])
    # RFC 9068 §2.1 / §2.2
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    assert claims["iss"] == kit.issuer and claims["sub"] == "d1" and claims["client_id"] == "d1"
    assert claims["aud"] == "urn:iotiam:fleet" and claims["exp"] - claims["iat"] == 600
    assert claims["jti"] and claims["iotiam_cert"] == d1.serial
    assert "cnf" not in claims  # not obtained over mTLS: not bound


def test_ok_tls_client_auth_gives_a_bound_token(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(cert=d1, client_id="d1")
    assert answer.status_code == 200, answer.text
    _, claims = claims_of(kit, answer.json()["access_token"])
    # RFC 8705 §3.1
    assert claims["cnf"] == {"x5t#S256": x5t_s256(d1.der)}
    assert kit.introspect(answer.json()["access_token"])["cnf"] == claims["cnf"]


def test_ok_requested_scope_subset_and_registered_audience(kit: OAuthKit) -> None:
    device = kit.device("d2", audiences=["https://sensors.example"])
    answer = kit.token(assertion=kit.assertion("d2", device.key),
                       scope="mqtt:publish:devices/d2/#", resource="https://sensors.example")
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "mqtt:publish:devices/d2/#"
    _, claims = claims_of(kit, answer.json()["access_token"])
    assert claims["aud"] == "https://sensors.example"


def test_fail_unregistered_resource(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(assertion=kit.assertion("d1", d1.key), resource="https://elsewhere")
    kit.assert_oauth_error(answer, "invalid_target")


def test_fail_scope_not_registered(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(assertion=kit.assertion("d1", d1.key), scope="mqtt:publish:devices/d9/x")
    kit.assert_oauth_error(answer, "invalid_scope", detail="not registered")


def test_fail_scope_a_policy_no_longer_allows(kit: OAuthKit, d1: DeviceIdentity) -> None:
    deny = ("name: no-telemetry\nversion: 1\nstatements:\n  - effect: deny\n"
            "    actions: [mqtt:publish]\n    topics: ['devices/+/#']\n")
    policies = kit.inst.services.policies
    from iotiam.kernel import SYSTEM
    from iotiam.policy.models import AttachmentTarget, TargetKind

    policies.write(SYSTEM, deny, owner_path="/root/")
    policies.attach(SYSTEM, "no-telemetry", AttachmentTarget(TargetKind.DEVICE, "d1"))
    answer = kit.token(assertion=kit.assertion("d1", d1.key), scope="mqtt:publish:devices/d1/#")
    kit.assert_oauth_error(answer, "invalid_scope", detail="refused by policy")
    # without a scope parameter, the denied one is simply left out
    answer = kit.token(assertion=kit.assertion("d1", d1.key))
    assert "mqtt:publish:devices/d1/#" not in answer.json()["scope"].split()


def test_fail_malformed_scope(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(assertion=kit.assertion("d1", d1.key), scope="read\"all")
    kit.assert_oauth_error(answer, "invalid_scope")


def test_fail_unsupported_grant_type(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(assertion=kit.assertion("d1", d1.key), grant_type="password")
    kit.assert_oauth_error(answer, "unsupported_grant_type")


def test_fail_grant_not_allowed_for_the_client(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(assertion=kit.assertion("d1", d1.key),
                       grant_type="urn:ietf:params:oauth:grant-type:device_code",
                       device_code="x")
    kit.assert_oauth_error(answer, "unauthorized_client")


def test_fail_client_secret_is_refused(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.http.post(TOKEN, data={"grant_type": "client_credentials", "client_id": "d1",
                                        "client_secret": "hunter2"})
    kit.assert_oauth_error(answer, "invalid_client", 401, detail="secrets are not accepted")
    answer = kit.http.post(TOKEN, data={"grant_type": "client_credentials"},
                           auth=("d1", "hunter2"))
    kit.assert_oauth_error(answer, "invalid_client", 401)


def test_fail_no_client_authentication(kit: OAuthKit, d1: DeviceIdentity) -> None:
    answer = kit.token(client_id="d1")
    kit.assert_oauth_error(answer, "invalid_client", 401)
    # RFC 6749 §5.2: a challenge names the HTTP scheme the client used; it used none
    # (and Bearer cannot authenticate a client here)
    assert "WWW-Authenticate" not in answer.headers


def test_fail_certificate_of_another_device(kit: OAuthKit, d1: DeviceIdentity) -> None:
    other = kit.device("d2")
    answer = kit.token(cert=other, client_id="d1")
    kit.assert_oauth_error(answer, "invalid_client", 401, detail="does not belong")


def test_fail_repeated_parameter_and_wrong_content_type(kit: OAuthKit,
                                                        d1: DeviceIdentity) -> None:
    answer = kit.http.post(TOKEN, content=b"grant_type=client_credentials&grant_type=x",
                           headers={"content-type": "application/x-www-form-urlencoded"})
    kit.assert_oauth_error(answer, "invalid_request", detail="repeated")
    answer = kit.http.post(TOKEN, json={"grant_type": "client_credentials"})
    kit.assert_oauth_error(answer, "invalid_request")
    answer = kit.http.post(TOKEN, data={"client_id": "d1"})
    kit.assert_oauth_error(answer, "invalid_request", detail="grant_type")


def test_ok_issuance_and_refusal_are_audited(kit: OAuthKit, d1: DeviceIdentity) -> None:
    kit.access_token(d1)
    kit.token(client_id="d1")
    engine = kit.inst.services.database.engine
    with engine.connect() as conn:
        tags = [r.tag for r in conn.execute(select(audit_records.c.tag))]
    assert "device:access-token:issued" in tags and "device:access-token:refused" in tags


def test_ok_metadata_and_jwks(kit: OAuthKit) -> None:
    meta = kit.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == kit.issuer
    assert meta["token_endpoint"] == f"{kit.issuer}/oauth2/token"
    assert set(meta["token_endpoint_auth_methods_supported"]) == {"private_key_jwt",
                                                                   "tls_client_auth"}
    assert meta["tls_client_certificate_bound_access_tokens"] is True
    assert "urn:ietf:params:oauth:grant-type:device_code" in meta["grant_types_supported"]
    keys = kit.http.get("/oauth2/jwks").json()["keys"]
    assert keys and all(k["kty"] == "EC" and k["alg"] == "ES256" and "d" not in k
                        for k in keys)


def test_ok_scopes_follow_the_devices_trust_score(kit: OAuthKit) -> None:
    from iotiam.detection.models import Finding, FindingType, Severity
    from iotiam.kernel import SYSTEM
    from iotiam.policy.models import AttachmentTarget, TargetKind

    services = kit.inst.services
    d1 = kit.device("d1", client=False)
    trusted = ("name: trusted-telemetry\nversion: 1\nstatements:\n  - effect: allow\n"
               "    actions: [mqtt:publish]\n    topics: ['plant/${device.id}']\n"
               "    conditions:\n      min_trust_score: 60\n")
    services.policies.write(SYSTEM, trusted, owner_path="/root/")
    services.policies.attach(SYSTEM, "trusted-telemetry",
                             AttachmentTarget(TargetKind.DEVICE, "d1"))
    assert services.trust.recompute(["d1"])["d1"].score == 100
    # registering the scope judges it with the stored score, as issuing does
    created = kit.api.post("/v1/oauth/clients", json={
        "device": "d1", "scopes": ["mqtt:publish:plant/d1"]})
    assert created.status_code == 201, created.text
    assert kit.access_token(d1, mtls=True, scope="mqtt:publish:plant/d1")

    services.response.set_mode(SYSTEM, "sensor", "enforce")
    services.response.set_playbook(SYSTEM, {"rules": [{"finding_type": "*",
                                                       "actions": ["alert"]}]})
    for kind, severity in ((FindingType.RATE_CHANGE, Severity.HIGH),
                           (FindingType.NEW_DESTINATION, Severity.MEDIUM)):
        services.response.handle([Finding(
            type=kind, severity=severity, at=kit.now, device_id="d1", summary="seen",
            detector="test-detector", evidence={})])
    assert services.trust.recompute(["d1"])["d1"].score < 60
    answer = kit.token(cert=d1, client_id="d1", scope="mqtt:publish:plant/d1")
    kit.assert_oauth_error(answer, "invalid_scope", detail="refused by policy")


def test_ok_each_request_of_a_batch_is_judged_with_its_own_groups(kit: OAuthKit) -> None:
    from iotiam.kernel import SYSTEM
    from iotiam.policy.models import AttachmentTarget, TargetKind
    from iotiam.tokens.models import ClientCredentials, IssuedToken, TokenRequest

    services = kit.inst.services
    devices = [kit.device(d, client=False) for d in ("m1", "m2")]
    for group in ("line-a", "suspect"):
        services.inventory.create_group(SYSTEM, group_id=group, name=group, org_unit_id=None)
    alarms = "mqtt:publish:alarms/line-a"
    for name, effect, group in (("line-a-alarms", "allow", "line-a"),
                                ("suspect-silenced", "deny", "suspect")):
        services.policies.write(SYSTEM, (
            f"name: {name}\nversion: 1\nstatements:\n  - effect: {effect}\n"
            "    actions: [mqtt:publish]\n    topics: ['alarms/line-a']\n"), owner_path="/root/")
        services.policies.attach(SYSTEM, name, AttachmentTarget(TargetKind.GROUP, group))
    for device in devices:
        services.inventory.add_to_group(SYSTEM, "line-a", device.device_id)
        created = kit.api.post("/v1/oauth/clients", json={"device": device.device_id})
        assert created.status_code == 201, created.text
        assert alarms in created.json()["scope"].split()
    services.inventory.add_to_group(SYSTEM, "suspect", "m2")

    def ask(device: DeviceIdentity) -> TokenRequest:
        return TokenRequest(grant_type="client_credentials", scope=alarms,
                            credentials=ClientCredentials(client_id=device.device_id,
                                                          certificate_der=device.der))

    granted, refused = services.oauth.issue_tokens([ask(d) for d in devices])
    assert isinstance(granted, IssuedToken) and granted.scope == alarms
    assert not isinstance(refused, IssuedToken) and "refused by policy" in str(refused)
