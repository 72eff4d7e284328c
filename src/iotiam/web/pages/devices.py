"""Inventory and device detail, with the device's actions.

Each action calls the service the REST route calls (named beside it), as the signed-in
person: the service checks the role, the tenancy (G9) and audits the change.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from iotiam.audit.models import AuditRecord
from iotiam.audit.search import AuditQuery
from iotiam.bootstrap import Services
from iotiam.credentials.models import Psk
from iotiam.enrollment.transfer import TRANSFERABLE
from iotiam.errors import Conflict, InvalidInput
from iotiam.inventory.credential_status import (
    credential_status_by_device,
    held_credentials,
)
from iotiam.inventory.models import CredentialStatus, DeviceState
from iotiam.pki.models import CertificateRecord, RevocationReason
from iotiam.tokens.models import OAuthClient
from iotiam.web.console import (
    Signed,
    Wired,
    back,
    checked_form,
    field,
    page_size,
    quoted,
    render,
)
from iotiam.web.pages.enrollment import CLAIM_MINUTES
from iotiam.web.sessions import Session

router = APIRouter(include_in_schema=False)

#: the newest certificates shown on a device page
CERTIFICATES_SHOWN = 50
#: the newest findings and audit records shown on a device page
FINDINGS_SHOWN = 20
AUDIT_SCANNED = 5000


@router.get("/devices")
def device_list(
    request: Request, session: Signed, svc: Wired,
    type: str | None = Query(default=None, max_length=128),
    state: str | None = Query(default=None, max_length=32),
    site: str | None = Query(default=None, max_length=256),
    credential: str | None = Query(default=None, max_length=32),
    after: str | None = Query(default=None, max_length=256),
    rows: str | None = Query(default=None, max_length=4),
) -> Response:
    """Devices in the caller's subtree, by id (keyset pages), with the total (from the
    maintained counts; with a credential status and another filter, not counted)."""
    caller = session.principal
    limit = page_size(rows)
    parsed = _state(state)
    status = _credential(credential)
    following: str | None
    total: int | None
    if status is None:
        items = svc.inventory.list_devices(caller, type_name=type or None, state=parsed,
                                           after_id=after or None, limit=limit,
                                           site=site or None)
        total = svc.inventory.count_devices(caller, type_name=type or None, state=parsed,
                                            site=site or None)
        following = items[-1].id if len(items) == limit else None
    else:
        items, following, total = svc.inventory.devices_by_credential(
            caller, status, rotation_age=svc.settings.rotation_age, type_name=type or None,
            state=parsed, site=site or None, after_id=after or None, limit=limit)
    return render(request, session, "devices.html", items=items, total=total,
                  next=following,
                  filters={"type": type or "", "state": state or "", "site": site or "",
                           "credential": credential or "", "rows": rows or ""},
                  credentials=[str(s) for s in CredentialStatus],
                  states=[str(s) for s in DeviceState],
                  types=[t.name for t in svc.inventory.list_device_types()],
                  first_page=not after)


def _state(raw: str | None) -> DeviceState | None:
    if not raw:
        return None
    try:
        return DeviceState(raw)
    except ValueError as e:
        raise InvalidInput(f"state is one of {', '.join(DeviceState)}") from e


def _credential(raw: str | None) -> CredentialStatus | None:
    if not raw:
        return None
    try:
        return CredentialStatus(raw)
    except ValueError as e:
        raise InvalidInput(f"credential is one of {', '.join(CredentialStatus)}") from e


@router.get("/devices/{device_id}")
def device_detail(request: Request, device_id: str, session: Signed, svc: Wired) -> Response:
    """Identity, credentials, effective policy, trust, findings, mitigations, audit."""
    caller = session.principal
    device = svc.inventory.get_device(caller, device_id)  # 404 outside the subtree (G9)
    certificates = svc.pki.list_certificates(caller, device_id=device.id,
                                             limit=CERTIFICATES_SHOWN)
    psks = svc.psks.for_device(caller, device.id)
    client = svc.oauth.clients.for_device(caller, device.id)
    return render(
        request, session, "device.html", device=device, certificates=certificates,
        psks=psks, client=client, now=svc.clock.now(),
        standing=_standing(svc, device.id, certificates, psks, client),
        permissions=svc.inquiry.permissions(caller, device.id),
        trust=svc.trust.explain(caller, device.id),
        findings=svc.response.list_findings(caller, device_id=device.id,
                                            limit=FINDINGS_SHOWN),
        mitigations=svc.response.mitigations(caller, device.id),
        trail=_trail(svc, session, device.id), reasons=[str(r) for r in RevocationReason],
        can_quarantine=device.state is DeviceState.ACTIVE,
        can_lift=device.state is DeviceState.QUARANTINED,
        can_decommission=device.state is not DeviceState.DECOMMISSIONED,
        can_transfer=device.state in TRANSFERABLE,
        can_claim=device.state is DeviceState.PENDING, claim_minutes=CLAIM_MINUTES)


def _standing(svc: Services, device_id: str, certificates: list[CertificateRecord],
              psks: list[Psk], client: OAuthClient | None) -> CredentialStatus:
    """The device's credential status as the inventory report judges it (its newest
    certificates shown, its PSKs and its OAuth client)."""
    return credential_status_by_device(
        held_credentials(certificates, psks, [client]), now=svc.clock.now(),
        rotation_age=svc.settings.rotation_age,
    ).get(device_id, CredentialStatus.NONE)


def _trail(svc: Services, session: Session, device_id: str) -> list[AuditRecord]:
    """The device's audit records among the newest of the caller's subtree."""
    found = svc.audit.search(session.principal, AuditQuery(device=device_id),
                                    limit=FINDINGS_SHOWN, scan=AUDIT_SCANNED)
    return found.records


@router.post("/devices/{device_id}/certificates/{serial}/revoke")
async def revoke(request: Request, device_id: str, serial: str, session: Signed,
                 svc: Wired) -> Response:
    """Revoke one certificate (``POST /v1/certificates/{serial}/revoke``)."""
    form = await checked_form(request, session)
    record = svc.pki.get_certificate(session.principal, serial)
    if record.device_id != device_id:
        raise InvalidInput(f"certificate {serial[:64]!r} is not one of this device's")
    svc.pki.revoke_certificate(session.principal, serial, field(form, "reason"))
    return back(request, session, f"/devices/{quoted(device_id)}", "revoked")


@router.post("/devices/{device_id}/psk/revoke")
async def revoke_psk(request: Request, device_id: str, session: Signed,
                     svc: Wired) -> Response:
    """Revoke the device's active PSK (``POST /v1/devices/{id}/psk/revoke``)."""
    form = await checked_form(request, session)
    svc.psks.revoke(session.principal, device_id, field(form, "reason"))
    return back(request, session, f"/devices/{quoted(device_id)}", "psk_revoked")


