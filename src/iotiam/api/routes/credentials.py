"""PSK lifecycle and the unified credential list of a device."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from pydantic import Field, StrictInt

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body, RevokeIn
from iotiam.credentials.models import Psk

router = APIRouter(prefix="/v1", tags=["credentials"], route_class=UntrustedJsonRoute)


class PskIn(Body):
    """Issue or rotate a PSK."""

    lifetime_seconds: StrictInt | None = Field(default=None, ge=60, le=825 * 86400)


def _render(psk: Psk, key_hex: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": psk.id, "identity": psk.identity, "device": psk.device_id,
        "status": str(psk.status), "created_at": psk.created_at.isoformat(),
        "expires_at": psk.expires_at.isoformat() if psk.expires_at else None,
        "revoked_at": psk.revoked_at.isoformat() if psk.revoked_at else None,
    }
    if key_hex is not None:
        body["key_hex"] = key_hex
    return body


def _lifetime(body: PskIn) -> timedelta | None:
    return timedelta(seconds=body.lifetime_seconds) if body.lifetime_seconds else None


@router.post("/devices/{device_id}/psk", status_code=201)
def issue_psk(device_id: str, body: PskIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """A new PSK for the device (the key is shown once)."""
    psk, key = svc.psks.issue(caller, device_id, _lifetime(body))
    return _render(psk, key)


@router.post("/devices/{device_id}/psk/rotate", status_code=201)
def rotate_psk(device_id: str, body: PskIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Replace the device's PSK (the old one is revoked as superseded)."""
    psk, key = svc.psks.rotate(caller, device_id, _lifetime(body))
    return _render(psk, key)


@router.post("/devices/{device_id}/psk/revoke")
def revoke_psk(device_id: str, body: RevokeIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Revoke the device's PSK (final)."""
    return _render(svc.psks.revoke(caller, device_id, body.reason))


@router.get("/psk-file", response_class=PlainTextResponse)
def psk_file(caller: Caller, svc: Wired) -> str:
    """Active PSKs of the caller's subtree in Mosquitto ``psk_file`` format (admins)."""
    return svc.psks.export_mosquitto(caller)


@router.get("/devices/{device_id}/credentials")
def credentials(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Every credential of a device, certificates and PSKs, in one lifecycle model."""
    return {"items": [
        {"kind": str(v.kind), "id": v.id, "status": v.status,
         "created_at": v.created_at.isoformat(),
         "expires_at": v.expires_at.isoformat() if v.expires_at else None,
         "revoked_at": v.revoked_at.isoformat() if v.revoked_at else None}
        for v in svc.psks.credentials(caller, device_id)
    ]}
