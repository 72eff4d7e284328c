"""Admin bearer tokens: creation within the creator's own rights, authentication, revocation."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from iotiam.admin.models import AdminToken
from iotiam.admin.ports import AdminUnitOfWork
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.changes import AdminTokenRevoked, Published
from iotiam.clock import Clock
from iotiam.errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from iotiam.kernel import Principal, Role, Transactions

#: tokens kept after their first use (a fleet has few admin tokens; beyond this the
#: cache starts over, which costs one read per token)
MAX_CACHED_TOKENS = 4096
TOKEN_PREFIX = "iotiam_"  # noqa: S105 - a prefix, not a secret
#: the namespace a console sign-in form's binding is spent in (``spend_sign_in_binding``)
SIGN_IN_BINDINGS = "console-sign-in"
#: as long as the binding cookie lives (``web/pages/sign_in.py``), and a margin
SIGN_IN_BINDING_LIFETIME = timedelta(minutes=15)
_TOKEN = re.compile(r"^iotiam_([0-9a-f]{16})_([A-Za-z0-9_-]{32,64})$")


def hash_secret(secret: str) -> str:
    """SHA-256 of a token secret (the secret has 256 random bits, so no slow KDF is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AdminTokens:
    """Create, authenticate and revoke admin tokens."""

    def __init__(self, uow: Transactions[AdminUnitOfWork], clock: Clock,
                 audit: Auditor) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        # token id -> the stored token, read once: every API call authenticates, and
        # a read transaction cost more than the rest of authentication. Revocation
        # reaches it through the change feed (``forget``); expiry is checked each time.
        self._known: dict[str, AdminToken] = {}
        #: moves on every revocation heard: a read that overlapped one is not kept
        self._revocations = 0

    def mint(
        self,
        uow: AdminUnitOfWork,
        *,
        created_by: str,
        name: str,
        role: Role,
        org_unit_id: str,
        org_path: str,
        ttl: timedelta | None,
    ) -> tuple[AdminToken, str]:
        """Store a new token inside ``uow`` and return it with its one-time plaintext."""
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        now = self._clock.now()
        token = AdminToken(
            id=token_id,
            name=name,
            role=role,
            org_unit_id=org_unit_id,
            org_path=org_path,
            secret_hash=hash_secret(secret),
            created_at=now,
            created_by=created_by,
            expires_at=now + ttl if ttl else None,
        )
        uow.admin_tokens.add(token)
        return token, f"{TOKEN_PREFIX}{token_id}_{secret}"

    def create(
        self,
        actor: Principal,
        *,
        name: str,
        role: Role,
        org_unit_id: str | None = None,
        ttl: timedelta | None = None,
    ) -> tuple[AdminToken, str]:
        """A token never gets more than its creator: same or lower role, same or smaller scope."""
        if not actor.has_role(Role.ADMIN):
            raise Forbidden("creating tokens needs the admin role")
        if not name.strip() or len(name) > 200:
            raise InvalidInput("token name must be 1-200 characters")
        if not actor.has_role(role):
            raise Forbidden(f"a {actor.role} cannot create a {role} token")
        if ttl is not None and ttl <= timedelta(0):
            raise InvalidInput("token lifetime must be positive")
        with self._uow() as uow:
            unit = uow.org_units.get(org_unit_id or actor.org_unit_id)
            if unit is None or not actor.sees(unit.path):
                raise NotFound(f"org unit {org_unit_id!r} not found")
            token, plaintext = self.mint(
                uow,
                created_by=actor.name,
                name=name,
                role=role,
                org_unit_id=unit.id,
                org_path=unit.path,
                ttl=ttl,
            )
            self._audit.append(
                uow,
                AuditDraft(
                    tag=AuditTag.TOKEN_CREATED,
                    actor=actor.name,
                    org_path=unit.path,
                    subject=f"token:{token.id}",
                    details={"name": name, "role": str(role), "org_unit": unit.id},
                ),
            )
        return token, plaintext

    def authenticate(self, bearer: str) -> Principal:
        """Turn a presented bearer token into a principal, or refuse."""
        match = _TOKEN.match(bearer.strip())
        if not match:
            raise Unauthenticated("malformed bearer token")
        token_id, secret = match.groups()
        token = self._known.get(token_id)
        if token is None:
            heard = self._revocations
            with self._uow.reading() as uow:
                token = uow.admin_tokens.get(token_id)
            if token is not None and token.revoked_at is None and heard == self._revocations:
                if len(self._known) >= MAX_CACHED_TOKENS:
                    self._known.clear()
                self._known[token_id] = token
        if token is None or not hmac.compare_digest(token.secret_hash, hash_secret(secret)):
            raise Unauthenticated("unknown bearer token")
        return self._live(token)

    def spend_sign_in_binding(self, binding: str) -> None:
        """Use up a sign-in form's binding: a form signs in once (a copied cookie and form
        value replayed later are refused), in every process and replica."""
        digest = hashlib.sha256(binding.encode()).hexdigest()
        with self._uow() as uow:
            spent = not uow.oauth_assertion_jtis.use(
                SIGN_IN_BINDINGS, digest, self._clock.now() + SIGN_IN_BINDING_LIFETIME)
        if spent:
            raise Unauthenticated("this sign-in form was used already; load it again")

    def known(self, bearer: str) -> Principal | None:
        """The principal of a token authenticated before and still good, without I/O;
        None when only :meth:`authenticate` can tell (and audit a refusal)."""
        match = _TOKEN.match(bearer.strip())
        token = self._known.get(match.group(1)) if match else None
        if (match is None or token is None
                or not hmac.compare_digest(token.secret_hash, hash_secret(match.group(2)))
                or (token.expires_at is not None and token.expires_at <= self._clock.now())):
            return None
        return self._live(token)

    def forget(self, published: Published) -> None:
        """A token was revoked (in any process): authenticate it from the database again."""
        change = published.change
        if isinstance(change, AdminTokenRevoked):
            self._revocations += 1
            self._known.pop(change.token_id, None)

    def reauthenticate(self, token_id: str) -> Principal:
        """The principal of a token authenticated before (a console session holds its id),
        refused once the token is revoked or expired."""
        with self._uow.reading() as uow:
            token = uow.admin_tokens.get(token_id)
        if token is None:
            raise Unauthenticated("unknown token")
        return self._live(token)

    def _live(self, token: AdminToken) -> Principal:
        now = self._clock.now()
        if token.revoked_at is not None:
            raise Unauthenticated("this token was revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise Unauthenticated("this token has expired")
        return Principal(
            name=f"token:{token.name}",
            role=token.role,
            org_unit_id=token.org_unit_id,
            org_path=token.org_path,
            token_id=token.id,
        )

    def list(self, actor: Principal) -> list[AdminToken]:
        """Tokens inside the caller's subtree."""
        if not actor.has_role(Role.ADMIN):
            raise Forbidden("listing tokens needs the admin role")
        with self._uow.reading() as uow:
            return uow.admin_tokens.list_under(org_path=actor.org_path)

    def revoke(self, actor: Principal, token_id: str) -> None:
        """Revoke a token inside the caller's subtree."""
        if not actor.has_role(Role.ADMIN):
            raise Forbidden("revoking tokens needs the admin role")
        with self._uow() as uow:
            token = uow.admin_tokens.get(token_id)
            if token is None or not actor.sees(token.org_path):
                raise NotFound(f"token {token_id!r} not found")
            if token.revoked_at is None:
                uow.admin_tokens.revoke(token_id, self._clock.now())
                uow.changes.record(AdminTokenRevoked(token_id))
            self._audit.append(
                uow,
                AuditDraft(
                    tag=AuditTag.TOKEN_REVOKED,
                    actor=actor.name,
                    org_path=token.org_path,
                    subject=f"token:{token_id}",
                ),
            )
