"""Manufacturer trust, the approval queue of held enrollments, ownership transfer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field, StrictInt

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body, ImportRowIn, render_certificate
from iotiam.enrollment.models import EnrollmentRequest, Manufacturer, RequestStatus
from iotiam.enrollment.transfer import DEFAULT_TRANSFER_CLAIM_TTL

router = APIRouter(prefix="/v1", tags=["enrollment"], route_class=UntrustedJsonRoute)


class ManufacturerIn(Body):
    """Register a manufacturer CA."""

    name: str = Field(max_length=128)
    certificate: str = Field(max_length=64 * 1024, description="PEM CA certificate")
    org: str | None = Field(default=None, max_length=128)
    type: str = Field(default="sensor", max_length=128)


class ManifestIn(Body):
    """A chunk of a manufacturing manifest."""

    rows: list[ImportRowIn] = Field(min_length=1, max_length=5000)


class ApproveIn(Body):
    """Approve a held enrollment; type and org apply when the device is new."""

    type: str | None = Field(default=None, max_length=128)
    org: str | None = Field(default=None, max_length=128)


class RejectIn(Body):
    """Reject a held enrollment."""

    reason: str = Field(default="", max_length=500)


class TransferIn(Body):
    """Hand a device to another org unit."""

    to: str = Field(max_length=128)
    claim_ttl_seconds: StrictInt = Field(default=int(DEFAULT_TRANSFER_CLAIM_TTL.total_seconds()),
                                   ge=30, le=30 * 86400)


def render_manufacturer(m: Manufacturer, manifest_size: int) -> dict[str, Any]:
    """JSON for a manufacturer."""
    return {"name": m.name, "org": m.org_unit_id, "type": m.device_type,
            "subject": m.subject, "sha256": m.fingerprint_sha256,
            "not_after": m.not_after.isoformat(), "created_at": m.created_at.isoformat(),
            "created_by": m.created_by, "manifest_size": manifest_size,
            "certificate": m.certificate_pem}


def render_request(r: EnrollmentRequest) -> dict[str, Any]:
    """JSON for a held enrollment request (the CSR included, for inspection)."""
    return {"id": r.id, "device": r.device_id, "status": str(r.status),
            "reason": str(r.reason), "detail": r.detail, "source": r.source,
            "presented": r.presented, "org": r.org_unit_id, "manufacturer": r.manufacturer,
            "profile": r.profile, "created_at": r.created_at.isoformat(),
            "last_seen_at": r.last_seen_at.isoformat(), "polls": r.polls,
            "decided_at": r.decided_at.isoformat() if r.decided_at else None,
            "decided_by": r.decided_by, "note": r.decision_note,
            "certificate_serial": r.certificate_serial, "csr": r.csr_pem,
            "public_key_sha256": r.public_key_sha256}


@router.post("/manufacturers", status_code=201)
def register_manufacturer(body: ManufacturerIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Trust a manufacturer CA's IDevIDs for first contact (admins)."""
    maker = svc.manufacturers.register(caller, name=body.name, certificate_pem=body.certificate,
                                       org_unit_id=body.org, device_type=body.type)
    return render_manufacturer(maker, 0)


@router.get("/manufacturers")
def list_manufacturers(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Manufacturers whose devices land in the caller's subtree."""
    return {"items": [render_manufacturer(m, n)
                      for m, n in svc.manufacturers.list_manufacturers(caller)]}


@router.get("/manufacturers/{name}")
def show_manufacturer(name: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One manufacturer."""
    return render_manufacturer(*svc.manufacturers.get(caller, name))


@router.post("/manufacturers/{name}/manifest")
def import_manifest(name: str, body: ManifestIn, caller: Caller, svc: Wired
                    ) -> dict[str, Any]:
    """Add serials (and optionally IDevID keys) to a manufacturer's manifest; per-row report."""
    results = svc.manufacturers.import_manifest(caller, name,
                                                [(r.row, r.data) for r in body.rows])
    return {
        "imported": sum(1 for r in results if r.ok),
        "failed": sum(1 for r in results if not r.ok),
        "results": [{"row": r.row, "serial": r.serial, "ok": r.ok, "error": r.error}
                    for r in results],
    }


@router.get("/enrollment-requests")
def list_requests(
    caller: Caller,
    svc: Wired,
    status: Literal["pending", "approved", "rejected", "enrolled", "all"] = "pending",
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """Held enrollment requests the caller may see, oldest first."""
    chosen = None if status == "all" else RequestStatus(status)
    requests = svc.enrollment_queue.list_requests(caller, status=chosen, limit=limit)
    return {"items": [render_request(r) for r in requests]}


@router.get("/enrollment-requests/{request_id}")
def show_request(request_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One held enrollment request."""
    return render_request(svc.enrollment_queue.get(caller, request_id))


@router.post("/enrollment-requests/{request_id}/approve")
def approve_request(request_id: str, body: ApproveIn, caller: Caller, svc: Wired
                    ) -> dict[str, Any]:
    """Certify the request's key now; the device collects the certificate on its next poll."""
    request, record = svc.enrollment_queue.approve(caller, request_id, type_name=body.type,
                                                   org_unit_id=body.org)
    return {**render_request(request), "certificate": render_certificate(record)}


@router.post("/enrollment-requests/{request_id}/reject")
def reject_request(request_id: str, body: RejectIn, caller: Caller, svc: Wired
                   ) -> dict[str, Any]:
    """Refuse the request; the device's next poll gets a 403."""
    return render_request(svc.enrollment_queue.reject(caller, request_id, body.reason))


@router.post("/devices/{device_id}/transfer")
def transfer_device(device_id: str, body: TransferIn, caller: Caller, svc: Wired
                    ) -> dict[str, Any]:
    """Move a device to another owner: old credentials revoked, a new claim token (once)."""
    moved = svc.transfers.transfer(caller, device_id, body.to,
                                   timedelta(seconds=body.claim_ttl_seconds))
    return {"device": moved.device_id, "from": moved.from_org, "to": moved.to_org,
            "state": "pending", "credentials_revoked": moved.credentials_revoked,
            "groups_left": moved.groups_left,
            "claim": {"id": moved.claim.id, "expires_at": moved.claim.expires_at.isoformat(),
                      "token": moved.claim_token}}
