"""OAuth2 clients: register one per device or service, list, revoke (G9 scoped)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import CredentialRevoked
from iotiam.clock import Clock
from iotiam.errors import Conflict, IdNotAvailable, InvalidInput, NotFound
from iotiam.inventory.models import (
    Device,
    DeviceState,
    check_identifier,
    is_reserved_id,
)
from iotiam.inventory.ports import visible_device
from iotiam.kernel import Principal, Role, Transactions
from iotiam.policy.actions import ACTION_KINDS
from iotiam.policy.models import Effect, Subject
from iotiam.policy.ports import PolicyDecisions
from iotiam.tokens import jws
from iotiam.tokens.models import (
    AuthMethod,
    ClientDraft,
    ClientKind,
    ClientStatus,
    GrantType,
    OAuthClient,
)
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.scopes import ScopeGrant, check_registered, subject_of

MAX_AUDIENCES = 10
DEVICE_AUTH_METHODS = (AuthMethod.TLS_CLIENT_AUTH, AuthMethod.PRIVATE_KEY_JWT)


class OAuthClients:
    """Register, list and revoke OAuth2 clients."""

    def __init__(self, uow: Transactions[TokensUnitOfWork], clock: Clock, audit: Auditor,
                 decisions: PolicyDecisions, scopes: ScopeGrant) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._decisions = decisions
        self._scopes = scopes

    def create(self, actor: Principal, draft: ClientDraft) -> OAuthClient:
        """Register a client for a device (id defaults to the device id) or a service."""
        refused = AuditDraft(tag=AuditTag.OAUTH_CLIENT_REFUSED, actor=actor.name,
                             org_path=actor.org_path,
                             subject=f"oauth-client:{draft.client_id or draft.device_id}"[:300])
        with self._audit.refusals(refused), self._uow() as uow:
            actor.require(Role.OPERATOR, "registering OAuth clients")
            client = self._build(uow, actor, draft)
            if uow.oauth_clients.get(client.client_id) is not None:
                raise IdNotAvailable("OAuth client id", client.client_id)
            if client.device_id is not None:
                existing = uow.oauth_clients.for_device(client.device_id)
                if existing is not None:
                    raise Conflict(f"device {client.device_id!r} already has the OAuth client "
                                   f"{existing.client_id!r}")
            uow.oauth_clients.add(client)
            self._audit.append(uow, replace(
                refused, tag=AuditTag.OAUTH_CLIENT_CREATED, org_path=client.org_path,
                subject=f"oauth-client:{client.client_id}",
                details={"kind": str(client.kind), "device": client.device_id,
                         "auth_methods": [str(m) for m in client.auth_methods],
                         "scopes": list(client.scopes)}))
            return client

    def _build(self, uow: TokensUnitOfWork, actor: Principal, draft: ClientDraft) -> OAuthClient:
        device: Device | None = None
        if draft.device_id is not None:
            device = uow.devices.get(draft.device_id)
            if device is None or not actor.sees(device.org_path):
                raise NotFound(f"device {draft.device_id!r} not found")
            if device.state is DeviceState.DECOMMISSIONED:
                raise Conflict(f"device {device.id!r} is decommissioned")
            if draft.org_unit_id is not None and draft.org_unit_id != device.org_unit_id:
                raise InvalidInput("a device client lives in its device's org unit")
            org_unit_id, org_path = device.org_unit_id, device.org_path
            client_id = draft.client_id or device.id
            kind = ClientKind.DEVICE
            methods = draft.auth_methods or DEVICE_AUTH_METHODS
        else:
            if not draft.client_id:
                raise InvalidInput("a service client needs a client id (or give a device)")
            unit = uow.org_units.get(draft.org_unit_id or actor.org_unit_id)
            if unit is None or not actor.sees(unit.path):
                raise NotFound(f"org unit {draft.org_unit_id!r} not found")
            org_unit_id, org_path = unit.id, unit.path
            client_id = draft.client_id
            kind = ClientKind.SERVICE
            methods = draft.auth_methods or (AuthMethod.PRIVATE_KEY_JWT,)
            if AuthMethod.TLS_CLIENT_AUTH in methods:
                raise InvalidInput("tls_client_auth needs a device client (the device's "
                                   "iotiam certificate); services use private_key_jwt")
            if draft.jwks is None:
                raise InvalidInput("a service client needs a jwks with its public key(s)")
        audiences = self._checked_fields(client_id, draft)
        client = OAuthClient(
            client_id=client_id, kind=kind, device_id=device.id if device else None,
            org_unit_id=org_unit_id, org_path=org_path,
            auth_methods=tuple(dict.fromkeys(methods)),
            grant_types=tuple(dict.fromkeys(draft.grant_types)),
            scopes=(), audiences=audiences, jwks=draft.jwks, status=ClientStatus.ACTIVE,
            created_at=self._clock.now(), created_by=actor.name,
        )
        groups, posture = uow.oauth_clients.device_standing(device.id) if device else ([], None)
        subject = subject_of(client, device, groups, posture)
        if device is not None and device.state is DeviceState.PENDING:
            # registered ahead of its enrollment: the scopes it may ask for are judged as
            # for the live device (every token is decided again, and a pending device
            # gets none: inventory/lifecycle.py)
            subject = replace(subject, state=DeviceState.ACTIVE)
        return replace(client, scopes=self._allowed_scopes(subject, client_id, draft.scopes))

    @staticmethod
    def _checked_fields(client_id: str, draft: ClientDraft) -> tuple[str, ...]:
        """Refuse a reserved or malformed client id, a bad JWK set, bad audiences or no
        grant type; returns the audiences without duplicates."""
        check_identifier(client_id, "client id")
        if is_reserved_id(client_id):
            raise InvalidInput(f"client id {client_id!r} is reserved")
        if draft.jwks is not None:
            jws.public_key_set(draft.jwks)
        audiences = tuple(dict.fromkeys(draft.audiences))
        if len(audiences) > MAX_AUDIENCES or any(
                not a or len(a) > 512 or not a.isprintable() or " " in a for a in audiences):
            raise InvalidInput(f"at most {MAX_AUDIENCES} audiences of 1-512 printable "
                               "characters without spaces")
        if not draft.grant_types:
            raise InvalidInput("a client needs at least one grant type")
        return audiences

    def _allowed_scopes(self, subject: Subject, client_id: str, requested: tuple[str, ...]
                        ) -> tuple[str, ...]:
        """The scopes asked for (or, none asked, derived from the policies), each one
        allowed by policy for ``subject`` now; refuses an empty set."""
        scopes = check_registered(requested) if requested else self._derived(subject)
        for scope in scopes:
            decision = self._scopes.decide(subject, scope)
            if not decision.allowed:
                raise InvalidInput(f"scope {scope!r} is not allowed by policy for "
                                   f"{client_id!r}: {getattr(decision, 'reason', '')}")
        if not scopes:
            raise InvalidInput(f"policy allows {client_id!r} nothing a scope could name; "
                               "attach a policy first or pass scopes")
        return scopes

    def _derived(self, subject: Subject) -> tuple[str, ...]:
        """Scopes for what the policies allow now: each allow statement's resources."""
        effective = self._decisions.effective_policy(subject)
        found: list[str] = []
        for statement in effective.statements:
            if statement.effect is not Effect.ALLOW or statement.fully_denied or \
                    statement.resource in (None, "*") or statement.note:
                continue
            for action in statement.actions:
                if action in ACTION_KINDS:
                    found.append(f"{action}:{statement.resource}")
        allowed = [s for s in dict.fromkeys(found) if self._scopes.decide(subject, s).allowed]
        return tuple(allowed[:50])

    def list(self, actor: Principal) -> list[OAuthClient]:
        """Clients in the caller's subtree."""
        with self._uow.reading() as uow:
            return uow.oauth_clients.list_under(org_path=actor.org_path)

    def get(self, actor: Principal, client_id: str) -> OAuthClient:
        """One client the caller may see (404 for another tenant's, G9)."""
        with self._uow.reading() as uow:
            return _visible(uow, actor, client_id)

    def for_device(self, actor: Principal, device_id: str) -> OAuthClient | None:
        """The client of a device the caller sees, if it has one (404 outside, G9)."""
        with self._uow.reading() as uow:
            device = visible_device(uow.devices, actor, device_id)
            return uow.oauth_clients.for_device(device.id)

    def revoke(self, actor: Principal, client_id: str) -> OAuthClient:
        """Revoke a client (final): its tokens turn inactive at once (G3)."""
        refused = AuditDraft(tag=AuditTag.OAUTH_CLIENT_REFUSED, actor=actor.name,
                             org_path=actor.org_path, subject=f"oauth-client:{client_id}"[:300])
        with self._audit.refusals(refused), self._uow() as uow:
            actor.require(Role.OPERATOR, "revoking OAuth clients")
            client = _visible(uow, actor, client_id)
            if not client.active:
                raise Conflict(f"OAuth client {client_id!r} was already revoked; "
                               "revocation is final")
            now = self._clock.now()
            uow.oauth_clients.revoke(client_id, now)
            uow.changes.record(CredentialRevoked("oauth-client", client_id, client.device_id))
            self._audit.append(uow, replace(refused, tag=AuditTag.OAUTH_CLIENT_REVOKED,
                                            org_path=client.org_path))
            return replace(client, status=ClientStatus.REVOKED, revoked_at=now)


def _visible(uow: TokensUnitOfWork, actor: Principal, client_id: str) -> OAuthClient:
    client = uow.oauth_clients.get(client_id) if len(client_id) <= 128 else None
    if client is None or not actor.sees(client.org_path):
        raise NotFound(f"OAuth client {client_id!r} not found")
    return client


def render_client(client: OAuthClient) -> dict[str, Any]:
    """RFC 7591-style client metadata, for the API and CLI."""
    return {
        "client_id": client.client_id, "kind": str(client.kind), "device": client.device_id,
        "org_unit": client.org_unit_id, "status": str(client.status),
        "token_endpoint_auth_methods": [str(m) for m in client.auth_methods],
        "grant_types": [str(g) for g in client.grant_types],
        "scope": " ".join(client.scopes), "audiences": list(client.audiences),
        "jwks": client.jwks, "created_at": client.created_at.isoformat(),
        "created_by": client.created_by,
        "revoked_at": client.revoked_at.isoformat() if client.revoked_at else None,
    }


__all__ = ["GrantType", "OAuthClients", "render_client"]
