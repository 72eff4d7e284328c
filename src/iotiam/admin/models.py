"""Admin principals: who is calling, with which role, over which org-unit subtree."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from iotiam.errors import Forbidden


class Role(enum.StrEnum):
    """Admin roles, each including the rights of the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the viewer < operator < admin order."""
        return _RANKS[self]


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``org_path`` is the subtree it may see (G9)."""

    name: str
    role: Role
    org_unit_id: str
    org_path: str
    token_id: str | None = None

    def sees(self, org_path: str) -> bool:
        """Whether an object living at ``org_path`` is inside this caller's subtree."""
        return org_path.startswith(self.org_path)

    def has_role(self, needed: Role) -> bool:
        """Whether the caller's role is at least ``needed``."""
        return self.role.rank >= needed.rank

    def require(self, needed: Role, doing: str) -> None:
        """Refuse (Forbidden) unless the caller's role is at least ``needed``."""
        if not self.has_role(needed):
            raise Forbidden(f"{doing} needs the {needed} role; this token is {self.role}")

    @property
    def is_global(self) -> bool:
        """Scoped to the root org unit: sees every tenant."""
        return self.org_path == ROOT_PATH


ROOT_ORG_ID = "root"
ROOT_PATH = "/root/"

SYSTEM = Principal(name="system", role=Role.ADMIN, org_unit_id=ROOT_ORG_ID, org_path=ROOT_PATH)


@dataclass(frozen=True)
class AdminToken:
    """A stored admin bearer token; the secret itself is only ever kept hashed."""

    id: str
    name: str
    role: Role
    org_unit_id: str
    org_path: str
    secret_hash: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
