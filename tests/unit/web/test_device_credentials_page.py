"""The device page's credentials of every kind (certificates, PSKs, the OAuth client)
with the device's credential status, and the actions on them: revoke a PSK or the
client, transfer the device, issue a claim; each through the API's services."""

from __future__ import annotations

from collections.abc import Callable

from api.tenants import DEVICES, Tenants

from iotiam.kernel import SYSTEM
from iotiam.testing.console import Console


def test_ok_psk_only_device_shows_its_psk_and_status(tenants: Tenants,
                                                     console: Console) -> None:
    api = tenants.installation.api()
    assert api.post("/v1/devices", json={"id": "acme-child", "type": "sensor",
                                         "org": "acme"}).status_code == 201
    assert api.post("/v1/devices/acme-child/psk", json={}).status_code == 201
    page = console.page("/console/devices/acme-child")
    assert page.status_code == 200
    assert "Pre-shared keys" in page.text and "No PSK." not in page.text
    assert '<span class="status status-active">active</span></a></dd>' in page.text
    # the trust score judges the same credentials: no "none" penalty for a PSK holder
    assert "credential status: none" not in page.text
    trust = tenants.installation.services.trust.explain(SYSTEM, "acme-child")
    assert all(f.name != "credential" for f in trust.factors), trust.factors
    listed = console.page("/console/devices", credential="active", rows="25")
    assert "acme-child" in listed.text
    assert console.post("/console/devices/acme-child/psk/revoke",
                        {"reason": "keyCompromise"}).status_code == 303
    psks = tenants.installation.services.psks.for_device(SYSTEM, "acme-child")
    assert [str(p.status) for p in psks] == ["revoked"]
    after = console.page("/console/devices/acme-child", notice="psk_revoked")
    assert "PSK revoked" in after.text
    assert '<span class="status status-revoked">revoked</span></a></dd>' in after.text
    assert "Revoke the active PSK" not in after.text


def test_ok_oauth_client_listed_and_revoked(tenants: Tenants, console: Console) -> None:
    api = tenants.installation.api()
    assert api.post("/v1/oauth/clients", json={"device": "acme-d1"}).status_code == 201
    page = console.page("/console/devices/acme-d1")
    assert "OAuth client" in page.text and "tls_client_auth" in page.text
    assert console.post("/console/devices/acme-d1/oauth-client/revoke").status_code == 303
    client = tenants.installation.services.oauth.clients.get(SYSTEM, "acme-d1")
    assert str(client.status) == "revoked"
    again = console.post("/console/devices/acme-d1/oauth-client/revoke")
    assert again.status_code == 409  # final, as the API says
    none = console.post("/console/devices/globex-d1/oauth-client/revoke")
    assert none.status_code == 409


def test_fail_org_admin_cannot_touch_another_tenants_credentials(
        tenants: Tenants, browsers: Callable[[str | None], Console]) -> None:
    api = tenants.installation.api()
    assert api.post("/v1/devices/globex-d1/psk", json={}).status_code == 201
    assert api.post("/v1/oauth/clients", json={"device": "globex-d1"}).status_code == 201
    console = browsers(tenants.token("acme", "admin"))
    console.page("/console/devices/acme-d1")
    for path in ("/console/devices/globex-d1/psk/revoke",
                 "/console/devices/globex-d1/oauth-client/revoke",
                 "/console/devices/globex-d1/transfer"):
        answer = console.post(path, {"reason": "keyCompromise", "to": "acme",
                                     "confirm": "globex-d1"})
        assert answer.status_code == 404, path
    services = tenants.installation.services
    assert str(services.oauth.clients.get(SYSTEM, "globex-d1").status) == "active"
    assert [str(p.status) for p in services.psks.for_device(SYSTEM, "globex-d1")] == [
        "active"]


def test_ok_transfer_from_the_device_page_shows_the_claim_once(
        tenants: Tenants, console: Console) -> None:
    console.page("/console/devices/acme-d1")
    refused = console.post("/console/devices/acme-d1/transfer",
                           {"to": "globex", "confirm": "acme"})
    assert refused.status_code == 400
    services = tenants.installation.services
    assert services.inventory.get_device(SYSTEM, "acme-d1").org_path == "/root/acme/"
    moved = console.post("/console/devices/acme-d1/transfer",
                         {"to": "globex", "confirm": "acme-d1"})
    assert moved.status_code == 200 and "Device transferred" in moved.text
    assert 'id="claim-token"' in moved.text
    device = services.inventory.get_device(SYSTEM, "acme-d1")
    assert device.org_path == "/root/globex/" and str(device.state) == "pending"
    assert str(services.pki.get_certificate(SYSTEM, tenants.serials["acme-d1"]).status) \
        == "revoked"
    page = console.page("/console/devices/acme-d1")
    assert "Issue a claim" in page.text  # pending again: a claim can be issued here


def test_ok_claim_from_the_device_page_of_a_pending_device(
        tenants: Tenants, console: Console) -> None:
    api = tenants.installation.api()
    assert api.post("/v1/devices", json={"id": "acme-new", "type": "sensor",
                                         "org": "acme"}).status_code == 201
    assert "Issue a claim" not in console.page(f"/console/devices/{next(iter(DEVICES))}").text
    page = console.page("/console/devices/acme-new")
    assert "Issue a claim" in page.text
    answer = console.post("/console/enrollment/claims", {"device": "acme-new",
                                                         "minutes": "60"})
    assert answer.status_code == 200 and "Claim issued" in answer.text
