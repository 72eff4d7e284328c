"""The authorization server's use cases: token endpoint, device authorization, metadata.

Token issuance runs in one write transaction: authenticate the client (recording a
used assertion jti), check the grant, put every scope to the PDP, sign, and append
the audit record, so a token is never issued without its record. A refused request
leaves nothing but its audited refusal.
"""

from __future__ import annotations

import time
from typing import Any

from iotiam.admin.models import ROOT_PATH
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.service import AuditTrail
from iotiam.clock import Clock
from iotiam.tokens.access_tokens import AccessTokenMinter
from iotiam.tokens.client_auth import ClientAuthenticator
from iotiam.tokens.clients import OAuthClients
from iotiam.tokens.device_codes import DeviceCodes
from iotiam.tokens.introspection import Caller, Introspection
from iotiam.tokens.models import (
    ASSERTION_ALGORITHMS,
    AuthenticatedClient,
    AuthMethod,
    AuthorizationPending,
    ClientCredentials,
    DeviceAuthorization,
    DeviceCode,
    GrantType,
    InvalidRequest,
    InvalidTarget,
    IssuedToken,
    OAuthClient,
    OAuthError,
    SlowDown,
    TokenConfig,
    TokenRequest,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from iotiam.tokens.revocation import TokenRevocation
from iotiam.tokens.scopes import ScopeGrant, split_scopes, subject_of
from iotiam.tokens.signing_keys import KeyRing, SigningKeys
from iotiam.unit_of_work import UnitOfWork, UnitOfWorkFactory

_GRANTS = {g.value: g for g in GrantType}
#: seconds between two purges of expired jtis and deny-list entries
PURGE_EVERY = 60.0


class AuthorizationServer:
    """OAuth2 for devices and services (RFC 6749, 7523, 8705, 7662, 7009, 8628, 8414)."""

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        clock: Clock,
        audit: AuditTrail,
        config: TokenConfig,
        *,
        keys: SigningKeys,
        authenticator: ClientAuthenticator,
        scopes: ScopeGrant,
        clients: OAuthClients,
        device_codes: DeviceCodes,
        introspection: Introspection,
        revocation: TokenRevocation,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self.config = config
        self.keys = keys
        self._auth = authenticator
        self._scopes = scopes
        self.clients = clients
        self.device_codes = device_codes
        self.introspection = introspection
        self.revocation = revocation
        self._minter = AccessTokenMinter(config)
        self._purged_at = time.monotonic()

    # -- token endpoint (RFC 6749 §4.4, RFC 8628 §3.4) ---------------------------------

    def token(self, request: TokenRequest, *, source_ip: str | None = None) -> IssuedToken:
        """Issue an access token, or raise the ``OAuthError`` to answer."""
        refused = _refusal(AuditTag.OAUTH_TOKEN_REFUSED, request.credentials, "oauth:token")
        outcome: IssuedToken | OAuthError
        with self._audit.refusals(refused):
            grant = _GRANTS.get(request.grant_type)
            if grant is None:
                raise UnsupportedGrantType(
                    f"grant_type {request.grant_type[:80]!r} is not supported; use "
                    f"{GrantType.CLIENT_CREDENTIALS} or {GrantType.DEVICE_CODE}")
            requested = split_scopes(request.scope)
            ring = self.keys.ring()
            with self._uow() as uow:
                client = self._authenticate(uow, request.credentials, grant)
                if grant is GrantType.DEVICE_CODE:
                    if request.device_code is None:
                        raise InvalidRequest("device_code is required")
                    found = self.device_codes.redeem(uow, client, request.device_code)
                    if isinstance(found, DeviceCode):
                        outcome = self._issue(uow, client, found.scopes, found.audience,
                                              subject=DeviceCodes.approver(found),
                                              grant=grant, ring=ring)
                    else:
                        outcome = found
                else:
                    scopes = self._granted(uow, client.client, requested, source_ip)
                    audience = self._audience(client.client, request.resource)
                    outcome = self._issue(uow, client, scopes, audience,
                                          subject=client.client.client_id, grant=grant,
                                          ring=ring)
            # pending/slow-down polls are the protocol working, not refusals: the poll
            # time they recorded committed above, and they are not audited one by one
            if isinstance(outcome, OAuthError) and \
                    not isinstance(outcome, AuthorizationPending | SlowDown):
                raise outcome
        if isinstance(outcome, OAuthError):
            raise outcome
        self._purge_now_and_then()
        return outcome

    def _purge_now_and_then(self) -> None:
        """Forget used jtis and deny-list entries of expired tokens, once a minute."""
        if time.monotonic() - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = time.monotonic()
        self.revocation.purge()

    def _issue(self, uow: UnitOfWork, client: AuthenticatedClient, scopes: tuple[str, ...],
               audience: str, *, subject: str, grant: GrantType, ring: KeyRing
               ) -> IssuedToken:
        issued, claims = self._minter.mint(client, subject=subject, scopes=scopes,
                                           audience=audience, now=self._clock.now(),
                                           ring=ring)
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.OAUTH_TOKEN_ISSUED, actor=f"oauth-client:{client.client.client_id}",
            org_path=client.client.org_path,
            subject=f"oauth-client:{client.client.client_id}",
            details={"jti": issued.jti, "grant": str(grant), "method": str(client.method),
                     "scope": issued.scope, "aud": audience, "sub": subject,
                     "exp": claims["exp"], "bound": issued.bound,
                     "certificate": client.certificate_serial}))
        return issued

    # -- device authorization (RFC 8628 §3.1) ------------------------------------------

    def device_authorization(self, credentials: ClientCredentials, scope: str | None,
                             resource: str | None, *, source_ip: str | None = None
                             ) -> DeviceAuthorization:
        """Start a device authorization for an authenticated client."""
        refused = _refusal(AuditTag.OAUTH_TOKEN_REFUSED, credentials, "oauth:device-code")
        with self._audit.refusals(refused):
            requested = split_scopes(scope)
            with self._uow() as uow:
                client = self._authenticate(uow, credentials, GrantType.DEVICE_CODE)
                scopes = self._granted(uow, client.client, requested, source_ip)
                audience = self._audience(client.client, resource)
                return self.device_codes.start(uow, client, scopes, audience)

    # -- introspection and revocation ------------------------------------------------

    def authenticate_caller(self, credentials: ClientCredentials) -> AuthenticatedClient:
        """An OAuth client calling introspection or revocation (refusals audited)."""
        refused = _refusal(AuditTag.OAUTH_TOKEN_ACCESS_DENIED, credentials, "oauth:token")
        with self._audit.refusals(refused), self._uow() as uow:
            return self._auth.authenticate(uow, credentials, self._clock.now())

    def introspect(self, caller: Caller, token: str) -> dict[str, Any]:
        """RFC 7662 §2.2 response."""
        return self.introspection.introspect(caller, token)

    def revoke(self, caller: Caller, token: str) -> bool:
        """RFC 7009 §2.1."""
        return self.revocation.revoke(caller, token)

    # -- metadata (RFC 8414) -----------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Authorization server metadata."""
        issuer = self.config.issuer
        methods = [str(m) for m in AuthMethod]
        return {
            "issuer": issuer,
            "token_endpoint": self.config.token_endpoint,
            "jwks_uri": f"{issuer}/oauth2/jwks",
            "introspection_endpoint": f"{issuer}/oauth2/introspect",
            "revocation_endpoint": f"{issuer}/oauth2/revoke",
            "device_authorization_endpoint": f"{issuer}/oauth2/device_authorization",
            "grant_types_supported": [str(g) for g in GrantType],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "introspection_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_signing_alg_values_supported":
                list(ASSERTION_ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "tls_client_certificate_bound_access_tokens": True,
            "scopes_supported": [],
            "service_documentation": "https://github.com/iotiam/iotiam#oauth2",
        }

    # -- shared ----------------------------------------------------------------------

    def _authenticate(self, uow: UnitOfWork, credentials: ClientCredentials,
                      grant: GrantType) -> AuthenticatedClient:
        client = self._auth.authenticate(uow, credentials, self._clock.now())
        if grant not in client.client.grant_types:
            raise UnauthorizedClient(f"client {client.client.client_id!r} may not use the "
                                     f"{grant} grant")
        return client

    def _granted(self, uow: UnitOfWork, client: OAuthClient,
                 requested: tuple[str, ...] | None, source_ip: str | None) -> tuple[str, ...]:
        device = uow.devices.get(client.device_id) if client.device_id else None
        groups = uow.oauth_clients.device_groups(device.id) if device else ()
        return self._scopes.grant(client, subject_of(client, device, groups), requested,
                                  source_ip=source_ip)

    def _audience(self, client: OAuthClient, resource: str | None) -> str:
        allowed = client.audiences or (self.config.default_audience,)
        if resource is None:
            return allowed[0]
        # RFC 8707 §2: only resources registered for the client
        if resource not in allowed:
            raise InvalidTarget(f"resource {resource[:100]!r} is not registered for client "
                                f"{client.client_id!r}")
        return resource


def _refusal(tag: AuditTag, credentials: ClientCredentials, subject: str) -> AuditDraft:
    who = credentials.client_id or "anonymous"
    return AuditDraft(tag=tag, actor=f"oauth-client:{who[:128]}", org_path=ROOT_PATH,
                      subject=subject,
                      details={"source": credentials.source} if credentials.source else {})

