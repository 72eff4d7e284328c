"""Hand-made JWS for attack tests: the OAuth tests' forgers, and readers of what they made."""

from __future__ import annotations

import base64
import json
from typing import Any

from tokens.oauthkit import b64, forge, forge_hs256

__all__ = ["b64", "forge", "forge_hs256", "header_of", "payload_of"]


def _part(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def payload_of(token: str) -> dict[str, Any]:
    """The decoded payload of a compact JWS (unverified)."""
    return _part(token, 1)


def header_of(token: str) -> dict[str, Any]:
    """The decoded header of a compact JWS (unverified)."""
    return _part(token, 0)
