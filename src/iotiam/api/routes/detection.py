"""Events in; findings, detection modes, playbook, trust scores and mitigations out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, StrictBool

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.broker.broker_watch import broker_statistics
from iotiam.detection.ingest import json_lines
from iotiam.detection.models import format_timestamp
from iotiam.errors import InvalidInput
from iotiam.kernel import Role
from iotiam.response.models import Mitigation, StoredFinding
from iotiam.untrusted import load_json

router = APIRouter(prefix="/v1", tags=["detection"], route_class=UntrustedJsonRoute)

_EVENTS_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {
        "application/x-ndjson": {"schema": {"type": "string"},
                                 "example": '{"kind":"publish","ts":"2026-12-05T10:00:00Z",'
                                            '"device_id":"sensor-1","topic":"t/1","size":42}'},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
    }},
}


class NoteIn(Body):
    """A note for a finding's state change."""

    note: str = Field(default="", max_length=2000)


class ResolveIn(NoteIn):
    """Resolve a finding (``false_positive`` also teaches the baseline)."""

    false_positive: StrictBool = False


class ModeIn(Body):
    """A device type's detection mode."""

    mode: str = Field(max_length=16)


def render_finding(stored: StoredFinding) -> dict[str, Any]:
    """A finding as the API shows it."""
    return {**stored.finding.to_json(), "id": stored.id, "state": str(stored.state),
            "mode": str(stored.mode), "org_path": stored.org_path,
            "raised_at": stored.raised_at.isoformat(),
            "updated_at": stored.updated_at.isoformat(),
            "last_seen_at": stored.last_seen_at.isoformat() if stored.last_seen_at else None,
            "repeats": stored.repeats, "actions": list(stored.actions), "note": stored.note,
            "updated_by": stored.updated_by, "subject": stored.finding.subject,
            # the latest event of its episode so far (``at`` is the first)
            "last_event_at": format_timestamp(stored.episode_end)}


def render_mitigation(m: Mitigation) -> dict[str, Any]:
    """A mitigation as the API shows it."""
    return {"id": m.id, "finding_id": m.finding_id, "device_id": m.device_id,
            "action": str(m.action),
            "previous_state": str(m.previous_state) if m.previous_state else None,
            "applied_at": m.applied_at.isoformat(),
            "lifted_at": m.lifted_at.isoformat() if m.lifted_at else None,
            "lifted_by": m.lifted_by}


def _records(body: bytes, media: str, max_bytes: int) -> list[tuple[int, object]]:
    if media in ("application/x-ndjson", "application/jsonl", "application/json-lines"):
        return list(json_lines(body))
    if media == "application/json":
        items = load_json(body, what="the body", max_bytes=max_bytes)
        if not isinstance(items, list):
            raise InvalidInput("send a JSON array of events (or JSON lines as "
                               "application/x-ndjson)")
        return list(enumerate(items, start=1))
    raise InvalidInput(f"content type {media[:100]!r} is not accepted: send "
                       "application/x-ndjson (JSON lines) or application/json (an array)")


@router.post("/events", openapi_extra=_EVENTS_BODY)
async def post_events(request: Request, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Ingest events in bulk: bad ones are reported (and counted), the rest scored."""
    draft = AuditDraft(tag=AuditTag.EVENTS_REFUSED, actor=caller.name,
                       org_path=caller.org_path, subject="events")
    with svc.audit.refusals(draft):
        caller.require(Role.OPERATOR, "sending events")
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        records = _records(await request.body(), media, svc.settings.max_body_bytes)
        if not records:
            raise InvalidInput("no events in the body")
    # recorded first: with an event stream, its findings are raised (and linked) later
    batch = await run_in_threadpool(svc.response.open_batch, caller, len(records))
    try:
        report = await run_in_threadpool(svc.ingest.ingest_records, records,
                                         org_path=caller.org_path, batch=batch.id)
    except BaseException:  # nothing of a refused upload is kept (G10)
        await run_in_threadpool(svc.response.discard_batch, batch)
        raise
    return {**report.to_json(), "batch": batch.id,
            "findings_url": f"/v1/events/batches/{batch.id}/findings"}


@router.get("/events/batches/{batch_id}/findings")
def batch_findings(batch_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """The findings an upload's events raised so far (new, repeated or escalated ones;
    with an event stream they appear as its workers score the events)."""
    batch, found = svc.response.batch_findings(caller, batch_id)
    return {"batch": batch.id, "created_at": batch.created_at.isoformat(),
            "events": batch.events, "items": [render_finding(f) for f in found]}


@router.get("/findings")
def list_findings(
    caller: Caller, svc: Wired,
    state: str | None = Query(default=None, max_length=32),
    device: str | None = Query(default=None, max_length=128),
    finding_type: str | None = Query(default=None, alias="type", max_length=64),
    before: str | None = Query(default=None, max_length=40),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict[str, Any]:
    """Findings in the caller's subtree, newest first (``before`` pages)."""
    items = svc.response.list_findings(caller, state=state, device_id=device,
                                       finding_type=finding_type, before_id=before, limit=limit)
    return {"items": [render_finding(f) for f in items],
            "next": items[-1].id if len(items) == limit else None}


