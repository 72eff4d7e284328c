"""SQL implementation of the admin token store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from iotiam.admin.models import AdminToken
from iotiam.kernel import Role
from iotiam.storage.raw import RawSql, RawStatement, row_object, select_sql
from iotiam.storage.rows import under_path
from iotiam.storage.tables import admin as t

_TOKEN_COLUMNS = ("id", "name", "role", "org_unit_id", "org_path", "secret_hash", "created_at",
                  "created_by", "expires_at", "revoked_at")
_TOKEN_TIMES = frozenset({"created_at", "expires_at", "revoked_at"})
# every API request authenticates: hand-written (see storage/raw.py)
_GET_TOKEN = RawStatement(select_sql("admin_tokens", _TOKEN_COLUMNS, "id = :id"))


class SqlAdminTokenStore:
    """Admin tokens (hashes only) in SQL."""

    def __init__(self, conn: Connection) -> None:
        self._c = conn

    def add(self, token: AdminToken) -> None:
        """Store a token."""
        self._c.execute(
            insert(t.admin_tokens).values(
                id=token.id,
                name=token.name,
                role=str(token.role),
                org_unit_id=token.org_unit_id,
                org_path=token.org_path,
                secret_hash=token.secret_hash,
                created_at=token.created_at,
                created_by=token.created_by,
                expires_at=token.expires_at,
                revoked_at=token.revoked_at,
                is_bootstrap=False,
            )
        )

    def get(self, token_id: str) -> AdminToken | None:
        """One token."""
        row = RawSql(self._c).first(_GET_TOKEN, {"id": token_id})
        return _token(row_object(_TOKEN_COLUMNS, row, _TOKEN_TIMES)) if row else None

    def list_under(self, *, org_path: str) -> list[AdminToken]:
        """Tokens scoped inside ``org_path``."""
        rows = self._c.execute(
            select(t.admin_tokens)
            .where(under_path(t.admin_tokens.c.org_path, org_path))
            .order_by(t.admin_tokens.c.created_at)
        )
        return [_token(r) for r in rows]

    def revoke(self, token_id: str, at: datetime) -> None:
        """Mark a token revoked."""
        self._c.execute(
            update(t.admin_tokens).where(t.admin_tokens.c.id == token_id).values(revoked_at=at)
        )


def _token(row: Any) -> AdminToken:
    return AdminToken(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        org_unit_id=row.org_unit_id,
        org_path=row.org_path,
        secret_hash=row.secret_hash,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
