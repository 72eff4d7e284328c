"""Helpers of the zero-touch tests: a manufacturer, IDevIDs, EST behind a trusted proxy."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from fastapi.testclient import TestClient

from conftest import Installation
from iotiam.api.app import create_api_app
from iotiam.pki.keys import PrivateKey
from iotiam.testing import Issuer, make_csr, make_idevid, make_key, make_manufacturer_ca

EST = "/.well-known/est"
PKCS10 = {"Content-Type": "application/pkcs10"}
PROXY = "127.0.0.1"


def manufacturer_ca(inst: Installation, name: str = "Acme Devices IDevID CA") -> Issuer:
    """A manufacturer CA valid on the installation's clock."""
    return make_manufacturer_ca(name, now=inst.clock.now())


def idevid(inst: Installation, ca: Issuer, serial: str | None, **extra: Any) -> Issuer:
    """An IDevID valid from a day before the installation's clock."""
    extra.setdefault("not_before", inst.clock.now() - timedelta(days=1))
    return make_idevid(ca, serial, **extra)


def register_manufacturer(
    inst: Installation, ca: Issuer, name: str = "acme-devices", *, org: str | None = None,
    device_type: str | None = None, token: str | None = None,
) -> dict[str, Any]:
    """Register a manufacturer through the API, or fail the test."""
    body: dict[str, Any] = {"name": name, "certificate": ca.pem}
    if org:
        body["org"] = org
    if device_type:
        body["type"] = device_type
    answer = inst.api(token).post("/v1/manufacturers", json=body)
    assert answer.status_code == 201, answer.text
    registered: dict[str, Any] = answer.json()
    return registered


def import_manifest(inst: Installation, name: str, rows: list[dict[str, Any]],
                    token: str | None = None) -> httpx.Response:
    """POST a manifest chunk (rows numbered from 1)."""
    return inst.api(token).post(f"/v1/manufacturers/{name}/manifest",
                                json={"rows": [{"row": i + 1, "data": r}
                                               for i, r in enumerate(rows)]})


def device_client(inst: Installation) -> TestClient:
    """An EST client reaching the API through a trusted TLS-terminating proxy."""
    inst.services.settings = replace(inst.services.settings, trusted_proxies=(f"{PROXY}/32",))
    client = TestClient(create_api_app(inst.services), raise_server_exceptions=False,
                        client=(PROXY, 40000))
    inst._clients.append(client)
    return client


def csr_for(name: str | None, key: PrivateKey | None = None) -> bytes:
    """A DER CSR with a fresh (or the given) key."""
    return make_csr(name, key or make_key(), pem=False)


def simpleenroll(client: TestClient, csr_der: bytes, identity: Issuer | None = None,
                 forwarded_for: str | None = None, label: str | None = None) -> httpx.Response:
    """EST simpleenroll with no claim, the IDevID in the proxy's header."""
    headers = dict(PKCS10)
    if identity is not None:
        headers["X-SSL-Client-Cert"] = quote(identity.pem)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    path = f"{EST}/{label}/simpleenroll" if label else f"{EST}/simpleenroll"
    return client.post(path, content=base64.b64encode(csr_der), headers=headers)


def issued(answer: httpx.Response) -> x509.Certificate:
    """The certificate of a 200 EST answer."""
    assert answer.status_code == 200, answer.text
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(answer.content))[0]


def common_name(cert: x509.Certificate) -> str:
    """The certificate's CN."""
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def records(inst: Installation, tag: str, token: str | None = None) -> list[dict[str, Any]]:
    """Audit records with ``tag`` the token may see."""
    items = inst.api(token).get("/v1/audit/records", params={"limit": 5000}).json()["items"]
    return [r for r in items if r["tag"] == tag]
