"""What single sign-on is configured with and what a sign-in carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iotiam.errors import Unauthenticated
from iotiam.kernel import Role

#: where the provider sends the browser back (under the console, on the API port)
CALLBACK_PATH = "/console/oidc/callback"
#: the sign-in method's name in sessions and audit records
VIA = "oidc"
#: how long a person may take at the provider before the sign-in must start again
SIGN_IN_SECONDS = 600


class SignInRefused(Unauthenticated):
    """The provider's answer, or the ID token in it, is not acceptable."""

    kind = "sign-in-refused"
    title = "Sign-in refused"


@dataclass(frozen=True)
class RoleGrant:
    """What members of one provider group become in iotiam."""

    role: Role
    #: the org unit: its id (``plant-a``) or its path (``/root/plant-a/``)
    org: str


@dataclass(frozen=True)
class OidcConfig:
    """One OpenID Connect provider the console trusts (IOTIAM_OIDC_*)."""

    issuer: str
    client_id: str
    #: ordered: the first entry whose group the person is in decides their role
    role_map: tuple[tuple[str, RoleGrant], ...]
    #: None: a public client (PKCE alone); never written to the database or config.json
    client_secret: str | None = field(default=None, repr=False)
    #: shown on the sign-in button: "Sign in with <name>"
    display_name: str = "single sign-on"
    #: the ID token claim holding the person's groups (a list of strings, or one string)
    groups_claim: str = "groups"
    scopes: str = "openid email profile"
    #: PEM bundle that verifies the provider's TLS certificate (else the system's)
    ca_file: Path | None = None
    #: allowed difference between our clock and the provider's (iat, exp, nbf)
    leeway_seconds: int = 60
    #: where the provider sends the browser back; None: the API URL + CALLBACK_PATH
    redirect_uri: str | None = None

    def grant_for(self, groups: tuple[str, ...]) -> tuple[str, RoleGrant] | None:
        """The first mapping entry whose group is among ``groups``."""
        held = set(groups)
        return next(((g, grant) for g, grant in self.role_map if g in held), None)

    def grant_of(self, group: str) -> RoleGrant | None:
        """What ``group`` maps to now (None once its entry is removed)."""
        return dict(self.role_map).get(group)


@dataclass(frozen=True)
class PendingSignIn:
    """A sign-in sent to the provider and not yet back: kept in the browser, sealed."""

    state: str
    nonce: str
    #: RFC 7636 §4.1 code_verifier; only its S256 hash went to the provider
    verifier: str
    #: the console page to land on afterwards
    next: str
    started_at: float


@dataclass(frozen=True)
class Identity:
    """The person an ID token vouches for."""

    sub: str
    email: str | None
    groups: tuple[str, ...]

    @property
    def actor(self) -> str:
        """The name audit records carry: the email when the provider verified it."""
        return f"oidc:{self.email or self.sub}"

    def audit_details(self) -> dict[str, object]:
        """Who it was, for an audit record."""
        return {"via": VIA, "sub": self.sub, "email": self.email}
