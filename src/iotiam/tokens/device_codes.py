"""RFC 8628 device authorization grant: a device shows a code, an admin approves it.

For user-associated devices that need a person's consent. The device (an
authenticated client) asks for a code; an admin whose subtree holds the client
approves or denies it through the API or ``iotiam device-code``; the device polls the
token endpoint. Only the SHA-256 of the device code is stored; a code is redeemed
exactly once (the row update is the lock, like a claim token, G8).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace
from datetime import datetime, timedelta

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.audit.ports import Auditor
from iotiam.clock import Clock
from iotiam.errors import Conflict, InvalidInput, NotFound
from iotiam.kernel import Principal, Role, Transactions
from iotiam.tokens.models import (
    AccessDenied,
    AuthenticatedClient,
    AuthorizationPending,
    DeviceAuthorization,
    DeviceCode,
    DeviceCodeStatus,
    ExpiredToken,
    InvalidGrant,
    OAuthError,
    SlowDown,
    TokenConfig,
)
from iotiam.tokens.ports import TokensUnitOfWork

#: RFC 8628 §6.1: no vowels (no words), no look-alikes; 20^8 ≈ 2^34.6 codes
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
#: RFC 8628 §3.5: each slow_down adds 5 seconds to the interval
SLOW_DOWN_STEP = 5


def hash_device_code(device_code: str) -> str:
    """What is stored for a device code (256 random bits: a plain hash is enough)."""
    return hashlib.sha256(device_code.encode()).hexdigest()


def normalize_user_code(text: str) -> str:
    """``bcdf-ghjk`` → ``BCDFGHJK``: case and dashes are not significant (§6.1)."""
    cleaned = "".join(c for c in text.upper() if c not in "- ")
    if len(cleaned) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in cleaned):
        raise InvalidInput(f"{text[:20]!r} is not a user code (8 letters, e.g. BCDF-GHJK)")
    return cleaned


def display_user_code(code: str) -> str:
    """``BCDFGHJK`` → ``BCDF-GHJK``."""
    return f"{code[:4]}-{code[4:]}"


class DeviceCodes:
    """Issue, decide and redeem device codes."""

    def __init__(self, uow: Transactions[TokensUnitOfWork], clock: Clock, audit: Auditor,
                 config: TokenConfig) -> None:
        self._uow = uow
        self._clock = clock
        self._audit = audit
        self._config = config

    def start(self, uow: TokensUnitOfWork, client: AuthenticatedClient, scopes: tuple[str, ...],
              audience: str) -> DeviceAuthorization:
        """RFC 8628 §3.1-3.2, inside the caller's transaction."""
        now = self._clock.now()
        device_code = secrets.token_urlsafe(32)
        user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
        interval = int(self._config.device_code_interval.total_seconds())
        code = DeviceCode(
            device_code_hash=hash_device_code(device_code), user_code=user_code,
            client_id=client.client.client_id, org_path=client.client.org_path,
            scopes=scopes, audience=audience, status=DeviceCodeStatus.PENDING,
            created_at=now, expires_at=now + self._config.device_code_lifetime,
            interval_seconds=interval,
        )
        uow.oauth_device_codes.add(code)
        self._audit.append(uow, AuditDraft(
            tag=AuditTag.OAUTH_DEVICE_CODE_REQUESTED,
            actor=f"oauth-client:{code.client_id}", org_path=code.org_path,
            subject=f"device-code:{display_user_code(user_code)}",
            details={"scope": " ".join(scopes), "audience": audience}))
        return DeviceAuthorization(
            device_code=device_code, user_code=display_user_code(user_code),
            verification_uri=self._config.verification_uri,
            expires_in=int(self._config.device_code_lifetime.total_seconds()),
            interval=interval)

    # -- the admin's side ----------------------------------------------------------------

    def pending(self, actor: Principal) -> list[DeviceCode]:
        """Codes waiting for a decision in the caller's subtree."""
        with self._uow.reading() as uow:
            return uow.oauth_device_codes.pending_under(org_path=actor.org_path,
                                                        now=self._clock.now())

    def approve(self, actor: Principal, user_code: str) -> DeviceCode:
        """Consent: the device's next poll gets a token for the requested scopes."""
        return self._decide(actor, user_code, DeviceCodeStatus.APPROVED)

    def deny(self, actor: Principal, user_code: str) -> DeviceCode:
        """Refuse: the device's next poll gets ``access_denied``."""
        return self._decide(actor, user_code, DeviceCodeStatus.DENIED)

    def _decide(self, actor: Principal, user_code: str, status: DeviceCodeStatus
                ) -> DeviceCode:
        tag = (AuditTag.OAUTH_DEVICE_CODE_APPROVED if status is DeviceCodeStatus.APPROVED
               else AuditTag.OAUTH_DEVICE_CODE_DENIED)
        draft = AuditDraft(tag=tag, actor=actor.name, org_path=actor.org_path,
                           subject=f"device-code:{user_code[:20]}")
        with self._audit.refusals(draft), self._uow() as uow:
            actor.require(Role.OPERATOR, "deciding device codes")
            code = uow.oauth_device_codes.by_user_code(normalize_user_code(user_code))
            now = self._clock.now()
            if code is None or not actor.sees(code.org_path):
                raise NotFound(f"device code {user_code[:20]!r} not found")
            if code.expires_at <= now:
                raise Conflict(f"device code {display_user_code(code.user_code)} has expired")
            if not uow.oauth_device_codes.decide(code.device_code_hash, status, now,
                                                 actor.name):
                raise Conflict(f"device code {display_user_code(code.user_code)} was "
                               f"already {code.status}")
            self._audit.append(uow, replace(
                draft, org_path=code.org_path,
                subject=f"device-code:{display_user_code(code.user_code)}",
                details={"client": code.client_id, "scope": " ".join(code.scopes)}))
            return replace(code, status=status, decided_at=now, decided_by=actor.name)

    # -- the device's side ---------------------------------------------------------------

    def redeem(self, uow: TokensUnitOfWork, client: AuthenticatedClient, device_code: str
               ) -> DeviceCode | OAuthError:
        """RFC 8628 §3.4-3.5: the approved code (used up now), or the error to answer.

        Errors are returned, not raised, so that the poll time they record commits.
        """
        if not device_code or len(device_code) > 128:
            return InvalidGrant("device_code is missing or malformed")
        code = uow.oauth_device_codes.by_hash(hash_device_code(device_code))
        if code is None or code.client_id != client.client.client_id:
            return InvalidGrant("unknown device_code")
        now = self._clock.now()
        if code.expires_at <= now:
            return ExpiredToken("the device code has expired; start again")
        if code.status is DeviceCodeStatus.DENIED:
            return AccessDenied("an administrator denied the request")
        if code.status is DeviceCodeStatus.USED:
            return InvalidGrant("the device code was already used")
        if code.status is DeviceCodeStatus.PENDING:
            interval = code.interval_seconds
            too_soon = code.last_polled_at is not None and \
                now - code.last_polled_at < timedelta(seconds=interval)
            if too_soon:
                interval += SLOW_DOWN_STEP
            uow.oauth_device_codes.polled(code.device_code_hash, now, interval)
            if too_soon:
                return SlowDown(f"polling too fast: wait {interval} s between polls")
            return AuthorizationPending("waiting for an administrator to approve "
                                        f"{display_user_code(code.user_code)}")
        if not uow.oauth_device_codes.redeem(code.device_code_hash, now):
            return InvalidGrant("the device code was already used")
        return code

    @staticmethod
    def approver(code: DeviceCode) -> str:
        """RFC 9068 §2.2: the token's subject is the person who consented."""
        return code.decided_by or code.client_id


def expires_in(code: DeviceCode, now: datetime) -> int:
    """Seconds a code has left."""
    return max(0, int((code.expires_at - now).total_seconds()))
