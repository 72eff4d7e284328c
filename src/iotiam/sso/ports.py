"""What single sign-on needs: the provider, and the org units a role map names."""

from __future__ import annotations

from typing import Protocol

from joserfc.jwk import Key

from iotiam.audit.ports import AuditUnitOfWork
from iotiam.inventory.ports import OrgUnitStore
from iotiam.sso.models import PendingSignIn


class IdentityProvider(Protocol):
    """An OpenID Connect provider (``sso.provider.OidcProvider`` over HTTP)."""

    def authorization_url(self, pending: PendingSignIn) -> str:
        """Where the browser goes to sign in."""
        ...

    def exchange(self, code: str, verifier: str) -> str:
        """The ID token the provider gives for an authorization code and its verifier."""
        ...

    def keys(self, *, refresh: bool = False) -> list[Key]:
        """The provider's signing keys."""
        ...

    def close(self) -> None:
        """Release its connections."""
        ...


class SsoUnitOfWork(AuditUnitOfWork, Protocol):
    """The stores a sign-in reads, inside one transaction."""

    @property
    def org_units(self) -> OrgUnitStore:
        """The org units the role map names (read only)."""
        ...
