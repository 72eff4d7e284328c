"""Bearer-token authentication for the admin API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from iotiam.audit.models import AuditDraft, AuditTag
from iotiam.bootstrap import Services
from iotiam.errors import Unauthenticated
from iotiam.kernel import ROOT_PATH, Principal


async def services(request: Request) -> Services:
    """The wired services of this app (async: no I/O, so no thread hop)."""
    wired: Services = request.app.state.services
    return wired


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; refusals are audited."""
    wired: Services = request.app.state.services
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    draft = AuditDraft(tag=AuditTag.ACCESS_DENIED, actor="anonymous", org_path=ROOT_PATH,
                       subject=f"{request.method} {request.url.path}"[:300])
    with wired.audit.refusals(draft):
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated("send an admin token as 'Authorization: Bearer <token>'")
        return wired.admin_tokens.authenticate(value)


async def known_principal(request: Request) -> Principal:
    """``principal`` on the event loop for a token already authenticated here (no read,
    no thread); anything else through ``principal`` on a thread (a read, or a refusal
    to audit)."""
    wired: Services = request.app.state.services
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        known = wired.admin_tokens.known(value)
        if known is not None:
            return known
    return await run_in_threadpool(principal, request)


Caller = Annotated[Principal, Depends(known_principal)]
Wired = Annotated[Services, Depends(services)]
