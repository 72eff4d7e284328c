"""Storage enrollment needs."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from iotiam.enrollment.models import ClaimToken


class ClaimTokenStore(Protocol):
    """One-time claim tokens (hashed)."""

    def add(self, token: ClaimToken) -> None:
        """Store a new token."""
        ...

    def get(self, token_id: str) -> ClaimToken | None:
        """One token by id."""
        ...

    def redeem(self, token_id: str, at: datetime) -> bool:
        """Mark used if still unused and unexpired; True for exactly one caller (G8)."""
        ...

    def for_device(self, device_id: str) -> list[ClaimToken]:
        """Every token of a device."""
        ...
