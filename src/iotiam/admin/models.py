"""Admin tokens: the stored bearer credentials of admins (the caller is `kernel.Principal`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from iotiam.kernel import Role


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
