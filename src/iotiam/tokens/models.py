"""OAuth2 value types: clients, signing keys, device codes, configuration and errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from iotiam.errors import Forbidden, IamError, InvalidInput, Unauthenticated
from iotiam.inventory.models import Device

# -- vocabulary ------------------------------------------------------------------------------

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CLIENT_CREDENTIALS_GRANT = "client_credentials"
#: RFC 9068 §2.1
ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type
#: draft-ietf-oauth-rfc7523bis: the explicit type of a client assertion
CLIENT_ASSERTION_TYP = "client-authentication+jwt"
#: the one algorithm iotiam signs access tokens with (ES256 verifies fastest:
#: docs/measured-facts.md)
SIGNING_ALGORITHM = "ES256"
#: what a client may sign its assertion with: asymmetric only, never "none" or HMAC
ASSERTION_ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519")
#: the audience of a token when the client asks for none and registered none
DEFAULT_AUDIENCE = "urn:iotiam:fleet"
#: RFC 7519 §4.1.3 ``aud``: one resource, or several (RFC 8707 §2), in the order asked for
Audience = str | tuple[str, ...]


class AuthMethod(enum.StrEnum):
    """How a client authenticates at the token endpoint (RFC 7591 names)."""

    PRIVATE_KEY_JWT = "private_key_jwt"  # RFC 7523
    TLS_CLIENT_AUTH = "tls_client_auth"  # RFC 8705 §2.1


class ClientKind(enum.StrEnum):
    """What a client speaks for."""

    DEVICE = "device"  # an inventory device; keys and certificates from its iotiam identity
    SERVICE = "service"  # a backend service with its own registered public keys


class ClientStatus(enum.StrEnum):
    """Lifecycle of a client."""

    ACTIVE = "active"
    REVOKED = "revoked"


class GrantType(enum.StrEnum):
    """Grants a client may use."""

    CLIENT_CREDENTIALS = CLIENT_CREDENTIALS_GRANT
    DEVICE_CODE = DEVICE_CODE_GRANT


class DeviceCodeStatus(enum.StrEnum):
    """RFC 8628 device authorization, as an admin decides it."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    USED = "used"


# -- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenConfig:
    """Knobs of the authorization server."""

    issuer: str
    access_token_lifetime: timedelta = timedelta(minutes=10)
    #: client assertions further in the future than this are refused (bounds the jti store;
    #: an hour, because that is what common clients such as authlib put in ``exp``)
    max_assertion_lifetime: timedelta = timedelta(hours=1)
    #: tolerated clock difference between devices and the server
    clock_skew: timedelta = timedelta(seconds=30)
    device_code_lifetime: timedelta = timedelta(minutes=10)
    device_code_interval: timedelta = timedelta(seconds=5)
    #: the signing key is replaced when it is older than this
    signing_key_max_age: timedelta = timedelta(days=30)
    default_audience: str = DEFAULT_AUDIENCE

    def __post_init__(self) -> None:
        if not timedelta(seconds=30) <= self.access_token_lifetime <= timedelta(hours=24):
            raise InvalidInput("access token lifetime must be between 30 s and 24 h")

    @property
    def token_endpoint(self) -> str:
        """RFC 6749 §3.2."""
        return f"{self.issuer}/oauth2/token"

    @property
    def verification_uri(self) -> str:
        """RFC 8628 §3.2: where a person is told to go."""
        return f"{self.issuer}/oauth2/device"

    @property
    def key_overlap(self) -> timedelta:
        """How long a retired signing key stays published: its last token's lifetime."""
        return self.access_token_lifetime + self.clock_skew


# -- stored objects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OAuthClient:
    """An OAuth2 client bound to an inventory device or a service, inside one org unit.

    ``scopes`` are what it may ask for; each is also checked against the policy
    decision point whenever a token is issued. ``jwks`` holds public keys for
    ``private_key_jwt``; a device client may instead sign with its certificate's key.
    """

    client_id: str
    kind: ClientKind
    device_id: str | None
    org_unit_id: str
    org_path: str
    auth_methods: tuple[AuthMethod, ...]
    grant_types: tuple[GrantType, ...]
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    jwks: dict[str, Any] | None
    status: ClientStatus
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.status is ClientStatus.ACTIVE


@dataclass(frozen=True)
class ClientDraft:
    """What an admin supplies to register a client."""

    client_id: str | None = None
    device_id: str | None = None
    org_unit_id: str | None = None
    auth_methods: tuple[AuthMethod, ...] = ()
    grant_types: tuple[GrantType, ...] = (GrantType.CLIENT_CREDENTIALS,)
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    jwks: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredSigningKey:
    """An access-token signing key; the private half encrypted at rest like the CA keys."""

    kid: str
    algorithm: str
    public_jwk: dict[str, Any]
    encrypted_key_pem: str
    created_at: datetime
    #: when it stopped signing (None: the current key)
    retired_at: datetime | None = None
    #: after this it is left out of the JWKS: its last token has expired
    publish_until: datetime | None = None

    def published(self, now: datetime) -> bool:
        """Whether the JWKS still lists it."""
        return self.publish_until is None or self.publish_until > now


@dataclass(frozen=True)
class DeviceCode:
    """An RFC 8628 device authorization, keyed by the hash of its device code."""

    device_code_hash: str
    user_code: str
    client_id: str
    org_path: str
    scopes: tuple[str, ...]
    audience: str
    status: DeviceCodeStatus
    created_at: datetime
    expires_at: datetime
    interval_seconds: int
    last_polled_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None


