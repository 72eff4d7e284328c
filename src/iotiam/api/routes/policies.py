"""Policies, attachments, sites, decisions and the questions about them.

The broker authorization hook (``POST /v1/hooks/emqx/authz``) is answered in front of
the framework, in ``api/emqx_hook.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.policy_schemas import (
    AttachmentIn,
    DecisionIn,
    SiteIn,
    render_attachment,
    render_decision,
    render_diff,
    render_finding,
    render_grant,
    render_overview,
    render_permissions,
    render_ref,
    render_site,
    render_write,
)
from iotiam.api.responses import PolicyWriteOut, SiteOut
from iotiam.errors import InvalidInput
from iotiam.policy.actions import PUBLISH
from iotiam.policy.models import AttachmentTarget, PolicySyntaxError, TargetKind
from iotiam.policy.parsing import parse_policy

router = APIRouter(prefix="/v1", tags=["policies"], route_class=UntrustedJsonRoute)

#: request media types a policy document may come as, and how each is parsed
POLICY_MEDIA = {
    "application/yaml": "yaml", "application/x-yaml": "yaml", "text/yaml": "yaml",
    "text/x-yaml": "yaml", "application/json": "json", "text/plain": "auto", "": "auto",
}
#: policy versions are 32-bit (as ``parse_policy`` allows)
MAX_VERSION = 2**31 - 1
#: path segments under /v1/policies/ that are routes, so no policy may take their name
RESERVED_NAMES = frozenset({"who-can", "lint"})
_DOCUMENT_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {
        "application/yaml": {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "object"}},
        "text/plain": {"schema": {"type": "string"}},
    }},
}


async def _document(request: Request) -> tuple[bytes, str]:
    """The policy text of a request and the format its content type names."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in POLICY_MEDIA:
        raise InvalidInput(f"content type {media[:100]!r} is not a policy document: send "
                           "application/yaml, application/json or text/plain")
    body = await request.body()
    if not body.strip():
        raise InvalidInput("the request body is empty: send the policy document")
    return body, POLICY_MEDIA[media]


def _org_path(svc: Wired, caller: Caller, unit_id: str | None) -> str | None:
    """The path of a visible org unit (404 for another tenant's, G9)."""
    if unit_id is None:
        return None
    return svc.inventory.get_org_unit(caller, unit_id).path


# -- documents -------------------------------------------------------------------------


@router.put("/policies", status_code=201, openapi_extra=_DOCUMENT_BODY,
            responses={201: {"model": PolicyWriteOut}})
async def put_policy(
    request: Request, caller: Caller, svc: Wired,
    owner: Annotated[str | None, Query(max_length=128,
                                       description="Owning org unit (default: yours)")] = None,
) -> JSONResponse:
    """Store the next version of a policy (YAML or JSON body); answers its lint findings
    and what changed since the previous version."""
    source, fmt = await _document(request)

    def write() -> dict[str, Any]:
        try:
            name = parse_policy(source, fmt=fmt).name
        except PolicySyntaxError:
            name = None  # the use case refuses it, and audits the refusal
        if name in RESERVED_NAMES:
            raise InvalidInput(f"policy name {name!r} is reserved (a route of this API)")
        owner_path = _org_path(svc, caller, owner)
        return render_write(svc.policies.write(caller, source, owner_path=owner_path, fmt=fmt))

    body = await run_in_threadpool(write)
    location = f"/v1/policies/{body['name']}?version={body['version']}"
    return JSONResponse(body, status_code=201, headers={"Location": location})


