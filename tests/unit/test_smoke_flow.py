"""The core flow through the API, on every backend: register, issue, revoke, audit."""

from __future__ import annotations

from conftest import Installation
from iotiam.testing import make_csr


def test_register_issue_revoke_ok(installation: Installation) -> None:
    api = installation.api()
    assert api.post("/v1/devices", json={"id": "dev-1", "type": "sensor"}).status_code == 201
    issued = api.post("/v1/certificates", json={"device": "dev-1",
                                                "csr": make_csr("dev-1").decode()})
    assert issued.status_code == 201, issued.text
    serial = issued.json()["serial"]
    assert api.get("/v1/devices/dev-1").json()["state"] == "active"
    revoked = api.post(f"/v1/certificates/{serial}/revoke", json={"reason": "keyCompromise"})
    assert revoked.json()["status"] == "revoked"
    again = api.post(f"/v1/certificates/{serial}/revoke", json={})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert api.get("/v1/audit/verify").json()["ok"] is True
