"""Policies: documents (guardrails among them) with their attachments and lint findings,
the decision simulator and "who can" queries.

Each page calls what the REST routes in ``api/routes/policies.py`` call, as the
signed-in person: ``PolicyAdministration`` for documents and attachments, and
``PolicyInquiry`` for the simulator (``POST /v1/decisions``) and ``who can``
(``GET /v1/policies/who-can``). The simulator only reads, so it is a GET form.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from iotiam.errors import InvalidInput
from iotiam.policy.actions import MQTT_ACTIONS, PUBLISH
from iotiam.policy.models import AttachmentTarget, TargetKind
from iotiam.policy.service import PolicyOverview
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

#: the list's orders: the key of a query value, and whether it runs backwards
SORTS = {"name": "name", "newest": "created", "owner": "owner"}
#: what the simulator and "who can" offer; any concrete action may be typed
ACTIONS = (*MQTT_ACTIONS, "http:GET", "http:POST")
#: devices a "who can" page scans
WHO_CAN_SCAN = 500


@router.get("/policies")
def policy_list(
    request: Request, session: Signed, svc: Wired,
    name: str | None = Query(default=None, max_length=128),
    kind: str | None = Query(default=None, max_length=16),
    sort: str | None = Query(default=None, max_length=16),
    offset: int = Query(default=0, ge=0, le=1_000_000),
    rows: str | None = Query(default=None, max_length=4),
) -> Response:
    """Policies visible to the caller (owned in its subtree or above), filtered and
    sorted, a page at a time with the total."""
    limit = page_size(rows)
    matching = _filtered(svc.policies.list_policies(session.principal), name, kind)
    ordered = _sorted(matching, sort)
    return render(request, session, "policies.html", items=ordered[offset:offset + limit],
                  total=len(matching), offset=offset, limit=limit,
                  sorts=list(SORTS), kinds=["policy", "guardrail"],
                  filters={"name": name or "", "kind": kind or "", "sort": sort or "",
                           "rows": rows or ""})


def _filtered(items: list[PolicyOverview], name: str | None, kind: str | None
              ) -> list[PolicyOverview]:
    if kind not in (None, "", "policy", "guardrail"):
        raise InvalidInput("kind is 'policy' or 'guardrail'")
    wanted = (name or "").lower()
    return [o for o in items if wanted in o.stored.document.name.lower()
            and (not kind or o.stored.document.guardrail == (kind == "guardrail"))]


def _sorted(items: list[PolicyOverview], sort: str | None) -> list[PolicyOverview]:
    chosen = sort or "name"
    if chosen not in SORTS:
        raise InvalidInput(f"sort is one of {', '.join(SORTS)}")
    if chosen == "newest":
        return sorted(items, key=lambda o: o.stored.created_at, reverse=True)
    if chosen == "owner":
        return sorted(items, key=lambda o: (o.stored.owner_path, o.stored.document.name))
    return sorted(items, key=lambda o: o.stored.document.name)


@router.get("/policies/simulate")
def simulate(
    request: Request, session: Signed, svc: Wired,
    device: str | None = Query(default=None, max_length=128),
    action: str = Query(default=PUBLISH, max_length=64),
    topic: str | None = Query(default=None, max_length=4096),
    source_ip: str | None = Query(default=None, max_length=64),
    at: str | None = Query(default=None, max_length=32),
) -> Response:
    """"Can device X do Y on topic Z": the decision point's answer and its explanation
    (``POST /v1/decisions``; nothing changes)."""
    decision = None
    if device and topic:
        decision = svc.inquiry.decide(session.principal, device, action, topic,
                                      source_ip=source_ip or None, at=_instant(at))
    return render(request, session, "policy_simulate.html", decision=decision,
                  actions=ACTIONS, asked={"device": device or "", "action": action,
                                          "topic": topic or "", "source_ip": source_ip or "",
                                          "at": at or ""})


def _instant(raw: str | None) -> datetime | None:
    """A UTC time from the form (``2026-12-07T10:00``), or None for now."""
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError as e:
        raise InvalidInput("'at' is a time like 2026-12-07T10:00 (UTC)") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("/policies/who-can")
def who_can(
    request: Request, session: Signed, svc: Wired,
    action: str = Query(default=PUBLISH, max_length=64),
    topic: str | None = Query(default=None, max_length=4096),
    after: str | None = Query(default=None, max_length=128),
) -> Response:
    """Devices of the caller's subtree that may do ``action`` on ``topic`` now, a page
    of scanned devices at a time (``GET /v1/policies/who-can``)."""
    page = None
    if topic:
        page = svc.inquiry.who_can(session.principal, action, topic, after=after or None,
                                   limit=WHO_CAN_SCAN)
    return render(request, session, "policy_who_can.html", page=page, actions=ACTIONS,
                  asked={"action": action, "topic": topic or ""}, first_page=not after)


@router.get("/policies/{name}")
def policy_detail(
    request: Request, name: str, session: Signed, svc: Wired,
    version: int | None = Query(default=None, ge=1, le=2**31 - 1),
) -> Response:
    """One version: its source, statements' lint findings, versions and attachments."""
    overview = svc.policies.describe(session.principal, name, version)
    return render(request, session, "policy.html", overview=overview,
                  document=overview.stored.document,
                  findings=svc.policies.lint(overview.stored.source),
                  kinds=[str(k) for k in TargetKind])


@router.post("/policies/{name}/attach")
async def attach(request: Request, name: str, session: Signed, svc: Wired) -> Response:
    """Attach to a target (``POST /v1/policies/{name}/attachments``); a guardrail above
    that denies what it allows refuses it."""
    form = await checked_form(request, session)
    svc.policies.attach(session.principal, name, _target(field(form, "kind"),
                                                         field(form, "id")))
    return back(request, session, f"/policies/{quoted(name)}", "attached")


@router.post("/policies/{name}/detach")
async def detach(request: Request, name: str, session: Signed, svc: Wired) -> Response:
    """Remove an attachment (``DELETE /v1/policies/{name}/attachments``)."""
    form = await checked_form(request, session)
    svc.policies.detach(session.principal, name, _target(field(form, "kind"),
                                                         field(form, "id")))
    return back(request, session, f"/policies/{quoted(name)}", "detached")


def _target(kind: str, target_id: str) -> AttachmentTarget:
    try:
        return AttachmentTarget(TargetKind(kind), target_id[:128])
    except ValueError as e:
        raise InvalidInput(f"kind is one of {', '.join(TargetKind)}") from e