@router.post("/devices/{device_id}/oauth-client/revoke")
async def revoke_client(request: Request, device_id: str, session: Signed,
                        svc: Wired) -> Response:
    """Revoke the device's OAuth client (``POST /v1/oauth/clients/{id}/revoke``)."""
    await checked_form(request, session)
    client = svc.oauth.clients.for_device(session.principal, device_id)
    if client is None:
        raise Conflict(f"device {device_id[:128]!r} has no OAuth client")
    svc.oauth.clients.revoke(session.principal, client.client_id)
    return back(request, session, f"/devices/{quoted(device_id)}", "client_revoked")


@router.post("/devices/{device_id}/transfer")
async def transfer(request: Request, device_id: str, session: Signed,
                   svc: Wired) -> Response:
    """Move the device to another org unit (``POST /v1/devices/{id}/transfer``): its
    credentials are revoked and a claim token for its new owner is shown once."""
    form = await checked_form(request, session)
    if field(form, "confirm", required=False) != device_id:
        raise InvalidInput("type the device id to confirm transferring it")
    moved = svc.transfers.transfer(session.principal, device_id, field(form, "to"))
    return render(request, session, "claim.html", token=moved.claim,
                  plaintext=moved.claim_token, transferred=moved)


@router.post("/devices/{device_id}/quarantine")
async def quarantine(request: Request, device_id: str, session: Signed,
                     svc: Wired) -> Response:
    """Quarantine (``POST /v1/devices/{id}/state`` with ``quarantined``)."""
    form = await checked_form(request, session)
    svc.inventory.set_state(session.principal, device_id, DeviceState.QUARANTINED,
                            field(form, "reason", required=False))
    return back(request, session, f"/devices/{quoted(device_id)}", "quarantined")


@router.post("/devices/{device_id}/lift")
async def lift(request: Request, device_id: str, session: Signed, svc: Wired) -> Response:
    """Lift a quarantine: a playbook's through ``POST /v1/devices/{id}/quarantine/lift``
    (back to the state before it), an admin's by moving the device back to active."""
    form = await checked_form(request, session)
    try:
        svc.response.lift_quarantine(session.principal, device_id)
    except Conflict:  # no playbook quarantine: one an admin set by hand
        svc.inventory.set_state(session.principal, device_id, DeviceState.ACTIVE,
                                field(form, "reason", required=False))
    return back(request, session, f"/devices/{quoted(device_id)}", "lifted")


@router.post("/devices/{device_id}/decommission")
async def decommission(request: Request, device_id: str, session: Signed,
                       svc: Wired) -> Response:
    """Decommission (``POST /v1/devices/{id}/state``): every credential is revoked."""
    form = await checked_form(request, session)
    if field(form, "confirm", required=False) != device_id:
        raise InvalidInput("type the device id to confirm decommissioning it")
    svc.inventory.set_state(session.principal, device_id, DeviceState.DECOMMISSIONED,
                            field(form, "reason", required=False))
    return back(request, session, f"/devices/{quoted(device_id)}", "decommissioned")