@router.get("/policies")
def list_policies(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Policies owned in the caller's subtree or above it, with their attachments there."""
    return {"items": [render_overview(o, full=False)
                      for o in svc.policies.list_policies(caller)]}


@router.post("/policies/lint", openapi_extra=_DOCUMENT_BODY)
async def lint_policy(request: Request, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Parse and lint a document without storing it (400 names every syntax problem)."""
    source, fmt = await _document(request)
    document = parse_policy(source, fmt=fmt)
    findings = svc.policies.lint(source, fmt)
    return {"name": document.name, "version": document.version,
            "findings": [render_finding(f) for f in findings]}


@router.get("/policies/who-can")
def who_can(
    caller: Caller, svc: Wired,
    topic: Annotated[str | None, Query(max_length=70_000)] = None,
    resource: Annotated[str | None, Query(max_length=70_000)] = None,
    action: str = PUBLISH,
    source_ip: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """Devices of the caller's subtree that may do ``action`` on ``topic`` now (scanning
    ``limit`` devices a page: pass ``next`` as ``after``), and the attachments whose
    allows may grant it."""
    wanted = topic if topic is not None else resource
    if wanted is None:
        raise InvalidInput("say what to ask about: topic=… (or resource=…)")
    page = svc.inquiry.who_can(caller, action, wanted, after=after, limit=limit,
                               source_ip=source_ip)
    return {"action": action, "resource": wanted, "scanned": page.scanned,
            "next": page.next_after,
            "devices": [{"device": h.subject.device_id, "org_path": h.subject.org_path,
                         "statements": [render_ref(r) for r in h.decision.matched]}
                        for h in page.holders],
            "targets": [render_grant(g) for g in page.targets]}


@router.get("/policies/{name}")
def show_policy(
    name: str, caller: Caller, svc: Wired,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> dict[str, Any]:
    """One version (default: the latest) with its source, versions and attachments."""
    return render_overview(svc.policies.describe(caller, name, version), full=True)


@router.get("/policies/{name}/diff")
def diff_policy(
    name: str, caller: Caller, svc: Wired,
    old: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION)],
    new: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION)],
) -> dict[str, Any]:
    """What changed from one version to another."""
    return render_diff(svc.policies.diff(caller, name, old, new))


# -- attachments -----------------------------------------------------------------------


@router.post("/policies/{name}/attachments", status_code=201)
def attach_policy(name: str, body: AttachmentIn, caller: Caller, svc: Wired
                  ) -> dict[str, Any]:
    """Attach the policy to a target (refused if a guardrail above denies what it allows)."""
    scope = _org_path(svc, caller, body.scope)
    attachment = svc.policies.attach(caller, name, AttachmentTarget(body.kind, body.id),
                                     scope=scope)
    return render_attachment(attachment)


@router.delete("/policies/{name}/attachments", status_code=204)
def detach_policy(
    name: str, caller: Caller, svc: Wired,
    kind: TargetKind,
    target_id: Annotated[str, Query(alias="id", min_length=1, max_length=128)],
) -> Response:
    """Remove an attachment."""
    svc.policies.detach(caller, name, AttachmentTarget(kind, target_id))
    return Response(status_code=204)


# -- sites -----------------------------------------------------------------------------


@router.put("/sites/{name}", responses={200: {"model": SiteOut}, 201: {"model": SiteOut}})
def put_site(name: str, body: SiteIn, caller: Caller, svc: Wired) -> JSONResponse:
    """Create (201) or replace (200) a site: its time zone and networks (root admins)."""
    site, created = svc.policies.save_site(caller, name, body.timezone, body.networks)
    return JSONResponse(render_site(site), status_code=201 if created else 200)


@router.get("/sites")
def list_sites(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Every site (fleet-wide, like device types)."""
    return {"items": [render_site(s) for s in svc.policies.sites()]}


# -- decisions -------------------------------------------------------------------------


@router.post("/decisions")
def decide(body: DecisionIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """What the decision point answers for a device, and why; with ``at``, what it would
    answer at that instant (a simulation: nothing changes)."""
    decision = svc.inquiry.decide(
        caller, body.device, body.action, body.resource, source_ip=body.source_ip,
        at=body.at, trust_score=body.trust_score, firmware_compliant=body.firmware_compliant)
    return render_decision(decision)


@router.get("/devices/{device_id}/permissions")
def device_permissions(device_id: str, caller: Caller, svc: Wired) -> dict[str, Any]:
    """What can this device do: its statements with variables substituted, denies first
    and the allows they take away marked."""
    return render_permissions(svc.inquiry.permissions(caller, device_id))
