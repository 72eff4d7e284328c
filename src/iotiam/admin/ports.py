"""Storage the admin tokens need."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from iotiam.admin.models import AdminToken


class AdminTokenStore(Protocol):
    """Admin bearer tokens, stored hashed."""

    def add(self, token: AdminToken) -> None:
        """Store a token."""
        ...

    def get(self, token_id: str) -> AdminToken | None:
        """One token by id."""
        ...

    def list_under(self, *, org_path: str) -> list[AdminToken]:
        """Tokens scoped under ``org_path``."""
        ...

    def revoke(self, token_id: str, at: datetime) -> None:
        """Mark a token revoked."""
        ...
