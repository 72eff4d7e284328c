"""The admin token store in memory (``iotiam.admin.ports``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from iotiam.admin.models import AdminToken
from iotiam.errors import Conflict
from iotiam.testing.fakes.memory import MemoryStore, under


@dataclass
class MemoryAdminTokenStore(MemoryStore):
    """``AdminTokenStore``: tokens by id."""

    tokens: dict[str, AdminToken] = field(default_factory=dict)

    def add(self, token: AdminToken) -> None:
        """Store a token (Conflict if the id exists)."""
        if token.id in self.tokens:
            raise Conflict(f"token {token.id} exists")
        self.tokens[token.id] = token

    def get(self, token_id: str) -> AdminToken | None:
        """One token by id."""
        return self.tokens.get(token_id)

    def list_under(self, *, org_path: str) -> list[AdminToken]:
        """Tokens scoped under ``org_path``, oldest first."""
        return sorted((t for t in self.tokens.values() if under(t.org_path, org_path)),
                      key=lambda t: t.created_at)

    def revoke(self, token_id: str, at: datetime) -> None:
        """Mark a token revoked."""
        if token_id in self.tokens:
            self.tokens[token_id] = replace(self.tokens[token_id], revoked_at=at)
