"""Issuing-CA rotation and compromise (docs/ca-rotation.md): thin handlers over
``pki.rotation.CaRotation``."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field, StrictBool

from iotiam.api.auth import Caller, Wired
from iotiam.api.json_bodies import UntrustedJsonRoute
from iotiam.api.schemas import Body
from iotiam.bootstrap import Services
from iotiam.errors import Conflict, NotFound
from iotiam.pki.rotation import CaRotation

router = APIRouter(prefix="/v1", tags=["ca"], route_class=UntrustedJsonRoute)

#: a CA id is its role and 12 hex digits (``pki.ca_set.ca_id_of``)
_CA_ID = r"^[a-z-]{1,24}-[0-9a-f]{12}$"


class RotateAndMoveIn(Body):
    """Whether to only report, and whether agents should move to the new CA now."""

    dry_run: StrictBool = False
    reissue: StrictBool = False


class CaRevokeIn(Body):
    """Why an issuing CA is revoked (RFC 5280 reason), and whether to only count."""

    reason: str = Field(default="keyCompromise", max_length=64)
    dry_run: StrictBool = False


class CaDrillIn(Body):
    """The reason a compromise drill rehearses."""

    reason: str = Field(default="keyCompromise", max_length=64)


@router.get("/cas")
def list_cas(caller: Caller, svc: Wired) -> dict[str, Any]:
    """The root and every issuing CA: state (active, retiring, revoked), validity, live
    certificates and where the key is."""
    return {"items": [_plain(c) for c in _rotation(svc).list_cas(caller)]}


@router.post("/cas/rotate")
def rotate(body: RotateAndMoveIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """A new issuing CA under the same root certifies every new key from now on;
    ``reissue``: agents renew onto it now instead of at their usual time."""
    rotation = _rotation(svc)
    report = rotation.rotate(caller, dry_run=body.dry_run)
    if body.reissue and not body.dry_run:
        rotation.migrate(caller)
    return {**_plain(report), "reissue": body.reissue}


@router.post("/cas/migrate")
def migrate(caller: Caller, svc: Wired) -> dict[str, Any]:
    """Agents whose certificate another issuing CA signed renew now (docs/ca-rotation.md)."""
    return _plain(_rotation(svc).migrate(caller))


@router.post("/cas/{ca_id}/revoke")
def revoke(ca_id: str, body: CaRevokeIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Revoke an issuing CA (the root's CRL lists it) and every certificate it signed; a
    new one takes over if it was the active one."""
    return _plain(_rotation(svc).revoke(caller, _checked(ca_id), body.reason,
                                        dry_run=body.dry_run))


@router.post("/cas/{ca_id}/revoke/drill")
def drill(ca_id: str, body: CaDrillIn, caller: Caller, svc: Wired) -> dict[str, Any]:
    """Rehearse a compromise: the same writes in a transaction that is rolled back."""
    return _plain(_rotation(svc).drill(caller, _checked(ca_id), body.reason))


def _rotation(svc: Services) -> CaRotation:
    rotation = svc.ca_rotation
    if rotation is None:
        raise Conflict("CA rotation needs the database of `iotiam serve`")
    return rotation


def _checked(ca_id: str) -> str:
    if not re.fullmatch(_CA_ID, ca_id):
        raise NotFound(f"no CA {ca_id[:64]!r} (see `iotiam ca list`)")
    return ca_id


def _plain(value: Any) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in dataclasses.asdict(value).items()}
