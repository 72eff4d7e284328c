"""Builders that put org units, devices and certificates in place through the admin API."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from fastapi.testclient import TestClient

from iotiam.pki.keys import PrivateKey
from iotiam.testing import make_csr


def add_org_unit(api: TestClient, unit_id: str, kind: str, parent: str = "root") -> None:
    """Create an org unit, or fail the test."""
    answer = api.post("/v1/org-units", json={"id": unit_id, "kind": kind, "parent": parent})
    assert answer.status_code == 201, answer.text


def add_device(
    api: TestClient, device_id: str, device_type: str = "sensor", org: str | None = None
) -> dict[str, Any]:
    """Register a device, or fail the test."""
    body: dict[str, Any] = {"id": device_id, "type": device_type}
    if org is not None:
        body["org"] = org
    answer = api.post("/v1/devices", json=body)
    assert answer.status_code == 201, answer.text
    device: dict[str, Any] = answer.json()
    return device


def issue(
    api: TestClient, device_id: str, key: PrivateKey | None = None, **extra: Any
) -> dict[str, Any]:
    """Issue a certificate for a registered device from a fresh CSR, or fail the test."""
    csr = make_csr(device_id, key).decode()
    answer = api.post("/v1/certificates", json={"device": device_id, "csr": csr, **extra})
    assert answer.status_code == 201, answer.text
    certificate: dict[str, Any] = answer.json()
    return certificate


def revoke(api: TestClient, serial: str, reason: str = "keyCompromise") -> dict[str, Any]:
    """Revoke a certificate, or fail the test."""
    answer = api.post(f"/v1/certificates/{serial}/revoke", json={"reason": reason})
    assert answer.status_code == 200, answer.text
    certificate: dict[str, Any] = answer.json()
    return certificate


def certificate_of(issued: dict[str, Any]) -> x509.Certificate:
    """The parsed certificate of an issuance answer."""
    return x509.load_pem_x509_certificate(issued["pem"].encode())
