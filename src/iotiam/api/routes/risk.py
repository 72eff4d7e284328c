"""The identity risk register: entries (filtered, paged, scored), one entry, summary,
trend, export (streamed CSV or JSON), rebuild, and accepting a risk for a while."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import Field, StrictInt

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.errors import InvalidInput
from iotiam.risk.models import EntryFilter, RiskFactor, Subject
from iotiam.risk.service import MAX_ACCEPT_DAYS, entry_json

router = APIRouter(prefix="/v1/risk", tags=["risk"], route_class=UntrustedJsonRoute)

_MEDIA = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


class AcceptIn(Body):
    """Accept one factor of an entry until ``expires_in_days`` from now."""

    factor: str = Field(max_length=48)
    reason: str = Field(max_length=500)
    expires_in_days: StrictInt = Field(ge=1, le=MAX_ACCEPT_DAYS)


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_filter(factor: str | None, site: str | None, type_name: str | None, org: str | None,
                 subject: str | None, min_score: str | None) -> EntryFilter:
    """The register's filter from query text (the console reads the same parameters)."""
    score: int | None = None
    if min_score not in (None, ""):
        if not min_score.isdigit() or len(min_score) > 9:
            raise InvalidInput("min_score must be a non-negative whole number")
        score = int(min_score)
    return EntryFilter(
        factor=RiskFactor.parse(factor) if factor else None, site=site or None,
        type=type_name or None, org_path=org or None,
        subject=Subject.parse(subject) if subject else None, min_score=score)


@router.get("/entries")
def list_entries(
    caller: Caller, svc: Wired,
    factor: str | None = Query(default=None, max_length=48),
    site: str | None = Query(default=None, max_length=256),
    type_name: str | None = Query(default=None, alias="type", max_length=128),
    org: str | None = Query(default=None, max_length=2048),
    subject: str | None = Query(default=None, max_length=16),
    min_score: str | None = Query(default=None, max_length=12),
    after: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """Entries in the caller's subtree, worst first; ``next`` pages."""
    where = entry_filter(factor, site, type_name, org, subject, min_score)
    items, total, following = svc.risk.entries(caller, where, after=after, limit=limit)
    return {"items": [entry_json(e) for e in items], "total": total, "next": following}


@router.get("/entries/{entry_id}")
def show_entry(entry_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One entry (404 outside the caller's subtree)."""
    return entry_json(svc.risk.entry(caller, entry_id))


@router.post("/entries/{entry_id}/accept")
def accept_risk(entry_id: str, body: AcceptIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Hide one factor of the entry until the acceptance expires (admins; audited)."""
    return entry_json(svc.risk.accept(caller, entry_id, body.factor, body.reason,
                                      body.expires_in_days))


@router.get("/summary")
def summary(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Counts per factor and severity, and managed / unmanaged / dormant / zombie."""
    s = svc.risk.summary(caller)
    return {"total": s.total, "by_factor": s.by_factor, "by_severity": s.by_severity,
            "managed": s.managed, "unmanaged": s.unmanaged, "dormant": s.dormant,
            "zombie": s.zombie, "rebuilt_at": _iso(s.rebuilt_at)}


@router.get("/trend")
def trend(caller: Caller, svc: Wired,
          limit: int = Query(default=90, ge=1, le=1000)) -> dict[str, Any]:
    """Counts per factor of the last rebuilds, oldest first."""
    return {"items": [{"rebuild": p.rebuild, "at": _iso(p.at), "counts": p.counts}
                      for p in svc.risk.trend(caller, limit)]}


@router.get("/export", response_class=StreamingResponse, responses={200: {
    "description": "every entry the caller may see: a CSV table or a JSON array",
    "content": {"text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "array",
                                                 "items": {"type": "object"}}}}}})
def export(
    caller: Caller, svc: Wired,
    export_format: str = Query(default="json", alias="format", max_length=8),
    factor: str | None = Query(default=None, max_length=48),
    site: str | None = Query(default=None, max_length=256),
    type_name: str | None = Query(default=None, alias="type", max_length=128),
    org: str | None = Query(default=None, max_length=2048),
    subject: str | None = Query(default=None, max_length=16),
    min_score: str | None = Query(default=None, max_length=12),
) -> StreamingResponse:
    """The caller's register as CSV or JSON, streamed."""
    where = entry_filter(factor, site, type_name, org, subject, min_score)
    chunks = svc.risk.export(caller, export_format, where)  # refuses a bad format here
    return StreamingResponse(chunks, media_type=_MEDIA[export_format], headers={
        "content-disposition": f'attachment; filename="risk-register.{export_format}"'})


@router.post("/rebuild")
async def rebuild(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Judge every identity again now (root admins)."""
    report = await run_in_threadpool(svc.risk.rebuild, caller)
    return {"rebuild": report.rebuild, "entries": report.entries, "removed": report.removed,
            "started_at": _iso(report.started_at), "finished_at": _iso(report.finished_at),
            "counts": report.counts}
