"""G3 at the decision point: a device with no valid credential is denied everywhere a
decision is made, at once; each lifecycle state does only what docs/lifecycle.md says."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from fleet import add_device, revoke

from api.tenants import Tenants
from api.test_policies_api import decide, hook, result
from iotiam.inventory.models import DeviceState


def _hook_verdict_settles(emqx: TestClient, username: str, wanted: str) -> str:
    """The hook's answer once its subject cache has had one check interval (0.5 s)."""
    deadline = time.monotonic() + 1.5
    while True:
        verdict = result(hook(emqx, username=username, topic=f"devices/{username}/telemetry"))
        if verdict == wanted or time.monotonic() > deadline:
            return verdict
        time.sleep(0.05)


def test_revoked_only_certificate_fail_denied_by_pdp_and_hook(tenants: Tenants) -> None:
    installation = tenants.installation
    api = installation.api()
    emqx = installation.api(tenants.token("root", "viewer"))
    assert decide(api, "acme-d1", "devices/acme-d1/telemetry")["decision"] == "permit"
    assert result(hook(emqx, username="acme-d1", topic="devices/acme-d1/telemetry")) == "allow"
    revoke(api, tenants.serials["acme-d1"], "keyCompromise")
    # the decision point reads the device afresh: denied as soon as revoke returned
    answer = decide(api, "acme-d1", "devices/acme-d1/telemetry")
    assert answer["decision"] == "deny"
    assert "no valid credential" in answer["reason"]
    # the hook's cached subject is dropped at its next change check
    assert _hook_verdict_settles(emqx, "acme-d1", "deny") == "deny"
    # a device whose rights did not change keeps them
    assert decide(api, "acme-berlin-d1", "devices/acme-berlin-d1/x")["decision"] == "permit"
    assert result(hook(emqx, username="acme-berlin-d1",
                       topic="devices/acme-berlin-d1/x")) == "allow"


def test_psk_only_device_ok_while_its_psk_lives(tenants: Tenants) -> None:
    installation = tenants.installation
    api = installation.api()
    add_device(api, "psk-only", org="acme")
    assert api.post("/v1/devices/psk-only/psk", json={}).status_code == 201
    # pending: registered, not yet live (docs/lifecycle.md)
    pending = decide(api, "psk-only", "devices/psk-only/t")
    assert pending["decision"] == "deny" and "pending" in pending["reason"]
    assert api.post("/v1/devices/psk-only/state", json={"state": "active"}).status_code == 200
    assert decide(api, "psk-only", "devices/psk-only/t")["decision"] == "permit"
    assert api.post("/v1/devices/psk-only/psk/revoke",
                    json={"reason": "keyCompromise"}).status_code == 200
    revoked = decide(api, "psk-only", "devices/psk-only/t")
    assert revoked["decision"] == "deny" and "no valid credential" in revoked["reason"]


def test_expired_only_certificate_fail_denied(tenants: Tenants) -> None:
    installation = tenants.installation
    api = installation.api()
    assert decide(api, "globex-d1", "devices/globex-d1/t")["decision"] == "permit"
    with installation.services.database.reading() as uow:
        ends = max(c.not_after for c in uow.certificates.for_device("globex-d1"))
    installation.clock.advance(ends - installation.clock.now() + timedelta(seconds=1))
    answer = decide(api, "globex-d1", "devices/globex-d1/t")
    assert answer["decision"] == "deny" and "no valid credential" in answer["reason"]


@pytest.mark.parametrize("state", list(DeviceState))
def test_decision_by_state(tenants: Tenants, state: DeviceState) -> None:
    """The PDP's answer for a credentialed device in each lifecycle state."""
    api = tenants.installation.api()
    if state is not DeviceState.ACTIVE:
        if state is DeviceState.PENDING:
            add_device(api, "fresh-d1", org="acme")
            device = "fresh-d1"
            api.post("/v1/devices/fresh-d1/psk", json={})
        else:
            device = "acme-d1"
            assert api.post("/v1/devices/acme-d1/state",
                            json={"state": str(state)}).status_code == 200
    else:
        device = "acme-d1"
    answer = decide(api, device, f"devices/{device}/telemetry")
    # quarantined devices get only the quarantine policy's allows (not their telemetry)
    expected = "permit" if state is DeviceState.ACTIVE else "deny"
    assert answer["decision"] == expected, answer


def test_client_registration_ok_for_pending_device(tenants: Tenants) -> None:
    """Pre-provisioning: a pending device's OAuth client gets the scopes it will have once
    live (every token is decided again, and a pending device gets none)."""
    api = tenants.installation.api()
    add_device(api, "pre-1", org="acme")
    answer = api.post("/v1/oauth/clients", json={"device": "pre-1"})
    assert answer.status_code == 201, answer.text
    assert "mqtt:publish:devices/pre-1/#" in answer.json()["scope"].split()
