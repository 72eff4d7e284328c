"""Revocation by set: every credential of the devices a filter selects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field, StrictBool

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.errors import Conflict
from iotiam.response.device_filter import MAX_FILTER_CHARS

router = APIRouter(prefix="/v1", tags=["revocation"], route_class=UntrustedJsonRoute)


class RevocationSetIn(Body):
    """A filter (``manufacturer=acme and batch=2026-07``), a reason, and whether to only
    report what would be revoked."""

    where: str = Field(max_length=MAX_FILTER_CHARS)
    reason: str = Field(default="unspecified", max_length=64)
    dry_run: StrictBool = False


@router.post("/revocations/sets")
def revoke_set(body: RevocationSetIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Revoke (or, dry run, count) every certificate, PSK and OAuth client of the selected
    devices and end their tokens; a filter that selects nothing is no error."""
    sets = svc.revocation_sets
    if sets is None:
        raise Conflict("revocation by set needs the SQL database of `iotiam serve`")
    if body.dry_run:
        return sets.preview(caller, body.where, body.reason).as_dict()
    return sets.revoke(caller, body.where, body.reason).as_dict()


class RevocationDrillIn(Body):
    """The filter and reason a drill rehearses."""

    where: str = Field(max_length=MAX_FILTER_CHARS)
    reason: str = Field(default="unspecified", max_length=64)


@router.post("/revocations/sets/drill")
def drill_set(body: RevocationDrillIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Rehearse a set revocation: the same writes in a transaction that is rolled back,
    and what the selected devices would still hold afterwards (``left_live``)."""
    sets = svc.revocation_sets
    if sets is None:
        raise Conflict("revocation by set needs the SQL database of `iotiam serve`")
    return sets.drill(caller, body.where, body.reason).as_dict()
