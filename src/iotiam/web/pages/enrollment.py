"""Enrollment: the approval queue of held first contacts (approve, reject), the
manufacturers with their manifests, and claim tokens.

Each action calls what the REST route beside it calls, as the signed-in person:
``EnrollmentQueue`` (``/v1/enrollment-requests``), ``Manufacturers``
(``/v1/manufacturers``) and ``Enrollment.create_claim`` (``POST /v1/devices/{id}/claims``).
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from iotiam.enrollment.models import EnrollmentRequest, HoldReason, RequestStatus
from iotiam.errors import InvalidInput
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

#: the queue is read this many requests at a time (the service's bound)
QUEUE_READ = 1000
SORTS = ("oldest", "newest", "device")
#: a claim's lifetime choices in minutes, the default first
CLAIM_MINUTES = (10, 60, 1440, 10080)
#: manifest rows one form may carry (the service's bound per request)
MANIFEST_ROWS = 5000


@router.get("/enrollment")
def queue(
    request: Request, session: Signed, svc: Wired,
    status: str | None = Query(default=None, max_length=16),
    reason: str | None = Query(default=None, max_length=32),
    device: str | None = Query(default=None, max_length=128),
    sort: str | None = Query(default=None, max_length=16),
    offset: int = Query(default=0, ge=0, le=QUEUE_READ),
    rows: str | None = Query(default=None, max_length=4),
) -> Response:
    """Held requests (default: pending) filtered and sorted a page at a time, with the
    manufacturers of the caller's subtree and the claim form."""
    limit = page_size(rows)
    read = svc.enrollment_queue.list_requests(session.principal, status=_status(status),
                                              limit=QUEUE_READ)
    matching = _sorted([r for r in read if (not reason or str(r.reason) == reason)
                        and (not device or device in r.device_id)], sort)
    return render(request, session, "enrollment.html", items=matching[offset:offset + limit],
                  total=len(matching), capped=len(read) == QUEUE_READ, offset=offset,
                  limit=limit, statuses=[*map(str, RequestStatus), "all"],
                  reasons=[str(r) for r in HoldReason], sorts=SORTS,
                  makers=svc.manufacturers.list_manufacturers(session.principal),
                  claim_minutes=CLAIM_MINUTES,
                  filters={"status": status or "", "reason": reason or "",
                           "device": device or "", "sort": sort or "", "rows": rows or ""})


def _status(raw: str | None) -> RequestStatus | None:
    if raw == "all":
        return None
    try:
        return RequestStatus(raw or RequestStatus.PENDING)
    except ValueError as e:
        raise InvalidInput(f"status is one of {', '.join(RequestStatus)} or all") from e


def _sorted(items: list[EnrollmentRequest], sort: str | None) -> list[EnrollmentRequest]:
    if sort not in (None, "", *SORTS):
        raise InvalidInput(f"sort is one of {', '.join(SORTS)}")
    if sort == "newest":
        return sorted(items, key=lambda r: r.created_at, reverse=True)
    if sort == "device":
        return sorted(items, key=lambda r: r.device_id)
    return sorted(items, key=lambda r: r.created_at)


@router.get("/enrollment/requests/{request_id}")
def request_detail(request: Request, request_id: str, session: Signed,
                   svc: Wired) -> Response:
    """One held request: what the device presented, why it was held, its CSR."""
    held = svc.enrollment_queue.get(session.principal, request_id)
    return render(request, session, "enrollment_request.html", held=held,
                  pending=held.status is RequestStatus.PENDING,
                  types=[t.name for t in svc.inventory.list_device_types()])


@router.post("/enrollment/requests/{request_id}/approve")
async def approve(request: Request, request_id: str, session: Signed,
                  svc: Wired) -> Response:
    """Certify the request's key (``POST /v1/enrollment-requests/{id}/approve``)."""
    form = await checked_form(request, session)
    svc.enrollment_queue.approve(session.principal, request_id,
                                 type_name=field(form, "type", required=False) or None,
                                 org_unit_id=field(form, "org", required=False) or None)
    return back(request, session, f"/enrollment/requests/{quoted(request_id)}", "approved")


@router.post("/enrollment/requests/{request_id}/reject")
async def reject(request: Request, request_id: str, session: Signed,
                 svc: Wired) -> Response:
    """Refuse it for good (``POST /v1/enrollment-requests/{id}/reject``)."""
    form = await checked_form(request, session)
    svc.enrollment_queue.reject(session.principal, request_id,
                                field(form, "reason", required=False))
    return back(request, session, f"/enrollment/requests/{quoted(request_id)}", "rejected")


@router.get("/enrollment/manufacturers/{name}")
def manufacturer(request: Request, name: str, session: Signed, svc: Wired) -> Response:
    """One manufacturer: its CA, where its devices land, its manifest's size."""
    maker, size = svc.manufacturers.get(session.principal, name)
    return render(request, session, "manufacturer.html", maker=maker, size=size,
                  results=None)


@router.post("/enrollment/manufacturers/{name}/manifest")
async def import_manifest(request: Request, name: str, session: Signed,
                          svc: Wired) -> Response:
    """Add serials to the manifest (``POST /v1/manufacturers/{name}/manifest``): one a
    line, optionally ``serial,sha256-of-the-IDevID-key``; each line's outcome is shown."""
    form = await checked_form(request, session)
    lines = form.get("serials")  # longer than a field: bounded here
    if not isinstance(lines, str) or len(lines) > MANIFEST_ROWS * 200:
        raise InvalidInput("paste the serials, one a line")
    rows = [(number, _manifest_row(line)) for number, line
            in enumerate(lines.splitlines(), start=1) if line.strip()][:MANIFEST_ROWS + 1]
    results = svc.manufacturers.import_manifest(session.principal, name, rows)
    maker, size = svc.manufacturers.get(session.principal, name)
    return render(request, session, "manufacturer.html", maker=maker, size=size,
                  results=results)


def _manifest_row(line: str) -> dict[str, str]:
    serial, _, key_hash = line.strip().partition(",")
    row = {"serial": serial.strip()}
    if key_hash.strip():
        row["public_key_sha256"] = key_hash.strip()
    return row


@router.post("/enrollment/claims")
async def issue_claim(request: Request, session: Signed, svc: Wired) -> Response:
    """A one-time claim token for a device's first enrollment (``POST
    /v1/devices/{id}/claims``), shown once on the page this answers."""
    form = await checked_form(request, session)
    minutes = field(form, "minutes", required=False) or str(CLAIM_MINUTES[0])
    if not minutes.isdigit() or int(minutes) not in CLAIM_MINUTES:
        raise InvalidInput(f"a claim lasts one of {', '.join(map(str, CLAIM_MINUTES))} minutes")
    token, plaintext = svc.enrollment.create_claim(session.principal, field(form, "device"),
                                                   timedelta(minutes=int(minutes)))
    return render(request, session, "claim.html", token=token, plaintext=plaintext)
