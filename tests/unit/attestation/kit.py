"""Drives firmware registration (admin API) and attestation (device API) in-process.

Devices reach the app through a trusted TLS-terminating proxy that forwards their
certificate in ``X-SSL-Client-Cert``, as in the OAuth tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from fleet import add_device, issue
from sqlalchemy import select

from conftest import Installation
from iotiam.api.app import create_api_app
from iotiam.api.tls import CLIENT_CERT_HEADER
from iotiam.attestation.evidence import sign_evidence
from iotiam.attestation.metadata import sign_metadata
from iotiam.attestation.models import Measurement
from iotiam.attestation.registry import FirmwareRegistry
from iotiam.attestation.service import Attestation
from iotiam.detection.models import Finding
from iotiam.pki.keys import PrivateKey
from iotiam.storage.tables.attestation import device_firmware, firmware_images, firmware_signers
from iotiam.storage.tables.inventory import devices
from iotiam.testing import make_key

BOOT = (Measurement("bootloader", "ab" * 32),)


def image_hash(version: str) -> str:
    """The SHA-256 of a made-up image of ``version``."""
    return hashlib.sha256(f"image {version}".encode()).hexdigest()


class RecordingSink:
    """A finding sink that keeps what it is given."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def report(self, findings: Sequence[Finding]) -> None:
        """Keep them."""
        self.findings.extend(findings)


@dataclass(frozen=True)
class Device:
    """A registered device with a certificate and its key."""

    id: str
    key: PrivateKey
    cert: x509.Certificate

    @property
    def header(self) -> dict[str, str]:
        """The proxy's client-certificate header for this device."""
        pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()
        return {CLIENT_CERT_HEADER: quote(pem)}


class FirmwareKit:
    """One installation with a recording finding sink and a device-side client."""

    def __init__(self, installation: Installation) -> None:
        self.inst = installation
        self.sink = RecordingSink()
        services = installation.services
        services.settings = services.settings.with_overrides(trusted_proxies=("127.0.0.1/32",))
        services.firmware = FirmwareRegistry(services.database, services.clock,
                                             services.audit, self.sink)
        services.attestation = Attestation(
            services.database, services.clock, services.audit,
            services.pki,
            self.sink)
        self.api = installation.api()
        self.http = TestClient(create_api_app(replace(services)),
                               raise_server_exceptions=False, client=("127.0.0.1", 50000))
        installation._clients.append(self.http)

    # -- admin side ----------------------------------------------------------------------

    def signer(self, name: str = "vendor", key: PrivateKey | None = None,
               org: str | None = None, token: str | None = None) -> PrivateKey:
        """Register a signer (a fresh P-256 key unless given), or fail the test."""
        key = key or make_key()
        answer = self.add_signer(name, key, org, token)
        assert answer.status_code == 201, answer.text
        return key

    def add_signer(self, name: str, key: PrivateKey, org: str | None = None,
                   token: str | None = None) -> httpx.Response:
        """POST /v1/firmware/signers."""
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        body: dict[str, Any] = {"name": name, "public_key_pem": pem.decode()}
        if org:
            body["org"] = org
        return self.inst.api(token).post("/v1/firmware/signers", json=body)

    def revoke(self, name: str, org: str | None = None, token: str | None = None
               ) -> httpx.Response:
        """POST /v1/firmware/signers/{name}/revoke (a body only when ``org`` is given)."""
        path = f"/v1/firmware/signers/{name}/revoke"
        if org:
            return self.inst.api(token).post(path, json={"org": org})
        return self.inst.api(token).post(path)

    def add_image(self, metadata: Any, org: str | None = None, token: str | None = None
                  ) -> httpx.Response:
        """POST /v1/firmware/images."""
        body: dict[str, Any] = {"metadata": metadata}
        if org:
            body["org"] = org
        return self.inst.api(token).post("/v1/firmware/images", json=body)

    def image(self, key: PrivateKey, version: str, device_type: str = "sensor",
              org: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Register a signed image of ``version``, or fail the test."""
        metadata = sign_metadata(key, device_type=device_type, version=version,
                                 sha256=image_hash(version))
        answer = self.add_image(metadata, org, token)
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def rule(self, min_version: str, device_type: str = "sensor", org: str | None = None,
             token: str | None = None) -> httpx.Response:
        """PUT /v1/firmware/rules/{type}."""
        body: dict[str, Any] = {"min_version": min_version}
        if org:
            body["org"] = org
        return self.inst.api(token).put(f"/v1/firmware/rules/{device_type}", json=body)

    # -- device side ---------------------------------------------------------------------

    def device(self, device_id: str, org: str | None = None, kind: str = "ec-p256",
               device_type: str = "sensor") -> Device:
        """Register a device and certify a fresh key of ``kind``."""
        add_device(self.api, device_id, device_type, org=org)
        key = make_key(kind)
        issued = issue(self.api, device_id, key)
        return Device(device_id, key, x509.load_pem_x509_certificate(issued["pem"].encode()))

    def challenge(self, device: Device | None) -> httpx.Response:
        """POST /v1/attestation/challenge as ``device`` (None: no certificate)."""
        return self.http.post("/v1/attestation/challenge",
                              headers=device.header if device else {})

    def nonce(self, device: Device) -> str:
        """A fresh nonce, or fail the test."""
        answer = self.challenge(device)
        assert answer.status_code == 200, answer.text
        nonce: str = answer.json()["nonce"]
        return nonce

    def evidence(self, device: Device, version: str, *, nonce: str | None = None,
                 fw_hash: str | None = None, key: PrivateKey | None = None,
                 as_device: Device | None = None, token: Any = None) -> httpx.Response:
        """POST evidence for ``device`` (a fresh nonce unless given)."""
        if token is None:
            token = sign_evidence(
                key or device.key, nonce=nonce or self.nonce(device), device_id=device.id,
                firmware_version=version, firmware_hash=fw_hash or image_hash(version),
                measurements=BOOT, now=self.inst.clock.now())
        sender = as_device or device
        return self.http.post("/v1/attestation/evidence", json={"evidence": token},
                              headers=sender.header)

    def attest(self, device: Device, version: str, **kwargs: Any) -> dict[str, Any]:
        """Attest, or fail the test; the verdict."""
        answer = self.evidence(device, version, **kwargs)
        assert answer.status_code == 200, answer.text
        verdict: dict[str, Any] = answer.json()
        return verdict


def firmware(kit: FirmwareKit, device_id: str) -> dict[str, Any]:
    """GET /v1/devices/{id}/firmware, or fail the test."""
    answer = kit.api.get(f"/v1/devices/{device_id}/firmware")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def updated_at(kit: FirmwareKit, device_id: str) -> str:
    """The device's ``updated_at`` as the API shows it."""
    value: str = kit.api.get(f"/v1/devices/{device_id}").json()["updated_at"]
    return value


def stored_state(inst: Installation) -> dict[str, list[tuple[Any, ...]]]:
    """Signers, images, device firmware statuses and devices' ``updated_at``, as stored."""
    queries = {
        "signers": select(firmware_signers).order_by(firmware_signers.c.id),
        "images": select(firmware_images).order_by(firmware_images.c.id),
        "statuses": select(device_firmware).order_by(
            device_firmware.c.device_id),
        "devices": select(devices.c.id, devices.c.updated_at).order_by(
            devices.c.id),
    }
    with inst.services.database.engine.connect() as conn:
        return {name: [tuple(row) for row in conn.execute(query)]
                for name, query in queries.items()}
