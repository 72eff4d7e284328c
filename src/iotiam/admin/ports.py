"""Storage the admin tokens need."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from iotiam.admin.models import AdminToken
from iotiam.audit.ports import AuditUnitOfWork
from iotiam.changes import ChangeRecorder
from iotiam.inventory.ports import OrgUnitStore


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


class OneTimeValues(Protocol):
    """Values usable once (the store of RFC 7523 assertion ids, shared)."""

    def use(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` under ``client_id``; False if it was recorded before."""
        ...


class AdminUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores admin token use cases work with, inside one transaction."""

    @property
    def admin_tokens(self) -> AdminTokenStore:
        """Admin tokens."""
        ...

    @property
    def org_units(self) -> OrgUnitStore:
        """The org units a token may be scoped to (read only)."""
        ...

    @property
    def changes(self) -> ChangeRecorder:
        """Where a revocation is published (every process drops its cached token)."""
        ...

    @property
    def oauth_assertion_jtis(self) -> OneTimeValues:
        """Where a console sign-in form's binding is spent."""
        ...