@dataclass(frozen=True)
class RevokedToken:
    """A deny-list entry (RFC 7009); kept until the token would have expired anyway."""

    jti: str
    client_id: str
    org_path: str
    revoked_at: datetime
    expires_at: datetime


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    """RFC 6749 §5.1 success response."""

    access_token: str
    expires_in: int
    scope: str
    jti: str
    bound: bool
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 scheme

    def to_response(self) -> dict[str, Any]:
        """The JSON body of the token endpoint."""
        return {"access_token": self.access_token, "token_type": self.token_type,
                "expires_in": self.expires_in, "scope": self.scope}


@dataclass(frozen=True)
class DeviceAuthorization:
    """RFC 8628 §3.2 response."""

    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int

    def to_response(self) -> dict[str, Any]:
        """The JSON body of the device authorization endpoint."""
        return {"device_code": self.device_code, "user_code": self.user_code,
                "verification_uri": self.verification_uri,
                "verification_uri_complete":
                    f"{self.verification_uri}?user_code={self.user_code}",
                "expires_in": self.expires_in, "interval": self.interval}


INACTIVE: dict[str, Any] = {"active": False}


@dataclass(frozen=True)
class ClientCredentials:
    """What a request to the token, introspection or revocation endpoint presented.

    ``certificate_der`` is the TLS client certificate the server verified (or a trusted
    proxy forwarded); ``secret_presented`` flags client_secret / HTTP Basic, which iotiam
    refuses (no shared secrets).
    """

    client_id: str | None = None
    assertion_type: str | None = None
    assertion: str | None = None
    certificate_der: bytes | None = None
    secret_presented: bool = False
    source: str = ""

    @property
    def present(self) -> bool:
        """Whether the request tried to authenticate a client at all."""
        return bool(self.assertion or self.assertion_type or self.secret_presented
                    or (self.client_id and self.certificate_der))


@dataclass(frozen=True)
class AuthenticatedClient:
    """A client that proved who it is, and how."""

    client: OAuthClient
    method: AuthMethod
    #: serial (hex) of the device certificate whose key authenticated it, if any
    certificate_serial: str | None = None
    certificate_not_after: datetime | None = None
    #: RFC 8705 §3.1: SHA-256 thumbprint of the TLS client certificate, to bind the token
    x5t_s256: str | None = None
    #: the client assertion's ``jti`` and expiry: ``ClientAuthenticator.consume`` records
    #: it as used, the last step before a token is issued (RFC 7523 §3 item 7)
    assertion_jti: str | None = None
    assertion_expires_at: datetime | None = None
    #: the client's device as authentication read it (active), so no one reads it twice
    device: Device | None = None


@dataclass(frozen=True)
class TokenRequest:
    """A token endpoint request after form decoding."""

    grant_type: str
    credentials: ClientCredentials
    scope: str | None = None
    #: RFC 8707 §2: every ``resource`` parameter, in the order sent
    resources: tuple[str, ...] = ()
    device_code: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


# -- errors (RFC 6749 §5.2) -----------------------------------------------------------------


class OAuthError(IamError):
    """An error with an RFC 6749 §5.2 ``error`` code; adapters render it as such."""

    kind = "oauth"
    title = "OAuth error"
    error = "invalid_request"
    status = 400

    def to_response(self) -> dict[str, str]:
        """The RFC 6749 §5.2 JSON body."""
        return {"error": self.error, "error_description": self.detail}


class InvalidRequest(OAuthError, InvalidInput):
    """Malformed request: missing or repeated parameter, wrong content type."""

    kind = "invalid-request"
    error = "invalid_request"


class InvalidClient(OAuthError, Unauthenticated):
    """Client authentication failed (RFC 6749 §5.2: 401)."""

    kind = "invalid-client"
    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError, InvalidInput):
    """The grant (device code) is invalid, expired, used or another client's."""

    kind = "invalid-grant"
    error = "invalid_grant"


class UnauthorizedClient(OAuthError, Forbidden):
    """The client may not use this grant type."""

    kind = "unauthorized-client"
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError, InvalidInput):
    """A grant type iotiam does not offer."""

    kind = "unsupported-grant-type"
    error = "unsupported_grant_type"


class InvalidScope(OAuthError, InvalidInput):
    """A scope that is malformed, not registered or not allowed by policy."""

    kind = "invalid-scope"
    error = "invalid_scope"


class InvalidTarget(OAuthError, InvalidInput):
    """RFC 8707 §2: a resource the client may not get a token for."""

    kind = "invalid-target"
    error = "invalid_target"


class AuthorizationPending(OAuthError, InvalidInput):
    """RFC 8628 §3.5: nobody has approved the device code yet."""

    kind = "authorization-pending"
    error = "authorization_pending"


class SlowDown(OAuthError, InvalidInput):
    """RFC 8628 §3.5: polling too fast; the interval grew by 5 s."""

    kind = "slow-down"
    error = "slow_down"


class AccessDenied(OAuthError, Forbidden):
    """The client is known but may get no token now: an admin refused its device code
    (RFC 8628 §3.5) or its device is quarantined or suspended (the OAuth extensions
    error registry lists ``access_denied`` for the token endpoint)."""

    kind = "access-denied"
    error = "access_denied"


class ExpiredToken(OAuthError, InvalidInput):
    """RFC 8628 §3.5: the device code expired."""

    kind = "expired-token"
    error = "expired_token"
