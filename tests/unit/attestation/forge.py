"""Hand-made JWS for attack tests: any header, any payload, any signature bytes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def b64(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with whatever header, payload and signature bytes are given."""
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()),
                     b64(signature)])


def forge_hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 over the payload with ``secret`` (the public key as HMAC secret attack)."""
    signing_input = ".".join([b64(json.dumps(header).encode()),
                              b64(json.dumps(claims).encode())])
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def payload_of(token: str) -> dict[str, Any]:
    """The decoded payload of a compact JWS (unverified)."""
    part = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def header_of(token: str) -> dict[str, Any]:
    """The decoded header of a compact JWS (unverified)."""
    part = token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded
