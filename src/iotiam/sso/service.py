"""Console sign-in through an OpenID Connect provider: start, complete, re-check.

The browser keeps the sign-in under way (``PendingSignIn``, sealed by the console); this
service makes it, checks the provider's answer against it (state, PKCE verifier, the ID
token with its nonce) and maps the person's groups to a role and org unit (G9). Every
sign-in and every refusal is audited with who it was, as far as it is known.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from iotiam.audit.models import AuditDraft, AuditTag, refused
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.errors import Forbidden, IamError, Unauthenticated
from iotiam.kernel import ROOT_PATH, Principal, Transactions
from iotiam.sso.id_tokens import SignatureNotVerified, verify_id_token
from iotiam.sso.models import (
    SIGN_IN_SECONDS,
    VIA,
    Identity,
    OidcConfig,
    PendingSignIn,
    RoleGrant,
    SignInRefused,
)
from iotiam.sso.ports import IdentityProvider, SsoUnitOfWork


@dataclass(frozen=True)
class SignedIn:
    """A completed sign-in: the principal, and what re-checking its session needs."""

    principal: Principal
    identity: Identity
    detail: dict[str, str]


@dataclass(frozen=True)
class ProviderAnswer:
    """The query the provider sent the browser back with (RFC 6749 §4.1.2)."""

    state: str | None
    code: str | None
    error: str | None = None
    error_description: str | None = None
    #: RFC 9207: the issuer, when the provider says it
    iss: str | None = None


class SingleSignOn:
    """Sign-in through one OpenID Connect provider."""

    def __init__(self, config: OidcConfig, provider: IdentityProvider,
                 uow: Transactions[SsoUnitOfWork], audit: Auditor, clock: Clock) -> None:
        self._config = config
        self._provider = provider
        self._uow = uow
        self._audit = audit
        self._clock = clock

    @property
    def display_name(self) -> str:
        """The provider's name on the sign-in button."""
        return self._config.display_name

    def close(self) -> None:
        """Release the provider's connections."""
        self._provider.close()

    def begin(self, next_page: str) -> tuple[str, PendingSignIn]:
        """A new sign-in: where to send the browser, and what it must bring back."""
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32), nonce=secrets.token_urlsafe(32),
            # RFC 7636 §4.1: 43-128 characters of high entropy
            verifier=secrets.token_urlsafe(48), next=next_page,
            started_at=self._clock.now().timestamp())
        try:
            return self._provider.authorization_url(pending), pending
        except SignInRefused as e:
            self._refused(None, e)
            raise

    def complete(self, pending: PendingSignIn | None, answer: ProviderAnswer) -> SignedIn:
        """Check the provider's answer against the sign-in under way; map the person."""
        identity: Identity | None = None
        try:
            self._check_answer(pending, answer)
            assert pending is not None and answer.code is not None
            token = self._provider.exchange(answer.code, pending.verifier)
            identity = self._verify(token, pending.nonce)
            mapped = self._config.grant_for(identity.groups)
            if mapped is None:
                raise Forbidden(f"{identity.email or identity.sub} is in no group that "
                                "grants a role in iotiam; ask an administrator")
            group, grant = mapped
            principal = self._principal(identity, grant)
        except (Unauthenticated, Forbidden) as e:
            self._refused(identity, e)
            raise
        self._audit.record(AuditDraft(
            tag=AuditTag.CONSOLE_SIGNED_IN, actor=principal.name,
            org_path=principal.org_path, subject="console",
            details={**identity.audit_details(), "group": group, "role": str(principal.role),
                     "org": principal.org_unit_id}))
        detail = {"sub": identity.sub, "email": identity.email or "", "group": group}
        return SignedIn(principal, identity, detail)

    def revalidate(self, principal: Principal, detail: Mapping[str, str]) -> Principal:
        """The principal of a session while the group that granted it still does."""
        grant = self._config.grant_of(detail.get("group", ""))
        if grant is None:
            raise Unauthenticated("your group no longer grants a role in iotiam")
        same_org = (grant.org == principal.org_path if grant.org.startswith("/")
                    else grant.org == principal.org_unit_id)
        if grant.role != principal.role or not same_org:
            raise Unauthenticated("your group's role in iotiam changed; sign in again")
        return principal

    def _check_answer(self, pending: PendingSignIn | None, answer: ProviderAnswer) -> None:
        if pending is None:
            raise SignInRefused("no sign-in is under way in this browser (it expired, or "
                                "cookies are blocked); start again")
        if self._clock.now().timestamp() - pending.started_at > SIGN_IN_SECONDS:
            raise SignInRefused("the sign-in took too long; start again")
        # RFC 6749 §10.12: the answer is for the request this browser made (login CSRF)
        if not answer.state or not hmac.compare_digest(answer.state.encode(),
                                                       pending.state.encode()):
            raise SignInRefused("the provider's answer is not for this browser's sign-in "
                                "(state mismatch)")
        # RFC 9207 §2.4: a mix-up with another provider shows in iss
        if answer.iss is not None and answer.iss != self._config.issuer:
            raise SignInRefused("the answer came from another issuer")
        if answer.error:
            said = f": {answer.error_description[:200]}" if answer.error_description else ""
            raise SignInRefused(f"the provider answered {answer.error[:60]}{said}")
        if not answer.code or len(answer.code) > 2048:
            raise SignInRefused("the provider's answer carries no authorization code")

    def _verify(self, token: str, nonce: str) -> Identity:
        def check(refresh: bool) -> Identity:
            return verify_id_token(
                token, self._provider.keys(refresh=refresh), issuer=self._config.issuer,
                client_id=self._config.client_id, nonce=nonce,
                now=self._clock.now().timestamp(), leeway=self._config.leeway_seconds,
                groups_claim=self._config.groups_claim)
        try:
            return check(False)
        except SignatureNotVerified:
            # signed with a key published since we fetched the set (rotation)
            return check(True)

    def _principal(self, identity: Identity, grant: RoleGrant) -> Principal:
        unit_id = grant.org.rstrip("/").rsplit("/", 1)[-1] if grant.org.startswith("/") \
            else grant.org
        with self._uow.reading() as uow:
            unit = uow.org_units.get(unit_id)
        if unit is None or (grant.org.startswith("/") and unit.path != grant.org):
            raise Forbidden(f"the role map names org unit {grant.org!r}, which does not "
                            "exist; ask an administrator")
        return Principal(name=identity.actor, role=grant.role, org_unit_id=unit.id,
                         org_path=unit.path)

    def _refused(self, identity: Identity | None, error: IamError) -> None:
        details: dict[str, object] = identity.audit_details() if identity else {"via": VIA}
        self._audit.record(refused(AuditDraft(
            tag=AuditTag.CONSOLE_SIGN_IN_REFUSED,
            actor=identity.actor if identity else "anonymous", org_path=ROOT_PATH,
            subject="console", details=details), error))
