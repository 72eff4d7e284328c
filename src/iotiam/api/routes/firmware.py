"""Firmware signers, signed images, minimum-firmware rules and device firmware status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.attestation.models import (
    FirmwareImage,
    FirmwareRule,
    FirmwareSigner,
    FirmwareStatus,
)
from iotiam.attestation.registry import ImageRegistration, SignerRevocation

router = APIRouter(prefix="/v1", tags=["firmware"], route_class=UntrustedJsonRoute)


class SignerIn(Body):
    """Register a firmware signer's public key for an org unit's subtree."""

    name: str = Field(max_length=128)
    public_key_pem: str = Field(max_length=8192)
    org: str | None = Field(default=None, max_length=128)


class SignerRevokeIn(Body):
    """Revoke a signer of an org unit (default: the caller's)."""

    org: str | None = Field(default=None, max_length=128)


class ImageIn(Body):
    """Register a firmware image: ``metadata`` is the compact JWS a signer made."""

    #: anything is accepted here so that unsigned metadata gets the firmware refusal
    #: (audited as such), not a generic validation error
    metadata: Any = None
    org: str | None = Field(default=None, max_length=128)


class RuleIn(Body):
    """Set the minimum approved firmware version of a device type."""

    min_version: str = Field(max_length=64)
    org: str | None = Field(default=None, max_length=128)


def render_signer(signer: FirmwareSigner) -> dict[str, Any]:
    """JSON of a signer."""
    return {"id": signer.id, "name": signer.name, "org": signer.org_unit_id,
            "org_path": signer.org_path, "algorithm": str(signer.algorithm),
            "key_id": signer.key_id, "public_key_pem": signer.public_key_pem,
            "created_at": signer.created_at.isoformat(), "created_by": signer.created_by,
            "revoked_at": signer.revoked_at.isoformat() if signer.revoked_at else None,
            "revoked_by": signer.revoked_by}


def render_revocation(revocation: SignerRevocation) -> dict[str, Any]:
    """JSON of a revoked signer and what its revocation changed."""
    return {**render_signer(revocation.signer),
            "images_affected": revocation.images_affected,
            "devices_changed": revocation.devices_changed}


def render_image(image: FirmwareImage) -> dict[str, Any]:
    """JSON of an image."""
    return {"id": image.id, "device_type": image.device_type, "version": image.version,
            "sha256": image.sha256, "org": image.org_unit_id, "org_path": image.org_path,
            "signer": image.signer_id,
            "released_at": image.released_at.isoformat() if image.released_at else None,
            "notes": image.notes, "created_at": image.created_at.isoformat(),
            "created_by": image.created_by}


def render_registration(registration: ImageRegistration) -> dict[str, Any]:
    """JSON of a registered image and how many devices became compliant with it."""
    return {**render_image(registration.image),
            "devices_changed": registration.devices_changed}


def render_rule(rule: FirmwareRule) -> dict[str, Any]:
    """JSON of a rule."""
    return {"device_type": rule.device_type, "min_version": rule.min_version,
            "org": rule.org_unit_id, "org_path": rule.org_path,
            "updated_at": rule.updated_at.isoformat(), "updated_by": rule.updated_by}


def render_status(device_id: str, status: FirmwareStatus | None) -> dict[str, Any]:
    """JSON of a device's firmware status (``compliant`` null: never attested)."""
    if status is None:
        return {"device": device_id, "attested": False, "compliant": None,
                "reason": "the device has not attested yet", "firmware_version": None,
                "firmware_hash": None, "image": None, "attested_at": None,
                "measurements": []}
    return {"device": device_id, "attested": True, "compliant": status.compliant,
            "reason": status.reason, "firmware_version": status.firmware_version,
            "firmware_hash": status.firmware_hash, "image": status.image_id,
            "attested_at": status.attested_at.isoformat(),
            "measurements": [{"name": m.name, "digest": m.digest}
                             for m in status.measurements]}


@router.get("/firmware/signers")
def list_signers(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Firmware signers in the caller's subtree."""
    return {"items": [render_signer(s) for s in svc.firmware.list_signers(caller)]}


@router.post("/firmware/signers", status_code=201)
def register_signer(body: SignerIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Trust a public key (P-256, Ed25519, RSA >= 3072) to sign firmware metadata."""
    return render_signer(svc.firmware.register_signer(
        caller, name=body.name, public_key_pem=body.public_key_pem, org_unit_id=body.org))


@router.post("/firmware/signers/{name}/revoke")
def revoke_signer(name: str, caller: Caller, svc: Wired,
                  body: SignerRevokeIn | None = None) -> dict[str, Any]:
    """Stop trusting a signer at once (final): its metadata is refused and devices running
    its images become non-compliant."""
    return render_revocation(svc.firmware.revoke_signer(
        caller, name, body.org if body else None))


@router.get("/firmware/images")
def list_images(caller: Caller, svc: Wired,
                device_type: str | None = Query(default=None, alias="type", max_length=128)
                ) -> dict[str, Any]:
    """Registered firmware images in the caller's subtree."""
    return {"items": [render_image(i) for i in svc.firmware.list_images(caller, device_type)]}


@router.post("/firmware/images", status_code=201)
def register_image(body: ImageIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Register an image from metadata signed by a registered signer; devices that
    attested this very build before are judged again at once."""
    return render_registration(svc.firmware.register_image(caller, body.metadata, body.org))


@router.get("/firmware/rules")
def list_rules(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Minimum-firmware rules set in the caller's subtree."""
    return {"items": [render_rule(r) for r in svc.firmware.list_rules(caller)]}


@router.get("/firmware/rules/{device_type}")
def get_rule(device_type: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """The rules of a device type the caller sees and the minimum in force for them."""
    view = svc.firmware.rules(caller, device_type)
    return {"device_type": view.device_type,
            "min_version": view.effective.min_version if view.effective else None,
            "set_at": view.effective.org_path if view.effective else None,
            "items": [render_rule(r) for r in view.rules]}


@router.put("/firmware/rules/{device_type}")
def set_rule(device_type: str, body: RuleIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Set the minimum approved firmware of a device type (org unit: the caller's)."""
    return render_rule(svc.firmware.set_rule(caller, device_type, body.min_version,
                                             body.org))


@router.get("/devices/{device_id}/firmware")
def device_firmware(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """What the device last attested and whether it is compliant."""
    device, status = svc.attestation.status(caller, device_id)
    return render_status(device.id, status)
