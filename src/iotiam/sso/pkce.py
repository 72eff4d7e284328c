"""The pure parts of the code flow: RFC 7636 PKCE and which provider URLs are acceptable."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from urllib.parse import urlsplit

from iotiam.errors import InvalidInput


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: S256, the base64url SHA-256 of the verifier."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_provider_url(url: str, what: str) -> None:
    """HTTPS, or plain HTTP to this machine only (a provider in a test or a sidecar)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise InvalidInput(f"the OIDC {what} must be an https:// URL (http:// only to "
                       f"127.0.0.1, ::1 or localhost): {url[:200]!r}")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
