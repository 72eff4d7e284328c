"""SQL implementation of the enrollment stores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from iotiam.enrollment.models import ClaimToken
from iotiam.storage import schema as t


class SqlClaimTokenStore:
    """Claim tokens in SQL; redemption is one conditional UPDATE, so it wins exactly once."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, token: ClaimToken) -> None:
        """Store a new token."""
        self._c.execute(
            insert(t.claim_tokens).values(
                id=token.id,
                device_id=token.device_id,
                org_path=token.org_path,
                secret_hash=token.secret_hash,
                created_at=token.created_at,
                expires_at=token.expires_at,
                created_by=token.created_by,
                used_at=token.used_at,
            )
        )

    def get(self, token_id: str) -> ClaimToken | None:
        """One token by id."""
        row = self._c.execute(select(t.claim_tokens).where(t.claim_tokens.c.id == token_id)).first()
        return _claim(row) if row else None

    def redeem(self, token_id: str, at: datetime) -> bool:
        """Mark used if unused and unexpired (G8: the row update is the lock)."""
        c = t.claim_tokens.c
        result = self._c.execute(
            update(t.claim_tokens)
            .where(c.id == token_id, c.used_at.is_(None), c.expires_at > at)
            .values(used_at=at)
        )
        return result.rowcount == 1

    def for_device(self, device_id: str) -> list[ClaimToken]:
        """Every token of a device, oldest first."""
        rows = self._c.execute(
            select(t.claim_tokens)
            .where(t.claim_tokens.c.device_id == device_id)
            .order_by(t.claim_tokens.c.created_at)
        )
        return [_claim(r) for r in rows]


def _claim(row: Any) -> ClaimToken:
    return ClaimToken(
        id=row.id,
        device_id=row.device_id,
        org_path=row.org_path,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        expires_at=row.expires_at,
        created_by=row.created_by,
        used_at=row.used_at,
    )
