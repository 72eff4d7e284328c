"""Admin tokens, audit verification and export, whoami."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.responses import AuditPage, TokenList, TokenOut, WhoamiOut
from iotiam.api.schemas import MAX_JSON_INT, TokenIn, render_audit, render_token
from iotiam.audit.export import checkpoint_to_jsonl, checkpoint_to_syslog, to_jsonl, to_syslog
from iotiam.audit.models import StoredCheckpoint
from iotiam.audit.service import AuditTrail
from iotiam.errors import Forbidden, NotFound
from iotiam.kernel import Principal

router = APIRouter(prefix="/v1", tags=["admin"], route_class=UntrustedJsonRoute)


@router.get("/whoami", response_model=WhoamiOut)
def whoami(caller: Caller) -> dict[str, Any]:
    """Who the token belongs to and what it may do."""
    return {"name": caller.name, "role": str(caller.role), "org": caller.org_unit_id,
            "org_path": caller.org_path}


@router.post("/tokens", status_code=201, response_model=TokenOut)
def create_token(body: TokenIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Create a token with at most the caller's role over at most its subtree."""
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    token, plaintext = svc.admin_tokens.create(caller, name=body.name, role=body.role,
                                         org_unit_id=body.org, ttl=ttl)
    return {**render_token(token), "token": plaintext}


@router.get("/tokens", response_model=TokenList)
def list_tokens(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Tokens in the caller's subtree."""
    return {"items": [render_token(t) for t in svc.admin_tokens.list(caller)]}


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, caller: Caller, svc: Wired) -> None:
    """Revoke a token."""
    svc.admin_tokens.revoke(caller, token_id)


@router.get("/audit/verify")
def verify_audit(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Verify the whole hash chain (root-scoped admins)."""
    report = svc.audit.verify(caller)
    return {"ok": report.ok, "records": report.records, "head_seq": report.head_seq,
            "problem": report.problem, "first_bad_seq": report.first_bad_seq,
            "checkpoint": {"size": report.checkpoint_size,
                           "at": report.checkpoint_at.isoformat()}
            if report.checkpoint_at else None}


#: bounds of a record number or tree size in a query (the API's one integer bound)
_MAX_SEQ = MAX_JSON_INT


@router.get("/audit/checkpoint")
def latest_checkpoint(caller: Caller, svc: Wired) -> dict[str, Any]:
    """The latest signed checkpoint (C2SP tlog-checkpoint note)."""
    latest = svc.audit.latest_checkpoint(caller)
    if latest is None:
        raise NotFound("no audit checkpoint was written yet")
    return {"note": latest.note, "size": latest.size, "at": latest.at.isoformat()}


@router.get("/audit/proofs/inclusion")
def prove_inclusion(
    caller: Caller, svc: Wired,
    seq: int = Query(ge=1, le=_MAX_SEQ),
    size: int | None = Query(default=None, ge=1, le=_MAX_SEQ),
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of record ``seq`` in a signed checkpoint (default: latest)."""
    return svc.audit.prove_inclusion(caller, seq, size).bundle()


@router.get("/audit/proofs/consistency")
def prove_consistency(
    caller: Caller, svc: Wired,
    old: int = Query(ge=1, le=_MAX_SEQ),
    new: int | None = Query(default=None, ge=1, le=_MAX_SEQ),
) -> dict[str, Any]:
    """RFC 9162 consistency proof between two signed checkpoints (default: the latest)."""
    return svc.audit.prove_consistency(caller, old, new).bundle()


@router.get("/audit/records", response_model=AuditPage)
def audit_records(
    caller: Caller,
    svc: Wired,
    after: int = Query(default=0, ge=0, le=MAX_JSON_INT),
    limit: int = Query(default=100, ge=1, le=5000),
) -> dict[str, Any]:
    """Audit records of the caller's subtree in sequence order."""
    records = svc.audit.export(caller, after_seq=after, limit=limit)
    return {"items": [render_audit(r) for r in records],
            "next": records[-1].seq if len(records) == limit else None}


@router.get("/audit/export", response_class=StreamingResponse, responses={200: {
    "description": "one record a line: JSON lines (format=jsonl) or RFC 5424 syslog",
    "content": {"application/jsonl": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}}}}})
def export_audit(
    caller: Caller,
    svc: Wired,
    format: Literal["jsonl", "syslog"] = "jsonl",
) -> StreamingResponse:
    """Every visible record as JSON lines or RFC 5424 syslog lines."""
    render = to_jsonl if format == "jsonl" else to_syslog

    def lines() -> Iterator[str]:
        for record in svc.audit.iter_all(caller):
            yield render(record) + "\n"
        # the SIEM keeps the signed tree head too, so it can hold the records to it
        checkpoint = _visible_checkpoint(svc.audit, caller)
        if checkpoint is not None:
            yield (checkpoint_to_jsonl(checkpoint.note, checkpoint.at, checkpoint.size)
                   if format == "jsonl" else
                   checkpoint_to_syslog(checkpoint.note, at=checkpoint.at)) + "\n"

    media = "application/jsonl" if format == "jsonl" else "text/plain; charset=utf-8"
    return StreamingResponse(lines(), media_type=media)


def _visible_checkpoint(audit: AuditTrail, caller: Principal) -> StoredCheckpoint | None:
    """The latest checkpoint for root admins (it counts every tenant's records, G9)."""
    try:
        return audit.latest_checkpoint(caller)
    except Forbidden:
        return None
