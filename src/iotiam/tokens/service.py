"""The authorization server's use cases: token endpoint, device authorization, metadata.

Token issuance runs in one write transaction: authenticate the client (recording a
used assertion jti), check the grant, put every scope to the PDP, sign, and append
the audit record, so a token is never issued without its record. A refused request
leaves nothing but its audited refusal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from iotiam.audit.models import AuditDraft, AuditTag, refused
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.errors import IamError, contained
from iotiam.kernel import ROOT_PATH, Transactions
from iotiam.tokens.access_tokens import AccessTokenMinter
from iotiam.tokens.client_auth import ClientAuthenticator
from iotiam.tokens.clients import OAuthClients
from iotiam.tokens.device_codes import DeviceCodes
from iotiam.tokens.introspection import Caller, Introspection
from iotiam.tokens.models import (
    ASSERTION_ALGORITHMS,
    Audience,
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
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.reads import ClientReads
from iotiam.tokens.revocation import TokenRevocation
from iotiam.tokens.scopes import ScopeGrant, scope_forms, split_scopes, subject_of
from iotiam.tokens.signing_keys import KeyRing, SigningKeys

log = logging.getLogger("iotiam.tokens")

_GRANTS = {g.value: g for g in GrantType}
#: seconds between two purges of expired jtis and deny-list entries
PURGE_EVERY = 60.0


class AuthorizationServer:
    """OAuth2 for devices and services (RFC 6749, 7523, 8705, 7662, 7009, 8628, 8414)."""

    def __init__(
        self,
        uow: Transactions[TokensUnitOfWork],
        clock: Clock,
        audit: Auditor,
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
        if source_ip is not None and source_ip != request.credentials.source:
            request = replace(request, credentials=replace(request.credentials,
                                                           source=source_ip))
        (outcome,) = self.issue_tokens([request])
        if isinstance(outcome, IamError):
            raise outcome
        return outcome

    def issue_tokens(self, requests: Sequence[TokenRequest]) -> list[IssuedToken | IamError]:
        """Answer token requests together: a token, or the error to answer, for each.

        Client-credentials requests share one write transaction (group commit): each is
        checked with reads only, then its assertion jti is consumed and its token signed,
        and every token's and refusal's audit record is appended at once, so a token
        never leaves without its committed record and a refused request writes nothing
        but its refusal. Device-code polls record their poll time: they go one by one.
        The source address of each request is its ``credentials.source``.
        """
        outcomes: list[IssuedToken | IamError | None] = [None] * len(requests)
        batch: list[int] = []
        for i, request in enumerate(requests):
            if request.grant_type == GrantType.CLIENT_CREDENTIALS:
                batch.append(i)
            else:
                try:
                    outcomes[i] = self._one_by_one(request)
                except Exception as e:  # a bug in one poll fails that poll alone (G12)
                    outcomes[i] = contained(e, "a token request")
        if batch:
            self._client_credentials([(i, requests[i]) for i in batch], outcomes)
        self._purge_now_and_then()
        answered = [o for o in outcomes if o is not None]
        assert len(answered) == len(requests)
        return answered

    def _client_credentials(self, batch: Sequence[tuple[int, TokenRequest]],
                            outcomes: list[IssuedToken | IamError | None]) -> None:
        drafts: list[AuditDraft] = []
        try:
            ring = self.keys.ring()
            with self._uow() as uow:
                reads = self._auth.read_ahead(uow, [request.credentials for _, request in batch])
                for i, request in batch:
                    try:
                        issued, draft = self._client_credentials_one(uow, request, ring, reads)
                    except Exception as e:  # this request's own failure, even a bug (G12)
                        error = contained(e, "a token request")
                        outcomes[i] = error
                        drafts.append(refused(_token_refusal(request), error))
                        continue
                    outcomes[i] = issued
                    drafts.append(draft)
                self._audit.append_many(uow, drafts)
        except IamError as e:
            # the transaction failed as a whole: nothing of it was kept, no token leaves
            for i, _ in batch:
                outcomes[i] = e
            self._record_refusals([refused(_token_refusal(r), e) for _, r in batch])

    def _record_refusals(self, drafts: list[AuditDraft]) -> None:
        try:
            with self._uow() as uow:
                self._audit.append_many(uow, drafts)
        except IamError:
            log.exception("%d token refusals could not be audited", len(drafts))

    def _client_credentials_one(self, uow: TokensUnitOfWork, request: TokenRequest, ring: KeyRing,
                                reads: ClientReads) -> tuple[IssuedToken, AuditDraft]:
        """RFC 6749 §4.4: every check reads; the jti insert is the one write (the lock)."""
        credentials = request.credentials
        grant = GrantType.CLIENT_CREDENTIALS
        requested = split_scopes(request.scope)
        client = self._auth.check(uow, credentials, self._clock.now(), reads)
        self._require_grant(client, grant)
        scopes = self._granted(reads, client, requested, credentials.source or None)
        audience = self._audience(client.client, request.resources)
        self._auth.consume(uow, client)
        return self._mint(client, scopes, audience, subject=client.client.client_id,
                          grant=grant, ring=ring)

    def _one_by_one(self, request: TokenRequest) -> IssuedToken | IamError:
        """A device-code poll (or an unsupported grant) in a transaction of its own."""
        outcome: IssuedToken | OAuthError
        try:
            with self._audit.refusals(_token_refusal(request)):
                grant = _GRANTS.get(request.grant_type)
                if grant is None:
                    raise UnsupportedGrantType(
                        f"grant_type {request.grant_type[:80]!r} is not supported; use "
                        f"{GrantType.CLIENT_CREDENTIALS} or {GrantType.DEVICE_CODE}")
                if request.device_code is None:
                    raise InvalidRequest("device_code is required")
                ring = self.keys.ring()
                with self._uow() as uow:
                    client = self._authenticate(uow, request.credentials, grant)
                    found = self.device_codes.redeem(uow, client, request.device_code)
                    if isinstance(found, DeviceCode):
                        outcome, draft = self._mint(
                            client, found.scopes, found.audience,
                            subject=DeviceCodes.approver(found), grant=grant, ring=ring)
                        self._audit.append(uow, draft)
                    else:
                        outcome = found
                # pending/slow-down polls are the protocol working, not refusals: the poll
                # time they recorded committed above, and they are not audited one by one
                if isinstance(outcome, OAuthError) and \
                        not isinstance(outcome, AuthorizationPending | SlowDown):
                    raise outcome
        except IamError as e:
            return e
        return outcome

    def _purge_now_and_then(self) -> None:
        """Forget used jtis and deny-list entries of expired tokens, once a minute."""
        if time.monotonic() - self._purged_at < PURGE_EVERY:
            return
        self._purged_at = time.monotonic()
        try:
            self.revocation.purge()
        except Exception:  # housekeeping: the batch's tokens are committed and answered
            log.exception("purging expired jtis and deny-list entries failed; retried later")

    def _mint(self, client: AuthenticatedClient, scopes: tuple[str, ...], audience: Audience, *,
              subject: str, grant: GrantType, ring: KeyRing) -> tuple[IssuedToken, AuditDraft]:
        """A signed token and the audit record that must commit before it is handed out."""
        issued, claims = self._minter.mint(client, subject=subject, scopes=scopes,
                                           audience=audience, now=self._clock.now(),
                                           ring=ring)
        who = f"oauth-client:{client.client.client_id}"
        return issued, AuditDraft(
            tag=AuditTag.OAUTH_TOKEN_ISSUED, actor=who, org_path=client.client.org_path,
            subject=who,
            details={"jti": issued.jti, "grant": str(grant), "method": str(client.method),
                     "scope": issued.scope, "aud": claims["aud"], "sub": subject,
                     "exp": claims["exp"], "bound": issued.bound,
                     "certificate": client.certificate_serial})

    # -- device authorization (RFC 8628 §3.1) ------------------------------------------

    def device_authorization(self, credentials: ClientCredentials, scope: str | None,
                             resources: tuple[str, ...] = (), *,
                             source_ip: str | None = None) -> DeviceAuthorization:
        """Start a device authorization for an authenticated client."""
        refused = _refusal(AuditTag.OAUTH_TOKEN_REFUSED, credentials, "oauth:device-code")
        with self._audit.refusals(refused):
            requested = split_scopes(scope)
            if len(set(resources)) > 1:
                # RFC 8707 §2 lets a server refuse a combination it cannot issue for
                raise InvalidTarget("a device authorization is for one resource: send "
                                    "one resource parameter")
            with self._uow() as uow:
                client = self._authenticate(uow, credentials, GrantType.DEVICE_CODE)
                scopes = self._granted(ClientReads(uow), client, requested, source_ip)
                audience = self._audience(client.client, resources[:1])
                assert isinstance(audience, str)
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
            # required by RFC 8414 §2; no authorization endpoint, so nothing comes from
            # one: "none" (OAuth 2.0 Multiple Response Type Encoding Practices §4)
            "response_types_supported": ["none"],
            "token_endpoint_auth_methods_supported": methods,
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "introspection_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_signing_alg_values_supported":
                list(ASSERTION_ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "tls_client_certificate_bound_access_tokens": True,
            "scopes_supported": scope_forms(),
            "service_documentation": "https://github.com/iotiam/iotiam#oauth2",
        }

    # -- shared ----------------------------------------------------------------------

    def _authenticate(self, uow: TokensUnitOfWork, credentials: ClientCredentials,
                      grant: GrantType) -> AuthenticatedClient:
        client = self._auth.authenticate(uow, credentials, self._clock.now())
        self._require_grant(client, grant)
        return client

    @staticmethod
    def _require_grant(client: AuthenticatedClient, grant: GrantType) -> None:
        if grant not in client.client.grant_types:
            raise UnauthorizedClient(f"client {client.client.client_id!r} may not use the "
                                     f"{grant} grant")

    def _granted(self, reads: ClientReads, authenticated: AuthenticatedClient,
                 requested: tuple[str, ...] | None, source_ip: str | None) -> tuple[str, ...]:
        client = authenticated.client
        device = authenticated.device
        if device is None and client.device_id:
            device = reads.device(client.device_id)
        groups, posture = reads.standing(device.id) if device else ([], None)
        return self._scopes.grant(client, subject_of(client, device, groups, posture), requested,
                                  source_ip=source_ip)

    def _audience(self, client: OAuthClient, resources: tuple[str, ...]) -> Audience:
        """RFC 8707 §2: the resources asked for (each registered for the client) as the
        token's audience, a list for several; the first registered one for none."""
        allowed = client.audiences or (self.config.default_audience,)
        if not resources:
            return allowed[0]
        for resource in resources:
            if resource not in allowed:
                raise InvalidTarget(f"resource {resource[:100]!r} is not registered for "
                                    f"client {client.client_id!r}")
        unique = tuple(dict.fromkeys(resources))
        return unique[0] if len(unique) == 1 else unique


def _token_refusal(request: TokenRequest) -> AuditDraft:
    return _refusal(AuditTag.OAUTH_TOKEN_REFUSED, request.credentials, "oauth:token")


def _refusal(tag: AuditTag, credentials: ClientCredentials, subject: str) -> AuditDraft:
    who = credentials.client_id or "anonymous"
    return AuditDraft(tag=tag, actor=f"oauth-client:{who[:128]}", org_path=ROOT_PATH,
                      subject=subject,
                      details={"source": credentials.source} if credentials.source else {})

