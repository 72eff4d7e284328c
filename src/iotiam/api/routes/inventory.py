"""Org units, device types, devices, groups, bulk import and the inventory report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.responses import (
    DeviceOut,
    DevicePage,
    DeviceTypeList,
    DeviceTypeOut,
    GroupList,
    GroupOut,
    ImportOut,
    OrgUnitList,
    OrgUnitOut,
)
from iotiam.api.schemas import (
    BatchClaimIn,
    ClaimIn,
    DeviceIn,
    DeviceTypeIn,
    GroupIn,
    GroupMemberIn,
    ImportIn,
    OrgUnitIn,
    RotationIn,
    StateChangeIn,
    render_device,
    render_device_type,
    render_group,
    render_org_unit,
)
from iotiam.audit.activity import DAYS, ActivityKind
from iotiam.inventory.credential_status import EXPIRING_RULE
from iotiam.inventory.models import DeviceDraft, DeviceState, RotationPolicy
from iotiam.risk.models import RiskSummary

router = APIRouter(prefix="/v1", tags=["inventory"], route_class=UntrustedJsonRoute)


@router.get("/org-units", response_model=OrgUnitList)
def list_org_units(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Org units in the caller's subtree."""
    return {"items": [render_org_unit(u) for u in svc.inventory.list_org_units(caller)]}


