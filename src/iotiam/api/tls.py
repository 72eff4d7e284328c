"""Expose the verified TLS client certificate to the app (ASGI TLS extension).

The installed uvicorn does not fill ``scope["extensions"]["tls"]``; this protocol
subclass does, from the connection's ``ssl_object``, following the ASGI TLS
extension's field names. Only the leaf is available from Python's ``ssl`` module
before 3.13, so ``client_cert_chain`` holds the leaf alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request

from iotiam.api.one_send import OneSendHttpToolsProtocol
from iotiam.changes import Published
from iotiam.errors import InvalidInput

log = logging.getLogger("iotiam.tls")


class TlsAwareHttpToolsProtocol(OneSendHttpToolsProtocol):
    """``HttpToolsProtocol`` plus the ASGI TLS extension in every request scope (and one
    send per response, ``one_send.py``)."""

    _tls_extension: dict[str, Any] | None = None

    def on_message_begin(self) -> None:
        """Build the scope as uvicorn does, then attach what the TLS layer verified."""
        super().on_message_begin()
        # one connection, one handshake: keep-alive requests share what it verified
        extension = self._tls_extension
        if extension is None:
            ssl_object: ssl.SSLObject | None = self.transport.get_extra_info("ssl_object")
            if ssl_object is None:
                return
            extension = self._tls_extension = _tls_extension(ssl_object)
        scope: Any = self.scope
        scope["extensions"] = {"tls": dict(extension)}


def _tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    der = ssl_object.getpeercert(binary_form=True)
    chain = []
    if der:
        cert = x509.load_der_x509_certificate(der)
        chain.append(cert.public_bytes(serialization.Encoding.PEM).decode())
    return {
        "client_cert_chain": chain,
        "client_cert_der": der,
        "tls_version": ssl_object.version(),
        "cipher_suite": (ssl_object.cipher() or ("",))[0],
    }


def verified_client_certificate(request: Request) -> x509.Certificate | None:
    """The client certificate the TLS layer verified for this request, if any."""
    tls = request.scope.get("extensions", {}).get("tls", {})
    der = tls.get("client_cert_der")
    return x509.load_der_x509_certificate(der) if der else None


#: nginx's ``$ssl_client_escaped_cert`` (URL-encoded PEM), the common proxy convention
CLIENT_CERT_HEADER = "x-ssl-client-cert"


def client_certificate(
    request: Request, trusted_proxies: Sequence[str]
) -> x509.Certificate | None:
    """The device's certificate: from TLS, or from the proxy header when the peer is trusted.

    The header is ignored unless the TCP peer is inside ``trusted_proxies`` — otherwise
    anyone could claim any certificate.
    """
    direct = verified_client_certificate(request)
    if direct is not None:
        return direct
    header = request.headers.get(CLIENT_CERT_HEADER)
    if not header or request.client is None or not _is_trusted(request.client.host,
                                                                 trusted_proxies):
        return None
    try:
        return x509.load_pem_x509_certificate(unquote(header).encode())
    except ValueError as e:
        raise InvalidInput("the proxy's client certificate header is not a PEM certificate"
                           ) from e


def _is_trusted(host: str, networks: Sequence[str]) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


def client_certificate_der(request: Request, trusted_proxies: Sequence[str]) -> bytes | None:
    """``client_certificate`` as DER, without parsing the one the TLS layer verified."""
    tls = request.scope.get("extensions", {}).get("tls", {})
    der: bytes | None = tls.get("client_cert_der")
    if der:
        return der
    cert = client_certificate(request, trusted_proxies)
    return cert.public_bytes(serialization.Encoding.DER) if cert is not None else None


def client_address(request: Request, trusted_proxies: Sequence[str]) -> str:
    """The client's address: the TCP peer, or what a trusted proxy says it forwarded for.

    The right-most ``X-Forwarded-For`` entry is the one the trusted proxy itself added.
    """
    peer = request.client.host if request.client is not None else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and _is_trusted(peer, trusted_proxies):
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return peer
    return peer


class ManufacturerTrust:
    """Keeps the live server ``SSLContext`` trusting every registered manufacturer CA.

    Python's ``ssl`` cannot ask for a client certificate without verifying it, so a
    device's IDevID only gets through the handshake if its manufacturer CA is in the
    context's trust store. CAs are added to the live context (new handshakes see them
    at once); partial chains are allowed so that an intermediate that signs IDevIDs
    can be registered on its own. A CA cannot be taken out of a live context: the
    application checks every certificate against the database anyway.
    """

    def __init__(self, anchors: Callable[[], list[str]]) -> None:
        self._anchors = anchors
        self._context: ssl.SSLContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def context_factory(self, config: Any, default: Callable[[], ssl.SSLContext]
                        ) -> ssl.SSLContext:
        """uvicorn's ``ssl_context_factory``: its context, plus the manufacturer CAs."""
        context = default()
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self._context = context
        with contextlib.suppress(RuntimeError):  # uvicorn loads its config in its loop
            self._loop = asyncio.get_running_loop()
        self.refresh()
        return context

    def load_certificate(self, certfile: Path, keyfile: Path, password: bytes) -> None:
        """Present a new server certificate from the next handshake on. Loaded in the
        event loop's thread, where handshakes start: between the certificate and its
        key being set, the context must not start one."""
        context, loop = self._context, self._loop
        if context is None:
            return

        def load() -> None:
            try:
                context.load_cert_chain(certfile, keyfile, password)
            except (ssl.SSLError, OSError):
                log.exception("could not load the new server certificate")
        if loop is None or loop.is_closed():
            load()
        else:
            loop.call_soon_threadsafe(load)

    def add(self, pem: str) -> None:
        """Trust one more CA for client certificates (idempotent)."""
        with self._lock:
            if self._context is None or pem in self._loaded:
                return
            try:
                self._context.load_verify_locations(cadata=pem)
            except (ssl.SSLError, ValueError):
                log.warning("could not add a manufacturer CA to the TLS trust store")
                return
            self._loaded.add(pem)

    def refresh(self) -> None:
        """Add CAs registered since (e.g. through another replica)."""
        for pem in self._anchors():
            self.add(pem)

    def anchors_changed(self, published: Published) -> None:
        """A manufacturer CA was registered (in any process): trust it from now on."""
        self.refresh()