@router.get("/findings/{finding_id}")
def show_finding(finding_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """One finding."""
    return render_finding(svc.response.get_finding(caller, finding_id))


@router.post("/findings/{finding_id}/ack")
def ack_finding(finding_id: str, body: NoteIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """open -> acknowledged."""
    return render_finding(svc.response.acknowledge(caller, finding_id, body.note))


@router.post("/findings/{finding_id}/resolve")
def resolve_finding(finding_id: str, body: ResolveIn, caller: Caller,
                    svc: Wired) -> dict[str, Any]:
    """-> resolved, or -> false_positive (lifts its quarantine, teaches the baseline)."""
    return render_finding(svc.response.resolve(caller, finding_id, body.note,
                                               false_positive=body.false_positive))


@router.get("/detection/modes")
def list_modes(caller: Caller, svc: Wired) -> dict[str, Any]:
    """The detection mode of every device type."""
    modes = svc.response.modes()
    return {"default": str(svc.response.default_mode),
            "unknown": str(svc.response.unknown_mode()), "items": [
        {"device_type": t.name, "mode": str(modes.get(t.name, svc.response.default_mode))}
        for t in svc.inventory.list_device_types()]}


@router.put("/detection/modes/{device_type}")
def set_mode(device_type: str, body: ModeIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """learn | monitor | enforce for one device type (global admins); ``_unknown`` is the
    mode of events with no device type (unknown clients' auth failures)."""
    mode = svc.response.set_mode(caller, device_type, body.mode)
    return {"device_type": device_type, "mode": str(mode)}


@router.get("/detection/playbook")
def get_playbook(caller: Caller, svc: Wired) -> dict[str, Any]:
    """The playbook in force."""
    return svc.response.playbook().to_json()


@router.put("/detection/playbook")
async def put_playbook(request: Request, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Replace the playbook: ``{"rules": [{finding_type, min_severity, actions}]}``."""
    document = load_json(await request.body(), what="the playbook",
                         max_bytes=svc.settings.max_body_bytes)
    return (await run_in_threadpool(svc.response.set_playbook, caller, document)).to_json()


@router.get("/detection/would-act")
def would_act(caller: Caller, svc: Wired,
              days: int = Query(default=7, ge=1, le=90)) -> dict[str, Any]:
    """How often the playbook would have acted on the findings raised in monitor mode in
    the last ``days``, by finding type and device type (and what it did in enforce)."""
    return svc.response.would_act(caller, days=days)


@router.get("/detection/stats")
def detection_stats(caller: Caller, svc: Wired) -> dict[str, Any]:
    """What the pipeline has seen in this process (any role may read it)."""
    stats: dict[str, Any] = {
        "events_seen": svc.ingest.events_seen, "events_rejected": svc.ingest.events_rejected,
        "alerts_sent": svc.alerts.sent, "alerts_failed": svc.alerts.failed,
        "alerts_dropped": svc.alerts.dropped,
        "alerts_undelivered": dict(svc.alerts.undelivered)}
    # only the process that drives the data plane watches the broker
    broker = broker_statistics()
    if broker is not None:
        stats["broker"] = broker
    return stats


@router.get("/devices/{device_id}/trust")
def device_trust(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """The device's trust score, computed now, with the factors that moved it."""
    return svc.trust.explain(caller, device_id).to_json()


@router.get("/devices/{device_id}/mitigations")
def device_mitigations(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Mitigations in force on the device."""
    return {"items": [render_mitigation(m) for m in svc.response.mitigations(caller, device_id)]}


@router.post("/devices/{device_id}/quarantine/lift")
def lift_quarantine(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Undo a quarantine a playbook applied: the device returns to its previous state."""
    lifted = svc.response.lift_quarantine(caller, device_id)
    return {"device_id": device_id, "lifted": [render_mitigation(m) for m in lifted]}