@router.post("/org-units", status_code=201, response_model=OrgUnitOut)
def create_org_unit(body: OrgUnitIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Create an org unit under a parent."""
    unit = svc.inventory.create_org_unit(
        caller, unit_id=body.id, name=body.name, kind=body.kind, parent_id=body.parent
    )
    return render_org_unit(unit)


@router.get("/device-types", response_model=DeviceTypeList)
def list_device_types(caller: Caller, svc: Wired) -> dict[str, Any]:
    """All device types."""
    return {"items": [render_device_type(t) for t in svc.inventory.list_device_types()]}


@router.post("/device-types", status_code=201, response_model=DeviceTypeOut)
def create_device_type(body: DeviceTypeIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Create a device type (root-scoped admins only)."""
    created = svc.inventory.create_device_type(
        caller, name=body.name, device_class=body.device_class, criticality=body.criticality,
        description=body.description, certificate_profile=body.certificate_profile,
    )
    return render_device_type(created)


@router.put("/device-types/{name}/rotation", response_model=DeviceTypeOut)
def set_rotation(name: str, body: RotationIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Set a device type's rotation policy (lifetime, grace window, maximum key age)."""
    lifetime = body.certificate_lifetime_seconds
    policy = RotationPolicy(
        certificate_lifetime=timedelta(seconds=lifetime) if lifetime else None,
        grace_period=timedelta(seconds=body.grace_seconds),
        max_credential_age=timedelta(seconds=body.max_credential_age_seconds),
    )
    return render_device_type(svc.inventory.set_rotation(caller, name, policy))


@router.post("/devices", status_code=201, response_model=DeviceOut)
def add_device(body: DeviceIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Register a device."""
    device = svc.inventory.add_device(
        caller,
        DeviceDraft(id=body.id, type_name=body.type, org_unit_id=body.org, site=body.site,
                    location=body.location, attributes=body.attributes, via=body.via),
    )
    return {**render_device(device), "via": body.via}


@router.get("/devices", response_model=DevicePage)
def list_devices(
    caller: Caller,
    svc: Wired,
    type: str | None = None,
    state: DeviceState | None = None,
    site: str | None = Query(default=None, max_length=256),
    after: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """Devices in the caller's subtree (keyset pagination: pass ``next`` as ``after``);
    ``total`` counts every device the filters select, not only this page."""
    devices = svc.inventory.list_devices(caller, type_name=type, state=state, after_id=after,
                                         limit=limit, site=site or None)
    total = svc.inventory.count_devices(caller, type_name=type, state=state,
                                        site=site or None)
    return {"items": [render_device(d) for d in devices], "total": total,
            "next": devices[-1].id if len(devices) == limit else None}


@router.post("/devices/import", response_model=None, responses={200: {"model": ImportOut}})
def import_devices(body: ImportIn, caller: Caller, svc: Wired) -> JSONResponse:
    """Register many devices; the answer reports each row."""
    results = svc.inventory.import_devices(caller, [(r.row, r.data) for r in body.rows])
    imported = sum(1 for r in results if r.ok)
    # rendered as is: FastAPI's encoder walks each of 5,000 plain rows again (a fifth of
    # the request's CPU, measured); the shape is ``ImportOut``
    return JSONResponse({
        "imported": imported,
        "failed": len(results) - imported,
        "results": [{"row": r.row, "device": r.device_id, "ok": r.ok, "error": r.error}
                    for r in results],
    })


@router.get("/devices/{device_id}", response_model=DeviceOut)
def show_device(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One device with its certificates."""
    device = svc.inventory.get_device(caller, device_id)
    body = render_device(device)
    body["via"] = svc.gateways.gateway_of(caller, device_id)
    certs = svc.pki.list_certificates(caller, device_id=device_id, limit=1000)
    body["certificates"] = [
        {"serial": c.serial_hex, "status": str(c.status), "not_after": c.not_after.isoformat()}
        for c in certs
    ]
    return body


@router.post("/devices/{device_id}/state", response_model=DeviceOut)
def set_state(device_id: str, body: StateChangeIn, caller: Caller, svc: Wired
              ) -> dict[str, Any]:
    """Move a device along its lifecycle."""
    return render_device(svc.inventory.set_state(caller, device_id, body.state, body.reason))


@router.post("/devices/{device_id}/claims", status_code=201)
def create_claim(device_id: str, body: ClaimIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """A one-time claim token for the device's first EST enrollment (shown once)."""
    token, plaintext = svc.enrollment.create_claim(
        caller, device_id, timedelta(seconds=body.ttl_seconds))
    return {"id": token.id, "device": token.device_id,
            "expires_at": token.expires_at.isoformat(), "token": plaintext}


@router.post("/claims", status_code=201)
def create_claims(body: BatchClaimIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Claim tokens for many devices at once (all or nothing)."""
    created = svc.enrollment.create_claims(caller, body.devices,
                                           timedelta(seconds=body.ttl_seconds))
    return {"items": [{"id": t.id, "device": t.device_id, "expires_at": t.expires_at.isoformat(),
                       "token": plaintext} for t, plaintext in created]}


@router.get("/inventory")
def inventory_report(
    caller: Caller,
    svc: Wired,
    expiring_days: int | None = Query(default=None, ge=0, le=3650),
    rotation_age_days: int | None = Query(default=None, ge=1, le=3650),
) -> dict[str, Any]:
    """Counts by type, state, site (``""``: none), org unit path and credential status
    (from maintained counts), and how the fleet stands against what the network shows
    (as of the risk register's last rebuild)."""
    rotation = (timedelta(days=rotation_age_days) if rotation_age_days
                else svc.settings.rotation_age)
    summary = svc.inventory.summary(
        caller, rotation_age=rotation,
        expiring_within=None if expiring_days is None else timedelta(days=expiring_days))
    return {"total": summary.total, "by_type": summary.by_type, "by_state": summary.by_state,
            "by_site": summary.by_site, "by_org": summary.by_org,
            "by_credential_status": summary.by_credential_status,
            "expiring_within_days": summary.expiring_within_days,
            "expiring_rule": EXPIRING_RULE + (
                "" if summary.expiring_within_days is None
                else f", or ending within {summary.expiring_within_days} days"),
            "rotation_age_days": summary.rotation_age_days,
            "never_rotated": summary.never_rotated,
            "presence": presence(svc.risk.summary(caller))}


@router.get("/inventory/activity")
def activity_report(caller: Caller, svc: Wired,
                    days: int = Query(default=DAYS, ge=1, le=366)) -> dict[str, Any]:
    """Enrollments, re-enrollments and credentials revoked per UTC day in the caller's
    subtree, oldest day first (the console overview's charts; docs/console.md)."""
    series = svc.activity.series(caller, days)
    kinds = {"enrollments": ActivityKind.ENROLLMENT,
             "reenrollments": ActivityKind.REENROLLMENT,
             "revocations": ActivityKind.REVOCATION}
    return {"days": [{"day": day.isoformat(),
                      **{name: series.of(kind)[n] for name, kind in kinds.items()}}
                     for n, day in enumerate(series.days)],
            "totals": {name: series.total(kind) for name, kind in kinds.items()}}


def presence(register: RiskSummary) -> dict[str, Any]:
    """Managed, unmanaged, dormant and zombie identities, from the register's last rebuild."""
    return {"managed": register.managed, "unmanaged": register.unmanaged,
            "dormant": register.dormant, "zombie": register.zombie,
            "as_of": None if register.rebuilt_at is None else
            datetime.fromtimestamp(register.rebuilt_at, UTC).isoformat().replace("+00:00", "Z")}


@router.get("/groups", response_model=GroupList)
def list_groups(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Groups in the caller's subtree."""
    return {"items": [render_group(g, m) for g, m in svc.inventory.list_groups(caller)]}


@router.post("/groups", status_code=201, response_model=GroupOut)
def create_group(body: GroupIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Create a group."""
    group = svc.inventory.create_group(caller, group_id=body.id, name=body.name,
                                       org_unit_id=body.org, description=body.description)
    return render_group(group, [])


@router.post("/groups/{group_id}/members", status_code=204)
def add_group_member(group_id: str, body: GroupMemberIn, caller: Caller, svc: Wired) -> None:
    """Add a device to a group."""
    svc.inventory.add_to_group(caller, group_id, body.device)
