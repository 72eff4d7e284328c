"""Admin side of OAuth2: clients, device-code approval and signing keys under ``/v1/oauth``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.errors import InvalidInput
from iotiam.tokens.clients import render_client
from iotiam.tokens.device_codes import display_user_code
from iotiam.tokens.models import AuthMethod, ClientDraft, DeviceCode, GrantType, StoredSigningKey

router = APIRouter(prefix="/v1/oauth", tags=["oauth2"], route_class=UntrustedJsonRoute)

_GRANT_NAMES = {"client_credentials": GrantType.CLIENT_CREDENTIALS,
                "device_code": GrantType.DEVICE_CODE,
                **{str(g): g for g in GrantType}}


class ClientIn(Body):
    """Register an OAuth2 client for a device (``device``) or a service (``client_id``)."""

    client_id: str | None = Field(default=None, max_length=128)
    device: str | None = Field(default=None, max_length=128)
    org: str | None = Field(default=None, max_length=128)
    auth_methods: list[AuthMethod] = Field(default_factory=list, max_length=2)
    grant_types: list[str] = Field(default_factory=lambda: ["client_credentials"],
                                   max_length=2)
    scopes: list[str] = Field(default_factory=list, max_length=50)
    audiences: list[str] = Field(default_factory=list, max_length=10)
    jwks: dict[str, Any] | None = None


def _grants(names: list[str]) -> tuple[GrantType, ...]:
    found = []
    for name in names:
        grant = _GRANT_NAMES.get(name)
        if grant is None:
            raise InvalidInput(f"grant type {name[:80]!r} is not offered; use "
                               "client_credentials or device_code")
        found.append(grant)
    return tuple(found)


@router.post("/clients", status_code=201)
def create_client(body: ClientIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Register a client; without ``scopes`` they are derived from its policies."""
    client = svc.oauth.clients.create(caller, ClientDraft(
        client_id=body.client_id, device_id=body.device, org_unit_id=body.org,
        auth_methods=tuple(body.auth_methods), grant_types=_grants(body.grant_types),
        scopes=tuple(body.scopes), audiences=tuple(body.audiences), jwks=body.jwks))
    return render_client(client)


@router.get("/clients")
def list_clients(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Clients in the caller's subtree."""
    return {"items": [render_client(c) for c in svc.oauth.clients.list(caller)]}


@router.get("/clients/{client_id}")
def get_client(client_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One client."""
    return render_client(svc.oauth.clients.get(caller, client_id))


@router.post("/clients/{client_id}/revoke")
def revoke_client(client_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Revoke a client (final); its tokens are inactive at once."""
    return render_client(svc.oauth.clients.revoke(caller, client_id))


def _code(code: DeviceCode) -> dict[str, Any]:
    return {"user_code": display_user_code(code.user_code), "client_id": code.client_id,
            "scope": " ".join(code.scopes), "audience": code.audience,
            "status": str(code.status), "created_at": code.created_at.isoformat(),
            "expires_at": code.expires_at.isoformat(), "decided_by": code.decided_by}


@router.get("/device-codes")
def pending_device_codes(caller: Caller, svc: Wired) -> dict[str, Any]:
    """RFC 8628 device codes waiting for a decision in the caller's subtree."""
    return {"items": [_code(c) for c in svc.oauth.device_codes.pending(caller)]}


@router.post("/device-codes/{user_code}/approve")
def approve_device_code(user_code: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Consent: the device's next poll gets its token."""
    return _code(svc.oauth.device_codes.approve(caller, user_code))


@router.post("/device-codes/{user_code}/deny")
def deny_device_code(user_code: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Refuse: the device's next poll gets access_denied."""
    return _code(svc.oauth.device_codes.deny(caller, user_code))


def _key(key: StoredSigningKey) -> dict[str, Any]:
    return {"kid": key.kid, "algorithm": key.algorithm, "created_at": key.created_at.isoformat(),
            "retired_at": key.retired_at.isoformat() if key.retired_at else None,
            "publish_until": key.publish_until.isoformat() if key.publish_until else None}


@router.get("/signing-keys")
def signing_keys(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Access-token signing keys (root-scoped admins)."""
    return {"items": [_key(k) for k in svc.oauth.keys.stored(caller)]}


@router.post("/signing-keys/rotate", status_code=201)
def rotate_signing_key(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Sign with a new key; the old one stays in the JWKS until its last token expires."""
    return _key(svc.oauth.keys.rotate(caller))
