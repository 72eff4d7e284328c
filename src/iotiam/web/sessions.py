"""Console sessions: who is signed in, carried in an encrypted cookie.

A session is opened by a sign-in method (the admin token, ``pages/sign_in.py``; an
OpenID Connect provider, ``pages/oidc.py``) through :meth:`Sessions.open`, which takes
the principal the method proved, the method's name and a few strings the method wants
back when it re-checks the session (``detail``: the OIDC subject and the group that
granted the role). A new method needs no change here.

The cookie is AES-256-GCM over a small JSON value with a key kept in the data directory
(``local_keys.console_session_key``): no session table, and every ``serve`` worker and
replica sharing the data directory reads it. What the cookie cannot do by itself (end
when the admin token is revoked) is checked on every request through the method's
``still_valid`` hook.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from iotiam.clock import Clock
from iotiam.errors import Unauthenticated
from iotiam.kernel import Principal, Role

#: ``__Host-``: the browser keeps it only if Secure, host-only and Path=/ (RFC 6265bis §4.1.3)
COOKIE = "__Host-iotiam-console"
#: the value that binds the sign-in form to the browser that fetched it (login CSRF)
SIGN_IN_COOKIE = "__Host-iotiam-sign-in"
IDLE = timedelta(minutes=15)
LIFETIME = timedelta(hours=8)
_AAD = b"iotiam console session v1"


@dataclass(frozen=True)
class Session:
    """A signed-in person: the principal every service call is made as."""

    principal: Principal
    #: how they signed in ("admin-token", later "oidc:<issuer>")
    via: str
    #: the synchronizer token every state-changing form must carry
    csrf: str
    opened_at: float
    seen_at: float
    #: what the sign-in method keeps to re-check the session (and to audit who it was)
    detail: Mapping[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """The name audit records carry."""
        return self.principal.name


#: re-checks a session's principal against its source; raises Unauthenticated when gone
Revalidator = Callable[[Session], Principal]


class Sessions:
    """Opens, reads and refreshes sessions; the cookie is the only state."""

    def __init__(self, key: bytes, clock: Clock,
                 revalidators: dict[str, Revalidator] | None = None) -> None:
        self._sealer = CookieSealer(key, _AAD)
        self._clock = clock
        self._revalidators = dict(revalidators or {})

    def register_method(self, via: str, revalidate: Revalidator) -> None:
        """Accept sessions opened by sign-in method ``via``, re-checked by ``revalidate``."""
        self._revalidators[via] = revalidate

    def open(self, principal: Principal, via: str,
             detail: Mapping[str, str] | None = None) -> Session:
        """A new session for a principal a sign-in method has just proved."""
        if via not in self._revalidators:
            raise ValueError(f"sign-in method {via!r} is not registered")
        now = self._clock.now().timestamp()
        return Session(principal=principal, via=via, csrf=secrets.token_urlsafe(32),
                       opened_at=now, seen_at=now, detail=dict(detail or {}))

    def seal(self, session: Session) -> str:
        """The cookie value of a session."""
        p = session.principal
        value: dict[str, object] = {
            "n": p.name, "r": str(p.role), "o": p.org_unit_id, "p": p.org_path,
            "t": p.token_id, "v": session.via, "c": session.csrf,
            "a": session.opened_at, "s": session.seen_at}
        if session.detail:
            value["d"] = dict(session.detail)
        return self._sealer.seal(value)

    def resume(self, cookie: str | None) -> Session:
        """The session in a cookie, refreshed; Unauthenticated if absent, forged, idle
        too long, too old, or its source no longer vouches for it."""
        if not cookie:
            raise Unauthenticated("not signed in")
        session = self._unseal(cookie)
        now = self._clock.now().timestamp()
        if now - session.seen_at > IDLE.total_seconds():
            raise Unauthenticated("the session was idle too long; sign in again")
        if now - session.opened_at > LIFETIME.total_seconds():
            raise Unauthenticated("the session is over; sign in again")
        revalidate = self._revalidators.get(session.via)
        if revalidate is None:
            raise Unauthenticated("this sign-in method is no longer accepted")
        principal = revalidate(session)
        return replace(session, principal=principal, seen_at=now)

    def _unseal(self, cookie: str) -> Session:
        data = self._sealer.unseal(cookie)
        if data is None:
            raise Unauthenticated("the session cookie is not one this server issued")
        try:
            principal = Principal(name=data["n"], role=Role(data["r"]), org_unit_id=data["o"],
                                  org_path=data["p"], token_id=data["t"])
            detail = data.get("d") or {}
            if not isinstance(detail, dict):
                raise TypeError("detail")
            return Session(principal=principal, via=data["v"], csrf=data["c"],
                           opened_at=float(data["a"]), seen_at=float(data["s"]),
                           detail={str(k): str(v) for k, v in detail.items()})
        except (ValueError, KeyError, TypeError) as e:
            raise Unauthenticated("the session cookie is not one this server issued") from e


class CookieSealer:
    """A JSON object sealed with AES-256-GCM for a cookie; ``purpose`` (the associated
    data) keeps one kind of cookie from being replayed as another."""

    def __init__(self, key: bytes, purpose: bytes) -> None:
        self._aead = AESGCM(key)
        self._purpose = purpose

    def seal(self, value: Mapping[str, object]) -> str:
        """The cookie value of ``value``."""
        plain = json.dumps(value, separators=(",", ":")).encode()
        nonce = secrets.token_bytes(12)
        sealed = nonce + self._aead.encrypt(nonce, plain, self._purpose)
        return base64.urlsafe_b64encode(sealed).decode()

    def unseal(self, cookie: str) -> dict[str, Any] | None:
        """The object a cookie holds, or None if this server did not seal it (for this
        purpose) or it was altered."""
        try:
            raw = base64.urlsafe_b64decode(cookie.encode("ascii"))
            data = json.loads(self._aead.decrypt(raw[:12], raw[12:], self._purpose))
        except (ValueError, InvalidTag, binascii.Error, UnicodeEncodeError):
            return None
        return data if isinstance(data, dict) else None


def csrf_matches(session: Session, presented: str | None) -> bool:
    """Whether a form carried the session's synchronizer token (constant time)."""
    return presented is not None and hmac.compare_digest(session.csrf.encode(),
                                                         presented.encode())
