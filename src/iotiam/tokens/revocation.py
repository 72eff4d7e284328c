"""RFC 7009 token revocation: a deny list of token ids, kept until the tokens expire.

Revoking a client, quarantining or decommissioning its device or revoking its
certificate needs no entry here: introspection reads those states live (G3), and a
device's ``tokens_not_before`` (set when it stops being trusted) keeps the tokens it
had before dead once it is trusted again, without listing them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.kernel import Role, Transactions
from iotiam.tokens.access_tokens import read_signed
from iotiam.tokens.introspection import Caller, audit_denied, caller_name
from iotiam.tokens.models import AuthenticatedClient, RevokedToken, TokenConfig
from iotiam.tokens.ports import TokensUnitOfWork
from iotiam.tokens.signing_keys import SigningKeys


class TokenRevocation:
    """Revokes access tokens and forgets what can no longer matter."""

    def __init__(self, uow: Transactions[TokensUnitOfWork], clock: Clock, audit: Auditor,
                 keys: SigningKeys, config: TokenConfig) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._keys = keys
        self._config = config

    def revoke(self, caller: Caller, token: str) -> bool:
        """Deny ``token`` from now on; True if something was revoked.

        §2.2: an invalid, unknown or expired token is not an error. A token of a client
        the caller may not act for is left alone and the attempt audited, with the same
        answer as for an unknown one (nothing leaked, G9).
        """
        signed = read_signed(token, self._keys, self._config.issuer)
        now = self._clock.now()
        if signed is None or signed.exp <= now.timestamp():
            return False
        with self._uow() as uow:
            client = uow.oauth_clients.get(signed.client_id)
            if client is None:
                return False
            # §2.1: a client revokes its own tokens; an operator those of its subtree
            allowed = (caller.client.client_id == client.client_id
                       if isinstance(caller, AuthenticatedClient)
                       else caller.sees(client.org_path) and caller.has_role(Role.OPERATOR))
            if allowed:
                uow.oauth_revoked_tokens.add(RevokedToken(
                    jti=signed.jti, client_id=client.client_id, org_path=client.org_path,
                    revoked_at=now, expires_at=datetime.fromtimestamp(signed.exp, UTC)))
                self._audit.append(uow, AuditDraft(
                    tag=AuditTag.OAUTH_TOKEN_REVOKED, actor=caller_name(caller),
                    org_path=client.org_path, subject=f"oauth-client:{client.client_id}",
                    details={"jti": signed.jti}))
        if not allowed:
            audit_denied(self._audit, caller, "revocation of a token the caller may not revoke")
        return allowed

    def purge(self) -> int:
        """Forget deny-list entries and used assertion jtis of expired tokens/assertions."""
        before = self._clock.now() - self._config.clock_skew
        with self._uow() as uow:
            return (uow.oauth_revoked_tokens.purge(before)
                    + uow.oauth_assertion_jtis.purge(before))
