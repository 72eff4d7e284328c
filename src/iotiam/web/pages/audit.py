"""Audit: search by actor, tag, device and time, newest first; the chain's verification
(``GET /v1/audit/verify``) on demand; the export (``GET /v1/audit/export``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from iotiam.audit.export import checkpoint_to_jsonl, to_jsonl
from iotiam.audit.models import AuditTag
from iotiam.audit.search import AuditQuery
from iotiam.errors import InvalidInput
from iotiam.kernel import Role
from iotiam.web.console import Signed, Wired, page_size, render

router = APIRouter(include_in_schema=False)


def _moment(raw: str | None, name: str) -> datetime | None:
    """A ``datetime-local`` field's value (read as UTC) or ISO 8601 with a zone."""
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as e:
        raise InvalidInput(f"{name} is a date and time, e.g. 2026-12-07T10:00") from e
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@router.get("/audit")
def audit_search(
    request: Request, session: Signed, svc: Wired,
    actor: str | None = Query(default=None, max_length=200),
    tag: str | None = Query(default=None, max_length=80),
    device: str | None = Query(default=None, max_length=128),
    since: str | None = Query(default=None, max_length=40),
    until: str | None = Query(default=None, max_length=40),
    before: int | None = Query(default=None, ge=1, le=2**53),
    rows: str | None = Query(default=None, max_length=4),
    verify: str | None = Query(default=None, max_length=3),
) -> Response:
    """Records of the caller's subtree that match, a bounded window at a time."""
    query = AuditQuery(actor=actor or None, tag=tag or None, device=device or None,
                       since=_moment(since, "since"), until=_moment(until, "until"))
    found = svc.audit.search(session.principal, query, before_seq=before,
                             limit=page_size(rows))
    caller = session.principal
    may_verify = caller.is_global and caller.has_role(Role.ADMIN)
    report = svc.audit.verify(caller) if verify == "yes" and may_verify else None
    return render(request, session, "audit.html", found=found, report=report,
                  request_before=before,
                  may_verify=may_verify, tags=[str(t) for t in AuditTag],
                  checkpoint=svc.audit.latest_checkpoint(caller) if may_verify else None,
                  filters={"actor": actor or "", "tag": tag or "", "device": device or "",
                           "since": since or "", "until": until or "", "rows": rows or ""})


@router.get("/audit/export")
def audit_export(session: Signed, svc: Wired) -> Response:
    """Every record of the caller's subtree as JSON lines, oldest first, as ``GET
    /v1/audit/export`` answers (root admins also get the last signed checkpoint's
    line), downloaded as one file."""
    caller = session.principal
    may_see_checkpoint = caller.is_global and caller.has_role(Role.ADMIN)

    def lines() -> Iterator[str]:
        for record in svc.audit.iter_all(caller):
            yield to_jsonl(record) + "\n"
        checkpoint = svc.audit.latest_checkpoint(caller) if may_see_checkpoint else None
        if checkpoint is not None:
            yield checkpoint_to_jsonl(checkpoint.note, checkpoint.at, checkpoint.size) + "\n"

    stamp = svc.clock.now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(lines(), media_type="application/jsonl", headers={
        "Content-Disposition": f'attachment; filename="iotiam-audit-{stamp}.jsonl"'})
