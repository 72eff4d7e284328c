"""The agent's side of EST (RFC 7030) and of recovery, over httpx."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7

from iotiam.agent.paths import server_tls_context
from iotiam.cli.client import api_path
from iotiam.enrollment import proof
from iotiam.pki.external_signer import ExternalKeySigner
from iotiam.pki.keys import PrivateKey


class EnrollmentRefused(Exception):
    """The server answered an enrollment request with an error."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Pending:
    """RFC 7030 §4.2.3: the request was accepted but not decided yet; send it again later."""

    status: int
    #: seconds the server asked the client to wait (``Retry-After``), None if it named none
    retry_after: float | None
    detail: str
    #: the id of the held request, for the admin (``iotiam enrollment approve ID``)
    request: str | None = None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (delay-seconds or HTTP-date, RFC 9110 §10.2.3) in seconds."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
        return str(body.get("detail") or body.get("title") or response.text[:200])
    except ValueError:
        return response.text[:200]


def _request_id(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    request = body.get("request") if isinstance(body, dict) else None
    return str(request) if request else None


def _certificates(response: httpx.Response) -> list[x509.Certificate]:
    """The certificates of a base64 certs-only PKCS#7 answer (RFC 7030 §4.1.3, §4.2.3)."""
    if response.status_code != 200:
        raise EnrollmentRefused(response.status_code, _detail(response))
    try:
        certs = pkcs7.load_der_pkcs7_certificates(base64.b64decode(response.content))
    except ValueError as e:
        raise EnrollmentRefused(200, f"the answer is not a base64 certs-only PKCS#7: {e}"
                                ) from e
    if not certs:
        raise EnrollmentRefused(200, "the answer holds no certificate")
    return certs


def _certificate(response: httpx.Response) -> x509.Certificate:
    return _certificates(response)[0]


class EstClient:
    """Talks to ``/.well-known/est`` (and ``/v1/recovery``) of one iotiam server."""

    def __init__(self, server_url: str, server_ca: Path, label: str | None = None,
                 timeout: float = 30.0, *, shared: ssl.SSLContext | None = None) -> None:
        """``shared``: one server-auth context for every exchange that presents no
        certificate (a simulated fleet's claims); otherwise one is made per exchange,
        from ``server_ca`` as it is on the device then."""
        self._url = server_url.rstrip("/")
        self._server_ca = server_ca
        self._prefix = api_path("/.well-known/est", *([label] if label else []))
        self._timeout = timeout
        self._shared = shared

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self._url

    def _context(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        if cert is None and self._shared is not None:
            return self._shared
        return server_tls_context(self._server_ca, cert=cert, key=key)

    def _connect(self, context: ssl.SSLContext) -> httpx.Client:
        # a new TLS connection per exchange, as in the field
        return httpx.Client(base_url=self._url, verify=context, timeout=self._timeout)

    def _send_csr(self, http: httpx.Client, path: str, csr_der: bytes,
                  auth: tuple[str, str] | None = None) -> httpx.Response:
        headers = {"Content-Type": "application/pkcs10"}
        body = base64.encodebytes(csr_der)
        if auth is None:
            return http.post(f"{self._prefix}/{path}", content=body, headers=headers)
        return http.post(f"{self._prefix}/{path}", content=body, headers=headers,
                         auth=httpx.BasicAuth(*auth))

    def _post_csr(self, path: str, csr_der: bytes, context: ssl.SSLContext,
                  auth: tuple[str, str] | None = None) -> httpx.Response:
        with self._connect(context) as http:
            return self._send_csr(http, path, csr_der, auth)

    def enroll(self, device_id: str, claim: str, csr_der: bytes) -> x509.Certificate:
        """``simpleenroll`` with a one-time claim token as HTTP Basic credentials."""
        return _certificate(self._post_csr("simpleenroll", csr_der, self._context(),
                                           auth=(device_id, claim)))

    def enroll_with_chain(self, device_id: str, claim: str, csr_der: bytes
                          ) -> tuple[x509.Certificate, list[x509.Certificate]]:
        """First contact on one TLS connection: ``cacerts``, then ``simpleenroll``.

        One handshake instead of two halves the cost of a fleet enrolling at once, for
        the devices and for the server. The CA certificates come first (RFC 7030
        §4.1.1), so failing to get them never spends the one-time claim.
        """
        with self._connect(self._context()) as http:
            chain = _certificates(http.get(f"{self._prefix}/cacerts"))
            cert = _certificate(self._send_csr(http, "simpleenroll", csr_der,
                                               auth=(device_id, claim)))
        return cert, chain

    def enroll_with_idevid(
        self, idevid_cert: Path, idevid_key: Path, csr_der: bytes, now: datetime,
    ) -> tuple[x509.Certificate, list[x509.Certificate]] | Pending:
        """First contact authenticated by a manufacturer IDevID over mTLS.

        ``cacerts`` then ``simpleenroll`` on one connection, as with a claim. A held
        request answers 202 (RFC 7030 §4.2.3) and a full approval queue 429; both come
        back as ``Pending`` with the server's ``Retry-After``.
        """
        with self._connect(self._context(idevid_cert, idevid_key)) as http:
            chain = _certificates(http.get(f"{self._prefix}/cacerts"))
            response = self._send_csr(http, "simpleenroll", csr_der)
        if response.status_code in (202, 429):
            return Pending(response.status_code,
                           retry_after_seconds(response.headers.get("retry-after"), now),
                           _detail(response), _request_id(response))
        return _certificate(response), chain

    def reenroll(self, cert: Path, key: Path, csr_der: bytes) -> x509.Certificate:
        """``simplereenroll`` authenticated by the current certificate over TLS."""
        return _certificate(self._post_csr("simplereenroll", csr_der,
                                           self._context(cert, key)))

    def recover(self, cert_pem: str, old_key: PrivateKey | ExternalKeySigner, csr_der: bytes,
                now: datetime) -> tuple[x509.Certificate, str]:
        """Prove possession of the current key (after expiry, within the grace window; or
        any time for a key in a token, which no TLS handshake here can present)."""
        message = proof.recovery_message(now, csr_der)
        # a token's sign_bytes is ECDSA over SHA-256, DER: what proof.sign makes for EC
        signature = (old_key.sign_bytes(message) if isinstance(old_key, ExternalKeySigner)
                     else proof.sign(old_key, message))
        body: dict[str, Any] = {
            "certificate": cert_pem,
            "csr": base64.b64encode(csr_der).decode(),
            "signed_at": now.isoformat(),
            "signature": base64.b64encode(signature).decode(),
        }
        with self._connect(self._context()) as http:
            response = http.post("/v1/recovery", json=body)
        if response.status_code != 200:
            raise EnrollmentRefused(response.status_code, _detail(response))
        answer = response.json()
        return x509.load_pem_x509_certificate(answer["pem"].encode()), answer["chain_pem"]

    def active_issuer(self) -> tuple[str, bool]:
        """The active issuing CA's subject (RFC 4514) and whether iotiam asks agents on
        another one to renew now (``GET /ca/issuing.json``, docs/ca-rotation.md)."""
        with self._connect(self._context()) as http:
            response = http.get("/ca/issuing.json")
        if response.status_code != 200:
            raise EnrollmentRefused(response.status_code, _detail(response))
        answer = response.json()
        return str(answer["subject"]), answer["migrate"] is True

    def cacerts(self) -> list[x509.Certificate]:
        """The CA certificates (``/cacerts``)."""
        with self._connect(self._context()) as http:
            return _certificates(http.get(f"{self._prefix}/cacerts"))
