"""Findings: filter, page, and move each along its lifecycle (acknowledge, resolve,
false positive), through the calls ``/v1/findings/{id}/ack`` and ``.../resolve`` make;
detection modes per device type with what monitor mode would have done
(``/v1/detection/modes``, ``/v1/detection/would-act``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from iotiam.detection.models import UNKNOWN_TYPE, DetectionMode, FindingState, FindingType
from iotiam.errors import InvalidInput
from iotiam.kernel import Role
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

router = APIRouter(include_in_schema=False)


@router.get("/findings")
def finding_list(
    request: Request, session: Signed, svc: Wired,
    state: str | None = Query(default=None, max_length=32),
    device: str | None = Query(default=None, max_length=128),
    type: str | None = Query(default=None, max_length=64),
    before: str | None = Query(default=None, max_length=40),
    rows: str | None = Query(default=None, max_length=4),
) -> Response:
    """Findings newest first (keyset pages: ``before``)."""
    limit = page_size(rows)
    items = svc.response.list_findings(session.principal, state=state or None,
                                       device_id=device or None, finding_type=type or None,
                                       before_id=before or None, limit=limit)
    return render(request, session, "findings.html", items=items,
                  next=items[-1].id if len(items) == limit else None, first_page=not before,
                  states=[str(s) for s in FindingState], types=[str(t) for t in FindingType],
                  filters={"state": state or "", "device": device or "", "type": type or "",
                           "rows": rows or ""})


@router.get("/findings/{finding_id}")
def finding(request: Request, finding_id: str, session: Signed, svc: Wired) -> Response:
    """One finding: evidence, what was done, its history."""
    stored = svc.response.get_finding(session.principal, finding_id)
    return render(request, session, "finding.html", stored=stored,
                  can_ack=stored.state is FindingState.OPEN,
                  can_resolve=stored.state in (FindingState.OPEN, FindingState.ACKNOWLEDGED))


@router.post("/findings/{finding_id}/ack")
async def acknowledge(request: Request, finding_id: str, session: Signed,
                      svc: Wired) -> Response:
    """open -> acknowledged."""
    form = await checked_form(request, session)
    svc.response.acknowledge(session.principal, finding_id, field(form, "note", required=False))
    return back(request, session, f"/findings/{quoted(finding_id)}", "acknowledged")


@router.post("/findings/{finding_id}/resolve")
async def resolve(request: Request, finding_id: str, session: Signed,
                  svc: Wired) -> Response:
    """-> resolved, or -> false_positive (lifts its mitigations, teaches the baseline)."""
    form = await checked_form(request, session)
    false_positive = field(form, "outcome") == "false_positive"
    svc.response.resolve(session.principal, finding_id, field(form, "note", required=False),
                         false_positive=false_positive)
    return back(request, session, f"/findings/{quoted(finding_id)}",
                "false_positive" if false_positive else "resolved")


#: the periods "what monitor mode would have done" counts over, in days, the default first
WOULD_ACT_DAYS = (7, 1, 30, 90)


@router.get("/detection")
def detection(request: Request, session: Signed, svc: Wired,
              days: str | None = Query(default=None, max_length=3)) -> Response:
    """Each device type's detection mode, and what the playbook would have done to the
    findings raised in monitor mode over the last ``days`` (by finding type and device
    type), beside what it did in enforce mode."""
    period = int(days) if days and days.isdigit() else WOULD_ACT_DAYS[0]
    if period not in WOULD_ACT_DAYS:
        raise InvalidInput(f"days is one of {', '.join(map(str, WOULD_ACT_DAYS))}")
    caller = session.principal
    modes = svc.response.modes()
    types = [(t.name, str(modes.get(t.name, svc.response.default_mode)))
             for t in svc.inventory.list_device_types()]
    types.append((UNKNOWN_TYPE, str(svc.response.unknown_mode())))
    return render(request, session, "detection.html", types=types,
                  would=svc.response.would_act(caller, days=period), days=period,
                  periods=WOULD_ACT_DAYS, modes=[str(m) for m in DetectionMode],
                  may_set=caller.is_global and caller.has_role(Role.ADMIN))


@router.post("/detection/modes")
async def set_mode(request: Request, session: Signed, svc: Wired) -> Response:
    """learn | monitor | enforce for one device type (``PUT /v1/detection/modes/{type}``,
    global admins)."""
    form = await checked_form(request, session)
    svc.response.set_mode(session.principal, field(form, "device_type"), field(form, "mode"))
    return back(request, session, "/detection", "mode_set")
