"""RFC 8628 device authorization grant: a code, an admin's approval, one token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fleet import add_org_unit

from tokens.oauthkit import DeviceIdentity, OAuthKit

DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def screenless(kit: OAuthKit) -> DeviceIdentity:
    """A device whose client may use the device code grant."""
    return kit.device("panel", grant_types=["device_code", "client_credentials"])


def start(kit: OAuthKit, device: DeviceIdentity, **form: str) -> dict[str, Any]:
    """RFC 8628 §3.1 over mTLS."""
    answer = kit.http.post("/oauth2/device_authorization",
                           data={"client_id": device.device_id, **form},
                           headers=kit.cert_header(device))
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def poll(kit: OAuthKit, device: DeviceIdentity, code: str) -> Any:
    """RFC 8628 §3.4."""
    return kit.token(cert=device, client_id=device.device_id, grant_type=DEVICE_CODE,
                     device_code=code)


def test_ok_approved_code_gives_one_token(kit: OAuthKit, screenless: DeviceIdentity) -> None:
    started = start(kit, screenless, scope="mqtt:publish:devices/panel/#")
    assert set(started) == {"device_code", "user_code", "verification_uri",
                            "verification_uri_complete", "expires_in", "interval"}
    assert started["interval"] == 5 and started["expires_in"] == 600
    kit.assert_oauth_error(poll(kit, screenless, started["device_code"]),
                           "authorization_pending")
    pending = kit.api.get("/v1/oauth/device-codes").json()["items"]
    assert [p["user_code"] for p in pending] == [started["user_code"]]
    approved = kit.api.post(f"/v1/oauth/device-codes/{started['user_code'].lower()}/approve")
    assert approved.status_code == 200, approved.text
    kit.inst.clock.advance(timedelta(seconds=6))
    answer = poll(kit, screenless, started["device_code"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "mqtt:publish:devices/panel/#"
    info = kit.introspect(answer.json()["access_token"])
    assert info["active"] is True and info["client_id"] == "panel"
    assert info["sub"] == "token:bootstrap-admin"  # RFC 9068: the person who consented
    # used once (G8-like)
    kit.inst.clock.advance(timedelta(seconds=6))
    kit.assert_oauth_error(poll(kit, screenless, started["device_code"]), "invalid_grant")


def test_fail_polling_too_fast_slows_down(kit: OAuthKit, screenless: DeviceIdentity) -> None:
    started = start(kit, screenless)
    kit.assert_oauth_error(poll(kit, screenless, started["device_code"]),
                           "authorization_pending")
    kit.assert_oauth_error(poll(kit, screenless, started["device_code"]), "slow_down",
                           detail="10 s")


def test_fail_denied_expired_and_foreign_codes(kit: OAuthKit, screenless: DeviceIdentity
                                               ) -> None:
    denied = start(kit, screenless)
    assert kit.api.post(f"/v1/oauth/device-codes/{denied['user_code']}/deny").status_code == 200
    kit.assert_oauth_error(poll(kit, screenless, denied["device_code"]), "access_denied")
    expired = start(kit, screenless)
    other = kit.device("other-panel", grant_types=["device_code"])
    kit.assert_oauth_error(poll(kit, other, expired["device_code"]), "invalid_grant")
    kit.inst.clock.advance(timedelta(minutes=11))
    kit.assert_oauth_error(poll(kit, screenless, expired["device_code"]), "expired_token")
    answer = kit.api.post(f"/v1/oauth/device-codes/{expired['user_code']}/approve")
    assert answer.status_code == 409


def test_fail_approval_across_tenants_and_bad_codes(kit: OAuthKit) -> None:
    for tenant in ("acme", "globex"):
        add_org_unit(kit.api, tenant, "tenant")
    device = kit.device("acme-panel", org="acme", grant_types=["device_code"])
    started = start(kit, device)
    globex = kit.inst.api(kit.inst.token("operator", "globex"))
    assert globex.get("/v1/oauth/device-codes").json()["items"] == []
    assert globex.post(f"/v1/oauth/device-codes/{started['user_code']}/approve"
                       ).status_code == 404
    viewer = kit.inst.api(kit.inst.token("viewer", "acme"))
    assert viewer.post(f"/v1/oauth/device-codes/{started['user_code']}/approve"
                       ).status_code == 403
    for bad in ("AEIO-UAEI", "short", "BCDF-GHJK-LMNP"):
        answer = kit.api.post(f"/v1/oauth/device-codes/{bad}/approve")
        assert answer.status_code in (400, 404), answer.text


def test_fail_device_authorization_needs_the_grant_and_auth(kit: OAuthKit, d1: DeviceIdentity
                                                            ) -> None:
    answer = kit.http.post("/oauth2/device_authorization", data={"client_id": "d1"},
                           headers=kit.cert_header(d1))
    kit.assert_oauth_error(answer, "unauthorized_client")
    answer = kit.http.post("/oauth2/device_authorization", data={"client_id": "d1"})
    kit.assert_oauth_error(answer, "invalid_client", 401)
