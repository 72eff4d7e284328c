"""Expose the verified TLS client certificate to the app (ASGI TLS extension).

The installed uvicorn does not fill ``scope["extensions"]["tls"]``; this protocol
subclass does, from the connection's ``ssl_object``, following the ASGI TLS
extension's field names. Only the leaf is available from Python's ``ssl`` module
before 3.13, so ``client_cert_chain`` holds the leaf alone.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from starlette.requests import Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from iotiam.errors import InvalidInput


class TlsAwareHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` plus the ASGI TLS extension in every request scope."""

    def on_message_begin(self) -> None:
        """Build the scope as uvicorn does, then attach what the TLS layer verified."""
        super().on_message_begin()
        ssl_object: ssl.SSLObject | None = self.transport.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        der = ssl_object.getpeercert(binary_form=True)
        chain = []
        if der:
            cert = x509.load_der_x509_certificate(der)
            chain.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        scope: Any = self.scope
        scope["extensions"] = {
            "tls": {
                "client_cert_chain": chain,
                "client_cert_der": der,
                "tls_version": ssl_object.version(),
                "cipher_suite": (ssl_object.cipher() or ("",))[0],
            }
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
