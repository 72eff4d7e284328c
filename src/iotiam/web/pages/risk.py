"""The risk register and the discovered assets, with "accept risk" and "bring under
management" (the actions ``/v1/risk/entries/{id}/accept`` and ``/v1/discovery/adoptions``
take)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from iotiam.api.routes.risk import entry_filter
from iotiam.discovery.models import AssetStatus, is_asset_id
from iotiam.errors import Conflict, InvalidInput, NotFound
from iotiam.risk.models import RiskFactor, Subject
from iotiam.risk.service import MAX_ACCEPT_DAYS, entry_json
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

#: assets one "bring under management" form may carry (the API's own bound)
MAX_ADOPT_FORM = 100


@router.get("/risk")
def register(
    request: Request, session: Signed, svc: Wired,
    factor: str | None = Query(default=None, max_length=48),
    site: str | None = Query(default=None, max_length=256),
    type: str | None = Query(default=None, max_length=128),
    subject: str | None = Query(default=None, max_length=16),
    min_score: str | None = Query(default=None, max_length=12),
    after: str | None = Query(default=None, max_length=200),
    rows: str | None = Query(default=None, max_length=4),
) -> Response:
    """Entries worst first (keyset pages) with the total the filters select."""
    where = entry_filter(factor, site, type, None, subject, min_score)
    items, total, following = svc.risk.entries(session.principal, where, after=after or None,
                                               limit=page_size(rows))
    return render(request, session, "risk.html", items=[entry_json(e) for e in items],
                  total=total, next=following, first_page=not after,
                  factors=[str(f) for f in RiskFactor], subjects=[str(s) for s in Subject],
                  summary=svc.risk.summary(session.principal), max_days=MAX_ACCEPT_DAYS,
                  filters={"factor": factor or "", "site": site or "", "type": type or "",
                           "subject": subject or "", "min_score": min_score or "",
                           "rows": rows or ""})


@router.get("/risk/{entry_id}")
def entry(request: Request, entry_id: str, session: Signed, svc: Wired) -> Response:
    """One entry with its factors, evidence and acceptances."""
    found = entry_json(svc.risk.entry(session.principal, entry_id))
    return render(request, session, "risk_entry.html", entry=found,
                  max_days=MAX_ACCEPT_DAYS)


@router.post("/risk/{entry_id}/accept")
async def accept(request: Request, entry_id: str, session: Signed, svc: Wired) -> Response:
    """Accept one factor for a number of days, with a reason (admins; audited)."""
    form = await checked_form(request, session)
    days = field(form, "days")
    if not days.isdigit() or len(days) > 4:
        raise InvalidInput("days is a whole number")
    svc.risk.accept(session.principal, entry_id, field(form, "factor"), field(form, "reason"),
                    int(days))
    return back(request, session, f"/risk/{quoted(entry_id)}", "accepted")


@router.post("/risk/accept")
async def accept_many(request: Request, session: Signed, svc: Wired) -> Response:
    """Accept one factor on each chosen entry, for a number of days, with one reason:
    ``accept`` per entry, each its own transaction and audit record; the answer shows
    each entry's outcome (one without that factor, or gone, is listed as refused). A bad
    factor, reason or period, or a caller who may not accept, stops at the first entry
    with nothing stored."""
    form = await checked_form(request, session)
    chosen = list(dict.fromkeys(v for v in form.getlist("entry") if isinstance(v, str)))
    if not chosen:
        raise InvalidInput("choose at least one entry")
    if len(chosen) > MAX_ADOPT_FORM:
        raise InvalidInput(f"accept at most {MAX_ADOPT_FORM} entries at a time")
    days = field(form, "days")
    if not days.isdigit() or len(days) > 4:
        raise InvalidInput("days is a whole number")
    factor, reason = field(form, "factor"), field(form, "reason")
    outcomes: list[tuple[str, str | None]] = []
    for entry_id in chosen:
        try:
            svc.risk.accept(session.principal, entry_id, factor, reason, int(days))
        except (NotFound, Conflict) as e:
            outcomes.append((entry_id, e.detail))
        else:
            outcomes.append((entry_id, None))
    return render(request, session, "risk_accepted.html", outcomes=outcomes, factor=factor,
                  days=int(days))


@router.get("/assets")
def assets(
    request: Request, session: Signed, svc: Wired,
    status: str | None = Query(default=None, max_length=32),
    site: str | None = Query(default=None, max_length=256),
    source: str | None = Query(default=None, max_length=64),
    after: str | None = Query(default=None, max_length=64),
    rows: str | None = Query(default=None, max_length=4),
) -> Response:
    """Discovered assets by id (keyset pages) with the total."""
    if after and not is_asset_id(after):
        raise InvalidInput("'after' is not a cursor this console gave")
    limit = page_size(rows)
    caller = session.principal
    items = svc.discovery.assets(caller, status=status or None, site=site or None,
                                 source=source or None, after=after or None, limit=limit)
    total = svc.discovery.count_assets(caller, status=status or None, site=site or None,
                                       source=source or None)
    return render(request, session, "assets.html", items=items, total=total,
                  next=items[-1].id if len(items) == limit else None, first_page=not after,
                  statuses=[str(s) for s in AssetStatus],
                  types=[t.name for t in svc.inventory.list_device_types()],
                  filters={"status": status or "", "site": site or "",
                           "source": source or "", "rows": rows or ""})


@router.get("/assets/{asset_id}")
def asset(request: Request, asset_id: str, session: Signed, svc: Wired) -> Response:
    """One asset: identifiers, sightings, sources."""
    return render(request, session, "asset.html",
                  asset=svc.discovery.asset(session.principal, asset_id),
                  types=[t.name for t in svc.inventory.list_device_types()])


@router.post("/assets/adopt")
async def adopt(request: Request, session: Signed, svc: Wired) -> Response:
    """Bring the chosen assets under management as pending devices of one type, with a
    claim token each when asked; the answer shows each asset's outcome (G12)."""
    form = await checked_form(request, session)
    chosen = [v for v in form.getlist("asset") if isinstance(v, str)]
    if not chosen:
        raise InvalidInput("choose at least one asset")
    if len(chosen) > MAX_ADOPT_FORM:
        raise InvalidInput(f"bring at most {MAX_ADOPT_FORM} assets at a time")
    hours = field(form, "claim_hours", required=False)
    if hours and (not hours.isdigit() or not 1 <= int(hours) <= 720):
        raise InvalidInput("a claim lasts 1 to 720 hours")
    done = svc.adoption.adopt(session.principal, chosen, type_name=field(form, "type"),
                              claim_ttl=timedelta(hours=int(hours)) if hours else None)
    return render(request, session, "adopted.html", done=done)
