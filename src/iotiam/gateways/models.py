"""Gateway value types: the link from a child to its gateway, and what a gateway receives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class GatewayLink:
    """``child_id`` is registered under ``gateway_id``: the gateway may speak for it."""

    child_id: str
    gateway_id: str
    linked_at: datetime


@dataclass(frozen=True)
class ChildKey:
    """One child as its gateway receives it: its PSK sealed to the gateway's key."""

    child_id: str
    #: the TLS-PSK identity the child presents to its gateway
    identity: str
    psk_id: str
    #: ``gateways.sealed_keys`` format, opened only with the gateway's private key
    sealed_key: bytes
    expires_at: datetime | None
    #: the child's next key (a scheduled rotation's), valid beside the current one
    next: bool = False


@dataclass(frozen=True)
class GatewayChildren:
    """What ``GET /v1/gateways/self/children`` answers a gateway."""

    gateway_id: str
    children: tuple[ChildKey, ...]


@dataclass(frozen=True)
class SightingResult:
    """How one reported child sighting was judged: accepted, or refused with a reason."""

    child_id: str
    accepted: bool
    reason: str = ""
