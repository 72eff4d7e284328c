"""Decommissioning takes every kind of credential away and keeps the device's history."""

from __future__ import annotations

import base64

import pytest
from expect import audit_records
from fleet import add_device, issue

from conftest import Installation
from iotiam.testing import make_csr, make_key


@pytest.fixture
def installation(memory_installation: Installation) -> Installation:
    """Decommissioning is a use case: it runs on the memory stores."""
    return memory_installation


def test_decommission_revokes_certificates_and_psk_keeps_history(
        installation: Installation) -> None:
    api = installation.api()
    add_device(api, "dev-1")
    serials = [issue(api, "dev-1", make_key())["serial"] for _ in range(2)]
    assert api.post("/v1/devices/dev-1/psk", json={}).status_code == 201
    claim = api.post("/v1/devices/dev-1/claims", json={}).json()["token"]
    answer = api.post("/v1/devices/dev-1/state", json={"state": "decommissioned"})
    assert answer.status_code == 200, answer.text
    credentials = api.get("/v1/devices/dev-1/credentials").json()["items"]
    assert sorted((c["kind"], c["status"]) for c in credentials) == [
        ("certificate", "revoked"), ("certificate", "revoked"), ("psk", "revoked")]
    assert all(c["revoked_at"] for c in credentials)
    for serial in serials:
        assert api.get(f"/v1/certificates/{serial}").json()["revocation_reason"] == \
            "cessationOfOperation"
    # the device and its records stay: history survives decommissioning
    assert api.get("/v1/devices/dev-1").json()["state"] == "decommissioned"
    assert "dev-1:" not in api.get("/v1/psk-file").text
    changed = [r for r in audit_records(api) if r["tag"] == "admin:device:state-changed"][-1]
    assert changed["details"]["credentials_revoked"] == 3
    # a claim issued before is worthless now
    enrolled = api.post("/.well-known/est/simpleenroll",
                        content=base64.b64encode(make_csr("dev-1", pem=False)),
                        headers={"Content-Type": "application/pkcs10"},
                        auth=("dev-1", claim))
    assert enrolled.status_code == 409
