"""RFC 7662 introspection of access tokens.

Introspection decides "active" from the live database every time (G3): the token's
signature and expiry, the deny list, its client (not revoked), its device (active:
not quarantined, suspended or decommissioned, and not distrusted since the token was
issued: ``Device.tokens_not_before``, so a lifted quarantine does not revive a token)
and the certificate it was obtained with (not revoked). Every negative answer is the
bare ``{"active": false}`` (§2.2), whatever the reason, including a token of another
tenant (G9).

Who may ask: an admin token (any role) for tokens of clients inside its subtree; an
OAuth client authenticated like at the token endpoint — a service client for tokens
of clients in its org subtree, a device client for its own tokens only.
"""

from __future__ import annotations

from typing import Any

from iotiam.audit.models import AuditDraft, AuditTag, Outcome
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.errors import InvalidInput
from iotiam.inventory.lifecycle import Transport, may
from iotiam.kernel import Principal, Transactions
from iotiam.pki.models import CertificateStatus, parse_serial
from iotiam.tokens.access_tokens import CERTIFICATE_CLAIM, SignedAccessToken, read_signed
from iotiam.tokens.models import (
    INACTIVE,
    AuthenticatedClient,
    ClientKind,
    OAuthClient,
    TokenConfig,
)
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.signing_keys import SigningKeys

#: who is asking: an admin or an authenticated OAuth client
Caller = Principal | AuthenticatedClient


def caller_name(caller: Caller) -> str:
    """How a caller appears in the audit log."""
    if isinstance(caller, Principal):
        return caller.name
    return f"oauth-client:{caller.client.client_id}"


def may_see(caller: Caller, client: OAuthClient) -> bool:
    """G9: whether ``caller`` may learn anything about ``client``'s tokens."""
    if isinstance(caller, Principal):
        return caller.sees(client.org_path)
    own = caller.client
    if own.kind is ClientKind.SERVICE:
        return client.org_path.startswith(own.org_path)
    return own.client_id == client.client_id


def audit_denied(audit: Auditor, caller: Caller, reason: str) -> None:
    """Record a refused look at, or action on, a token (G9: the caller learns nothing)."""
    org_path = caller.org_path if isinstance(caller, Principal) else caller.client.org_path
    audit.record(AuditDraft(
        tag=AuditTag.OAUTH_TOKEN_ACCESS_DENIED, actor=caller_name(caller),
        org_path=org_path, subject="oauth:token", outcome=Outcome.DENIED, reason=reason))


class Introspection:
    """RFC 7662 introspection over the live database."""

    def __init__(self, uow: Transactions[TokensUnitOfWork], clock: Clock, audit: Auditor,
                 keys: SigningKeys, config: TokenConfig) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._keys = keys
        self._config = config

    # -- RFC 7662 ------------------------------------------------------------------------

    def introspect(self, caller: Caller, token: str) -> dict[str, Any]:
        """The introspection response for ``token``."""
        signed = read_signed(token, self._keys, self._config.issuer)
        if signed is None:
            return dict(INACTIVE)
        now = self._clock.now()
        if signed.exp <= now.timestamp():
            return dict(INACTIVE)
        with self._uow.reading() as uow:
            client = uow.oauth_clients.get(signed.client_id)
            if client is None:
                return dict(INACTIVE)
            if not may_see(caller, client):
                audit_denied(self._audit, caller,
                             "introspection of a token outside the caller's scope")
                return dict(INACTIVE)
            if not self._active(uow, client, signed):
                return dict(INACTIVE)
        return {"active": True, "token_type": "Bearer", **{
            name: signed.claims[name] for name in
            ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti", "cnf")
            if name in signed.claims}}

    def _active(self, uow: TokensUnitOfWork, client: OAuthClient, signed: SignedAccessToken
                ) -> bool:
        if not client.active or uow.oauth_revoked_tokens.is_denied(signed.jti):
            return False
        if client.device_id is not None:
            device = uow.devices.get(client.device_id)
            if device is None or not may(device.state, Transport.OAUTH):
                return False
            # a token from before a quarantine, suspension or revocation stays dead
            # after it is lifted (the device is trusted again, its old tokens are not)
            issued_at = signed.claims.get("iat")
            if isinstance(issued_at, bool) or not isinstance(issued_at, int | float) or \
                    not device.trusts_token_issued_at(issued_at):
                return False
        serial = signed.claims.get(CERTIFICATE_CLAIM)
        if serial is not None:
            try:
                # under whichever issuing CA signed it: a rotation leaves several
                found = [r for r in uow.certificates.find_by_serial(parse_serial(str(serial)))
                         if r.device_id == client.device_id]
            except InvalidInput:
                return False
            record = found[0] if len(found) == 1 else None
            if record is None or record.status is not CertificateStatus.ISSUED or \
                    record.device_id != client.device_id:
                return False
        return True

    # -- shared --------------------------------------------------------------------------
