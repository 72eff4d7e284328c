"""Bearer-token authentication for the admin API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

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


Caller = Annotated[Principal, Depends(principal)]
Wired = Annotated[Services, Depends(services)]
