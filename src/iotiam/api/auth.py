"""Bearer-token authentication for the admin API."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from iotiam.admin.models import Principal
from iotiam.bootstrap import Services
from iotiam.errors import Unauthenticated


def services(request: Request) -> Services:
    """The wired services of this app."""
    wired: Services = request.app.state.services
    return wired


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("send an admin token as 'Authorization: Bearer <token>'")
    return services(request).tokens.authenticate(value)


Caller = Annotated[Principal, Depends(principal)]
Wired = Annotated[Services, Depends(services)]
