"""What the OAuth2 tests share: devices with clients, assertions, forged JWTs, mTLS calls."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from fleet import add_device, issue
from joserfc import jwt
from joserfc.jwk import ECKey, Key
from sqlalchemy import func, select

from conftest import Installation
from iotiam.api.app import create_api_app
from iotiam.api.oauth_token_path import OAuthTokenFastPath
from iotiam.api.tls import CLIENT_CERT_HEADER
from iotiam.pki.keys import PrivateKey
from iotiam.storage.tables.audit import audit_records
from iotiam.testing import make_key
from iotiam.tokens.models import CLIENT_ASSERTION_TYPE

TOKEN = "/oauth2/token"
INTROSPECT = "/oauth2/introspect"
REVOKE = "/oauth2/revoke"


@dataclass
class DeviceIdentity:
    """A device with an iotiam certificate and an OAuth client of the same id."""

    device_id: str
    key: PrivateKey
    certificate: x509.Certificate
    serial: str

    @property
    def der(self) -> bytes:
        """The certificate, DER."""
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        """The certificate, PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


def b64(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with whatever header, claims and signature bytes are given."""
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()),
                     b64(signature)])


def forge_hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 "signed" with ``secret`` (the classic attack: the public key as HMAC secret)."""
    signing_input = ".".join([b64(json.dumps(header).encode()),
                              b64(json.dumps(claims).encode())])
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


class OAuthKit:
    """Drives the OAuth2 endpoints of one installation in-process."""

    def __init__(self, installation: Installation) -> None:
        self.inst = installation
        self.api = installation.api()
        # client certificates reach the app through the trusted-proxy header
        services = replace(installation.services, settings=installation.settings
                           .with_overrides(trusted_proxies=("127.0.0.1/32",)))
        self.http = TestClient(create_api_app(services), raise_server_exceptions=False,
                               client=("127.0.0.1", 50000))
        installation._clients.append(self.http)

    @property
    def issuer(self) -> str:
        """The authorization server's issuer identifier."""
        return self.inst.services.oauth.config.issuer

    @property
    def now(self) -> int:
        """The installation clock, as a NumericDate."""
        return int(self.inst.clock.now().timestamp())

    def device(self, device_id: str, *, org: str | None = None, client: bool = True,
               **client_fields: Any) -> DeviceIdentity:
        """Register a device, certify a fresh key, and (by default) give it a client."""
        add_device(self.api, device_id, org=org)
        key = make_key()
        issued = issue(self.api, device_id, key)
        cert = x509.load_pem_x509_certificate(issued["pem"].encode())
        if client:
            answer = self.api.post("/v1/oauth/clients", json={"device": device_id,
                                                              **client_fields})
            assert answer.status_code == 201, answer.text
        return DeviceIdentity(device_id, key, cert, issued["serial"])

    def assertion(self, client_id: str, key: PrivateKey | Key, *,
                  header: dict[str, Any] | None = None, drop: tuple[str, ...] = (),
                  **claims: Any) -> str:
        """A client assertion; ``claims`` override the correct ones, ``drop`` removes."""
        body: dict[str, Any] = {"iss": client_id, "sub": client_id, "aud": self.issuer,
                                "exp": self.now + 60, "iat": self.now,
                                "jti": secrets.token_urlsafe(12)}
        body.update(claims)
        for name in drop:
            body.pop(name, None)
        jose_key = ECKey.import_key(key) if isinstance(key, ec.EllipticCurvePrivateKey) else key
        head = {"alg": "ES256", "typ": "client-authentication+jwt", **(header or {})}
        return jwt.encode(head, body, jose_key, algorithms=[head["alg"]])

    def token(self, *, assertion: str | None = None, cert: DeviceIdentity | None = None,
              client_id: str | None = None, grant_type: str = "client_credentials",
              **form: str) -> httpx.Response:
        """POST the token endpoint with private_key_jwt and/or a client certificate."""
        data = {"grant_type": grant_type, **form}
        if assertion is not None:
            data.update(client_assertion_type=CLIENT_ASSERTION_TYPE, client_assertion=assertion)
        if client_id is not None:
            data["client_id"] = client_id
        return self.http.post(TOKEN, data=data, headers=self.cert_header(cert))

    def access_token(self, device: DeviceIdentity, *, mtls: bool = False, **form: str) -> str:
        """A token for a device (by its certificate key, or over mTLS), or fail the test."""
        if mtls:
            answer = self.token(cert=device, client_id=device.device_id, **form)
        else:
            answer = self.token(assertion=self.assertion(device.device_id, device.key), **form)
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token

    @staticmethod
    def cert_header(device: DeviceIdentity | None) -> dict[str, str]:
        """The trusted proxy's client-certificate header."""
        return {CLIENT_CERT_HEADER: quote(device.pem)} if device is not None else {}

    def introspect(self, token: str, bearer: str | None = None) -> dict[str, Any]:
        """RFC 7662 as the root admin (or ``bearer``)."""
        authorization = f"Bearer {bearer or self.inst.admin_token}"
        answer = self.http.post(INTROSPECT, data={"token": token},
                                headers={"Authorization": authorization})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def assert_oauth_error(self, answer: httpx.Response, error: str, status: int = 400,
                           detail: str | None = None) -> None:
        """An RFC 6749 §5.2 error body (never problem+json, never a 5xx)."""
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("application/json")
        body = answer.json()
        assert body["error"] == error, body
        assert set(body) == {"error", "error_description"}
        if detail is not None:
            assert detail in body["error_description"], body


def issued_count(kit: OAuthKit) -> int:
    """How many tokens the audit log says were issued."""
    with kit.inst.services.database.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_records).where(
            audit_records.c.tag == "device:access-token:issued")).scalar_one())


def refused(kit: OAuthKit, assertion: str, detail: str | None = None) -> None:
    """The assertion gets invalid_client, no token, and an audited refusal."""
    before = issued_count(kit)
    answer = kit.token(assertion=assertion)
    kit.assert_oauth_error(answer, "invalid_client", 401, detail)
    assert issued_count(kit) == before
    with kit.inst.services.database.engine.connect() as conn:
        last = conn.execute(select(audit_records.c.tag, audit_records.c.outcome)
                            .order_by(audit_records.c.seq.desc()).limit(1)).one()
    assert last.tag == "device:access-token:refused" and last.outcome == "denied"


def token_fast_path(kit: OAuthKit) -> OAuthTokenFastPath:
    """The app's token fast path, under the layers that wrap it (request metrics):
    each keeps the app it wraps as ``app``."""
    app: object = kit.http.app
    while not isinstance(app, OAuthTokenFastPath):
        app = app.app  # type: ignore[attr-defined]  # an AttributeError: no fast path
    return app
